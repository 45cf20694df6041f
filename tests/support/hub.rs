//! The fleet lab's hub (root): a network namespace of the test's own for `nats-server` and
//! the learner, joined to each sensor namespace (a [`Lab`]'s `a` side) by a veth pair on a
//! TEST-NET-2 /30 (hub 198.51.100.4i+1, sensor i 198.51.100.4i+2); no forwarding, no route
//! beyond the /30s. Deleted on drop.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{ATTACH_WITHIN, Lab, Proc, run, sh, spawn_attached};

/// The hub namespace and one veth per sensor namespace into it.
pub struct Hub {
    pub ns: String,
}

impl Hub {
    /// `tag` keeps the names of concurrent tests apart (a few letters).
    pub fn new(tag: &str, labs: &[Lab]) -> Hub {
        let id = std::process::id() % 100_000;
        let hub = Hub {
            ns: format!("sl-{tag}-hub-{id}"),
        };
        let _ = Command::new("ip").args(["netns", "del", &hub.ns]).output();
        sh(&format!(
            "ip netns add {0}; ip -n {0} link set lo up",
            hub.ns
        ));
        for (i, lab) in labs.iter().enumerate() {
            let (h, s) = (format!("{tag}h{i}{id}"), format!("{tag}s{i}{id}"));
            let base = 4 * i as u8;
            sh(&format!(
                "ip link add {s} netns {a} type veth peer name {h} netns {hub}
                 ip -n {hub} addr add 198.51.100.{}/30 dev {h}
                 ip -n {a} addr add 198.51.100.{}/30 dev {s}
                 ip -n {hub} link set {h} up; ip -n {a} link set {s} up",
                base + 1,
                base + 2,
                a = lab.ns_a,
                hub = hub.ns
            ));
        }
        hub
    }

    /// The hub address sensor `i` reaches.
    pub fn addr_for(i: usize) -> String {
        format!("198.51.100.{}", 4 * i + 1)
    }

    /// A command run in the hub namespace (`nsenter --net`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns)).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered the hub's network namespace (its sockets are the
    /// hub's), e.g. a NATS client for `127.0.0.1` in the hub.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: a valid namespace fd; setns changes this thread's namespace only.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// A `nats-server -js` in the hub on all its addresses, port `port`, store `store`.
    pub fn nats(&self, port: u16, store: &Path) -> Proc {
        let p = Proc(
            self.cmd("nats-server")
                .args(["-js", "-a", "0.0.0.0", "-p", &port.to_string(), "-sd"])
                .arg(store)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t0 = std::time::Instant::now();
        loop {
            let up = self.within(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
            if up {
                return p;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "nats-server did not start in the hub"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// `GET http://API PATH` from the sensor namespace of `lab`: (status, JSON body).
pub fn curl(lab: &Lab, api: &str, path: &str) -> (u16, Value) {
    let out = run(lab.cmd_in_a("curl").args([
        "-sS",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        &format!("http://{api}{path}"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// `safelink fleet keygen` into `dir/signing.key`: (the key file, its public key).
pub fn keygen(bin: &str, dir: &Path) -> (PathBuf, String) {
    let key = dir.join("signing.key");
    let out = run(Command::new(bin)
        .args(["fleet", "keygen", "--out"])
        .arg(&key));
    let pk: Value = serde_json::from_slice(&out.stdout).unwrap();
    (key, pk["public_key"].as_str().unwrap().to_string())
}

/// The fleet sensors of a lab test, one per [`Lab`]: sensor `s{i}` of lab `i` reaches the
/// hub at [`Hub::addr_for`]`(i)`.
pub struct FleetSensor<'a> {
    pub bin: &'a str,
    /// Sensor `s{i}`'s config is `dir/s{i}.toml`, its data `dir/s{i}`.
    pub dir: &'a Path,
    /// The shipped base model it starts with.
    pub model: &'a Path,
    /// The learner's public key, trusted.
    pub trusted_key: &'a str,
    /// Extra `[fleet]` lines (each ending in a newline).
    pub fleet_extra: &'a str,
    pub api: &'a str,
    pub nats_port: u16,
}

impl FleetSensor<'_> {
    /// One sensor per lab, in order ([`Self::spawn`]).
    pub fn spawn_all(&self, labs: &[Lab]) -> Vec<Proc> {
        labs.iter()
            .enumerate()
            .map(|(i, lab)| self.spawn(i, lab))
            .collect()
    }

    /// Sensor `s{i}`: `safelink run --fleet` attached to `lab`'s `a` side (settle 1 s,
    /// heartbeat 1 s, flows idle after 2 s), returned once it printed `ATTACHED`.
    pub fn spawn(&self, i: usize, lab: &Lab) -> Proc {
        let cfg = self.dir.join(format!("s{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[ann]\nmodel = \"{}\"\n[learning]\nsettle_s = 1\n[fleet]\nsensor_id = \"s{i}\"\n\
                 trusted_keys = [\"{}\"]\nheartbeat_s = 1\n{}",
                self.model.display(),
                self.trusted_key,
                self.fleet_extra
            ),
        )
        .unwrap();
        let mut c = lab.sensor_cmd(self.bin, &self.dir.join(format!("s{i}")));
        c.arg("--config")
            .arg(&cfg)
            .args([
                "--listen",
                self.api,
                "--status-interval",
                "0",
                "--idle-timeout",
                "2",
            ])
            .args([
                "--fleet",
                &format!("nats://{}:{}", Hub::addr_for(i), self.nats_port),
            ]);
        Proc(spawn_attached(c, ATTACH_WITHIN, None))
    }
}
