//! Real-tool labs (root): two network namespaces joined by one veth pair whose both ends live
//! in them ([`VethLab`]; forwarding is never enabled, so nothing leaves the pair), the sensor
//! started in the victim namespace with `nsenter --net` (which, unlike `ip netns exec`, keeps
//! the host's bpffs visible for pinning), an sshd of the test's own with key and optionally
//! password logins ([`Sshd`]), and hydra against it with the retries CI needs ([`hydra_ssh`]).
//! Everything is stopped and deleted on drop, a panic included.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{ATTACH_WITHIN, run, sh, spawn_attached};

/// One side of a [`VethLab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Victim,
    Client,
}

/// Two namespaces `<prefix>-v-<id>` and `<prefix>-c-<id>`, one veth pair between them
/// (`<short>v<id>` in the victim, `<short>c<id>` in the client), IPv6 off, the given
/// addresses (/24) on each end. Children spawned through it and the sensor are stopped
/// (SIGINT, then SIGKILL) and the namespaces and pin directory deleted on drop.
pub struct VethLab {
    pub victim_ns: String,
    pub client_ns: String,
    pub victim_if: String,
    pub client_if: String,
    pub pin_dir: PathBuf,
    pub children: Vec<Child>,
    pub sensor: Option<Child>,
}

impl VethLab {
    /// `prefix` names the namespaces, `short` (at most 5 characters) the interfaces.
    pub fn new(prefix: &str, short: &str, victim: &[&str], client: &[&str]) -> Self {
        assert!(short.len() <= 5, "interface prefix {short:?} too long");
        let id = std::process::id() % 100_000;
        let lab = VethLab {
            victim_ns: format!("{prefix}-v-{id}"),
            client_ns: format!("{prefix}-c-{id}"),
            victim_if: format!("{short}v{id}"),
            client_if: format!("{short}c{id}"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/safelink-test-{prefix}-{id}")),
            children: Vec::new(),
            sensor: None,
        };
        lab.cleanup();
        let (v, c, iv, ic) = (
            &lab.victim_ns,
            &lab.client_ns,
            &lab.victim_if,
            &lab.client_if,
        );
        let mut script = format!(
            "ip netns add {v}; ip netns add {c}
             ip link add {iv} netns {v} type veth peer name {ic} netns {c}
             for ns in {v} {c}; do
               ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1
               ip netns exec $ns sysctl -qw net.ipv6.conf.default.disable_ipv6=1
               ip -n $ns link set lo up
             done"
        );
        for a in victim {
            script += &format!("\n ip -n {v} addr add {a}/24 dev {iv}");
        }
        for a in client {
            script += &format!("\n ip -n {c} addr add {a}/24 dev {ic}");
        }
        script += &format!("\n ip -n {v} link set {iv} up; ip -n {c} link set {ic} up");
        sh(&script);
        lab
    }

    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::Victim => &self.victim_ns,
            Side::Client => &self.client_ns,
        }
    }

    pub fn iface(&self, side: Side) -> &str {
        match side {
            Side::Victim => &self.victim_if,
            Side::Client => &self.client_if,
        }
    }

    /// `program` run in `side`'s network namespace (`nsenter --net`).
    pub fn cmd(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns(side)))
            .arg(program);
        c
    }

    /// `args[0] args[1..]` in `side`'s namespace.
    pub fn exec(&self, side: Side, args: &[&str]) -> Command {
        let mut c = self.cmd(side, args[0]);
        c.args(&args[1..]);
        c
    }

    /// Runs `args` in `side`'s namespace, asserting success.
    pub fn run(&self, side: Side, args: &[&str]) -> Output {
        run(&mut self.exec(side, args))
    }

    /// Starts `cmd` (output discarded) as a child stopped on drop; returns its pid.
    pub fn spawn_cmd(&mut self, mut cmd: Command) -> u32 {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    pub fn spawn(&mut self, side: Side, args: &[&str]) -> u32 {
        let c = self.exec(side, args);
        self.spawn_cmd(c)
    }

    /// Starts `safelink run` on the victim's interface (SKB mode, this lab's pin directory)
    /// with `args` added, and waits for its `ATTACHED` line ([`spawn_attached`]). Its stderr
    /// goes to `log` when given, else to the test's.
    pub fn start_sensor(&mut self, bin: &str, args: &[&str], log: Option<&Path>) {
        let mut cmd = self.cmd(Side::Victim, bin);
        cmd.args(["run", "--iface", &self.victim_if, "--xdp-mode", "skb"])
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args);
        self.sensor = Some(spawn_attached(cmd, ATTACH_WITHIN, log));
    }

    /// Stops the sensor (SIGINT, up to 10 s, then SIGKILL); true if it exited on its own.
    pub fn stop_sensor(&mut self) -> bool {
        let Some(mut s) = self.sensor.take() else {
            return false;
        };
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(s.id() as i32, libc::SIGINT) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if s.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = s.kill();
        let _ = s.wait();
        false
    }

    /// `GET http://{listen}{path}` through curl in the victim namespace: JSON (the body as a
    /// string for `/metrics`).
    pub fn api(&self, listen: &str, path: &str) -> Value {
        self.api_timed(listen, path).0
    }

    /// [`VethLab::api`] and the seconds the request took (curl's `time_total`).
    pub fn api_timed(&self, listen: &str, path: &str) -> (Value, f64) {
        let out = self.run(
            Side::Victim,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-w",
                "\n%{time_total}",
                &format!("http://{listen}{path}"),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, t) = text.rsplit_once('\n').expect("curl timing line");
        let t = t
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("curl time {t:?}: {e}"));
        if path.starts_with("/metrics") {
            return (Value::String(body.to_owned()), t);
        }
        let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        (v, t)
    }

    /// The MAC address of `side`'s end of the pair.
    pub fn mac(&self, side: Side) -> [u8; 6] {
        let out = run(Command::new("ip").args([
            "-j",
            "-n",
            self.ns(side),
            "link",
            "show",
            "dev",
            self.iface(side),
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let a = v[0]["address"].as_str().expect("link address");
        let b: Vec<u8> = a
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        b.try_into().unwrap_or_else(|b| panic!("MAC {a}: {b:?}"))
    }

    pub fn cleanup(&self) {
        for ns in [&self.victim_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(self.sensor.as_mut()) {
            // SAFETY: plain signal to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        }
        std::thread::sleep(Duration::from_millis(300));
        for c in self.children.iter_mut().chain(self.sensor.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup();
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An sshd of the test's own, in `dir`: a fresh host key, a client key that may log in as
/// root, and with `password` a password login for root too. The password is set in a copy of
/// `/etc/shadow` that only sshd sees (bind-mounted in a mount namespace of its own, see
/// [`Sshd::command`]); the host's file is never written.
pub struct Sshd {
    pub config: PathBuf,
    pub client_key: PathBuf,
    pub password: Option<String>,
    shadow: Option<PathBuf>,
    askpass: Option<PathBuf>,
}

/// Client options of every login: no host key prompt or file, bounded connect, quiet.
const SSH_OPTS: [&str; 8] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
];

impl Sshd {
    /// Listening on port 22 of each of `listen`.
    pub fn prepare(dir: &Path, listen: &[&str], password: Option<&str>) -> Sshd {
        std::fs::create_dir_all("/run/sshd").unwrap();
        for k in ["hostkey", "client"] {
            let _ = std::fs::remove_file(dir.join(k));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(k)));
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        let listen: String = listen
            .iter()
            .map(|a| format!("ListenAddress {a}\n"))
            .collect();
        let config = write(
            dir,
            "sshd_config",
            &format!(
                "{listen}Port 22\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin {root}\n\
                 PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nMaxStartups 100\nLoginGraceTime 20\n",
                hk = dir.join("hostkey").display(),
                d = dir.display(),
                root = if password.is_some() {
                    "yes"
                } else {
                    "prohibit-password"
                },
            ),
        );
        let (shadow, askpass) = match password {
            None => (None, None),
            Some(pw) => {
                let hash = run(Command::new("openssl").args(["passwd", "-6", pw])).stdout;
                let hash = String::from_utf8(hash).unwrap();
                let hash = hash.trim();
                let host = std::fs::read_to_string("/etc/shadow").unwrap();
                let mut found = false;
                let copy: String = host
                    .lines()
                    .map(|l| match l.strip_prefix("root:") {
                        Some(rest) => {
                            found = true;
                            let after = rest.split_once(':').map_or("", |(_, r)| r);
                            format!("root:{hash}:{after}\n")
                        }
                        None => format!("{l}\n"),
                    })
                    .collect();
                assert!(found, "no root entry in /etc/shadow");
                let shadow = write(dir, "shadow", &copy);
                let askpass = write(dir, "askpass", &format!("#!/bin/sh\necho '{pw}'\n"));
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
                (Some(shadow), Some(askpass))
            }
        };
        Sshd {
            config,
            client_key: dir.join("client"),
            password: password.map(str::to_owned),
            shadow,
            askpass,
        }
    }

    /// sshd in the foreground (`-D -e`) in namespace `ns`: with a password, in a private mount
    /// namespace that sees the test's shadow file (`unshare --mount` execs sh, sh execs
    /// nsenter, nsenter execs sshd: the child's pid is sshd's).
    pub fn command(&self, ns: &str) -> Command {
        let sshd = format!(
            "exec nsenter --net=/run/netns/{ns} /usr/sbin/sshd -D -e -f '{}'",
            self.config.display()
        );
        match &self.shadow {
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", &sshd]);
                c
            }
            Some(shadow) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
                    .arg(format!("mount --bind \"$1\" /etc/shadow; {sshd}"))
                    .arg("sh")
                    .arg(shadow);
                c
            }
        }
    }

    /// `ssh` arguments of a key login from `bind` to `host` running `remote`.
    pub fn key_login(&self, bind: &str, host: &str, remote: &str) -> Vec<String> {
        let mut a: Vec<String> = ["ssh", "-b", bind, "-i"].map(String::from).to_vec();
        a.push(self.client_key.display().to_string());
        a.extend(SSH_OPTS.map(String::from));
        a.extend(["-o", "BatchMode=yes", &format!("root@{host}"), remote].map(String::from));
        a
    }

    /// `ssh` arguments of a password login (the password comes from `SSH_ASKPASS`, see
    /// [`Sshd::password_env`]).
    pub fn password_login(&self, bind: &str, host: &str, remote: &str) -> Vec<String> {
        let mut a: Vec<String> = ["ssh", "-b", bind].map(String::from).to_vec();
        a.extend(SSH_OPTS.map(String::from));
        a.extend(
            [
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
                &format!("root@{host}"),
                remote,
            ]
            .map(String::from),
        );
        a
    }

    /// The environment that makes `ssh` read the password from the askpass script without a
    /// terminal.
    pub fn password_env(&self) -> Vec<(&'static str, String)> {
        let askpass = self
            .askpass
            .as_ref()
            .expect("sshd prepared with a password");
        vec![
            ("SSH_ASKPASS", askpass.display().to_string()),
            ("SSH_ASKPASS_REQUIRE", "force".to_owned()),
            ("DISPLAY", ":0".to_owned()),
        ]
    }
}

/// `count` wrong passwords, one a line (none is ever the real one).
pub fn wrong_passwords(dir: &Path, count: usize) -> PathBuf {
    let words: String = (0..count)
        .map(|i| format!("wrong-password-{i}\n"))
        .collect();
    write(dir, "passwords.txt", &words)
}

/// hydra guessing root's SSH password on `target` from the passwords in `list`, 8 tasks,
/// `wait_s` for each response (it bounds hydra's connect too: 5 s leaves room for the
/// kernel's SYN retransmits at 1 s and 3 s; with 2 s one lost SYN made hydra exit 255 in CI).
/// hydra gives up on a target whose first connection fails, so the attacker tries again, as a
/// real one would, up to `tries` times. `cmd` makes the command in the attacker's namespace.
/// Returns the attempts made; panics with every attempt's stderr if none succeeded (hydra
/// exits 0 when it found nothing too).
pub fn hydra_ssh(
    cmd: impl Fn(&[&str]) -> Command,
    list: &Path,
    target: &str,
    wait_s: u32,
    tries: usize,
) -> usize {
    let wait = wait_s.to_string();
    let url = format!("ssh://{target}");
    let mut errs = Vec::new();
    while errs.len() < tries {
        let out = cmd(&[
            "hydra",
            "-q",
            "-I",
            "-w",
            &wait,
            "-l",
            "root",
            "-P",
            list.to_str().unwrap(),
            "-t",
            "8",
            &url,
        ])
        .output()
        .unwrap();
        if out.status.success() {
            return errs.len() + 1;
        }
        errs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    panic!("hydra failed {tries} times: {errs:?}");
}
