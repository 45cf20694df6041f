//! Loading the embedded XDP object, pinning/reusing its maps under the pin directory, and
//! attaching/detaching the sensor: on ingress the XDP program (native or generic/SKB mode) or
//! the TC classifier, on egress the TC classifier.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode, tc, tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use safelink_common::{
    FlowStats, MAP_EMBRYOS, MAP_EVENTS, MAP_FLOWS, MAP_OUTER_FLOWS, MAP_STATS, MapKey, OuterStats,
    Stats, TunnelKey, flows_capacity, parse::TunnelConfig,
};
use tracing::{info, warn};

/// The XDP object built by `build.rs` (aya-build) from `safelink-ebpf`.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/safelink"));
/// The benchmark-only object (`safelink-ebpf/src/bench.rs`): the probe-style counter program
/// and the new-flow stream, for `safelink bench xdp`. Never attached.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/safelink-bench"));
/// Name of the XDP program in the object.
pub const PROGRAM: &str = "safelink";
/// Name of the program's global holding its [`TunnelConfig`].
const TUNNELS_GLOBAL: &str = "TUNNELS";
/// Name of the TC classifier in the object: egress, and ingress in `tc` mode.
pub const TC_PROGRAM: &str = "safelink_tc";

/// How to attach on ingress: `auto` picks the TC classifier on a virtual interface (veth,
/// bridge, tap, ...: [`super::iface`]); elsewhere it tries native (driver) XDP and falls back
/// to generic (SKB) XDP. `tc` attaches no XDP program at all.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    #[default]
    Auto,
    /// Native (driver) XDP.
    Native,
    /// Generic (SKB) XDP.
    Skb,
    /// The TC classifier on ingress (clsact/TCX), no XDP.
    Tc,
}

fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // Only needed before 5.11 (memcg accounting); harmless elsewhere.
    // SAFETY: valid pointer to an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("setrlimit(RLIMIT_MEMLOCK) failed");
    }
}

/// Loads the object. With `pin_dir`, maps declared pinned are reused from there when present
/// (a restart keeps flow state) or created and pinned there. Without it nothing is pinned
/// (tests and benchmarks with `BPF_PROG_TEST_RUN`).
pub fn load(pin_dir: Option<&Path>) -> anyhow::Result<Ebpf> {
    load_with(XDP_OBJECT, pin_dir, &TunnelConfig::DEFAULT)
}

/// [`load`] of another build of the object (`safelink bench xdp --object`).
pub fn load_object(object: &[u8], pin_dir: Option<&Path>) -> anyhow::Result<Ebpf> {
    load_with(object, pin_dir, &TunnelConfig::DEFAULT)
}

/// [`load_object`] with the tunnels the parser opens (`[flows] tunnels`): set in the program's
/// read-only `TUNNELS` global before it is verified.
pub fn load_with(
    object: &[u8],
    pin_dir: Option<&Path>,
    tunnels: &TunnelConfig,
) -> anyhow::Result<Ebpf> {
    raise_memlock();
    let mut loader = EbpfLoader::new();
    loader.override_global(TUNNELS_GLOBAL, tunnels, true);
    let flows = flows_entries()?;
    loader.map_max_entries(MAP_FLOWS, flows);
    if let Some(dir) = pin_dir {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create pin directory {} (is bpffs mounted on /sys/fs/bpf? `mount -t bpf bpf /sys/fs/bpf`)",
                dir.display()
            )
        })?;
        for (name, key, value) in PINNED {
            let path = dir.join(name);
            let entries = (*name == MAP_FLOWS).then_some(flows);
            drop_incompatible_pin(&path, *key, *value, entries)?;
            loader.map_pin_path(name, path);
        }
    }
    let mut ebpf = loader.load(object).with_context(|| match pin_dir {
        Some(d) => format!(
            "loading the XDP object (if maps pinned by an older SafeLink version are incompatible, remove {})",
            d.display()
        ),
        None => "loading the XDP object".to_owned(),
    })?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .context("program `safelink` missing from the object")?
        .try_into()?;
    prog.load()
        .context("the kernel verifier rejected the XDP program")?;
    let tc: &mut SchedClassifier = ebpf
        .program_mut(TC_PROGRAM)
        .context("program `safelink_tc` missing from the object")?
        .try_into()?;
    tc.load()
        .context("the kernel verifier rejected the TC classifier")?;
    Ok(ebpf)
}

/// The maps pinned by `run`, with the key and value sizes this build expects.
const PINNED: &[(&str, u32, u32)] = &[
    (
        MAP_FLOWS,
        size_of::<MapKey>() as u32,
        size_of::<FlowStats>() as u32,
    ),
    (
        MAP_EMBRYOS,
        size_of::<MapKey>() as u32,
        size_of::<FlowStats>() as u32,
    ),
    (
        MAP_OUTER_FLOWS,
        size_of::<TunnelKey>() as u32,
        size_of::<OuterStats>() as u32,
    ),
    (MAP_STATS, 4, size_of::<Stats>() as u32),
    (MAP_EVENTS, 0, 0),
];

/// `FLOWS` capacity on this host: [`flows_capacity`] of its possible CPUs.
pub fn flows_entries() -> anyhow::Result<u32> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    Ok(flows_capacity(cpus as u32))
}

/// A pin left by a SafeLink build with another layout (or, for `FLOWS`, another capacity)
/// cannot be reused: remove it (its flow state is unreadable by this build anyway) and say so.
fn drop_incompatible_pin(
    path: &Path,
    key: u32,
    value: u32,
    entries: Option<u32>,
) -> anyhow::Result<()> {
    let Ok(old) = MapData::from_pin(path) else {
        return Ok(());
    };
    let info = old.info()?;
    if info.key_size() != key
        || info.value_size() != value
        || entries.is_some_and(|n| n != info.max_entries())
    {
        warn!(
            pin = %path.display(),
            key_size = info.key_size(),
            value_size = info.value_size(),
            max_entries = info.max_entries(),
            "pinned map has another layout or size (older SafeLink?); replacing it"
        );
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

pub fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PROGRAM)
        .context("program `safelink` missing")?
        .try_into()?)
}

/// What sees the received frames.
#[derive(Debug)]
enum Ingress {
    Xdp { mode: XdpMode, link: XdpLinkId },
    Tc(SchedClassifierLinkId),
}

/// The attached programs: which interface, how, and the links to detach.
#[derive(Debug)]
pub struct Attachment {
    pub iface: String,
    ingress: Ingress,
    /// The TC egress classifier (the host's own frames), when attached.
    egress: Option<SchedClassifierLinkId>,
}

impl Attachment {
    pub fn has_egress(&self) -> bool {
        self.egress.is_some()
    }

    /// `native`, `skb` (XDP modes) or `tc`.
    pub fn mode_name(&self) -> &'static str {
        match self.ingress {
            Ingress::Xdp {
                mode: XdpMode::Driver,
                ..
            } => "native",
            Ingress::Xdp {
                mode: XdpMode::Skb, ..
            } => "skb",
            Ingress::Xdp { .. } => "default",
            Ingress::Tc(_) => "tc",
        }
    }
}

fn attach_xdp(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> anyhow::Result<Ingress> {
    let link = program(ebpf)?
        .attach(iface, mode)
        .with_context(|| match mode {
            XdpMode::Driver => {
                format!("attaching to {iface} in native mode (try --xdp-mode tc or skb)")
            }
            _ => format!("attaching to {iface} in SKB mode"),
        })?;
    Ok(Ingress::Xdp { mode, link })
}

/// Attaches the ingress program as `mode` says and, with `egress`, the TC egress classifier. A
/// failing egress attach is logged and the sensor continues with ingress only.
///
/// On a virtual interface `auto` takes the TC classifier: generic XDP makes the kernel give
/// every frame the 256 bytes of headroom XDP wants (a reallocation and copy of each frame a
/// local socket sent through a veth), native XDP on a veth copies its peer's frames too, and
/// TC runs on the frame as it is (`cargo xtask bench veth`: UDP with the sensor 85–88 % of
/// the throughput without in SKB mode, 97–98 % with TC).
pub fn attach(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: AttachMode,
    egress: bool,
) -> anyhow::Result<Attachment> {
    let ingress = match mode {
        AttachMode::Native => attach_xdp(ebpf, iface, XdpMode::Driver)?,
        AttachMode::Skb => attach_xdp(ebpf, iface, XdpMode::Skb)?,
        AttachMode::Tc => Ingress::Tc(attach_tc(ebpf, iface, TcAttachType::Ingress)?),
        AttachMode::Auto => match super::iface::driver(iface) {
            Ok(d) if d.is_virtual() => {
                info!(
                    iface,
                    driver = d.name,
                    "virtual interface: TC classifier on ingress"
                );
                Ingress::Tc(attach_tc(ebpf, iface, TcAttachType::Ingress)?)
            }
            _ => match attach_xdp(ebpf, iface, XdpMode::Driver) {
                Ok(i) => i,
                Err(e) => {
                    warn!(iface, error = %format!("{e:#}"), "native XDP not available, falling back to SKB mode");
                    attach_xdp(ebpf, iface, XdpMode::Skb)
                        .with_context(|| format!("attaching to {iface} (native and SKB mode)"))?
                }
            },
        },
    };
    let egress = if egress {
        match attach_tc(ebpf, iface, TcAttachType::Egress) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(iface, error = %format!("{e:#}"), "TC egress hook not attached: flows will only show received frames");
                None
            }
        }
    } else {
        None
    };
    let a = Attachment {
        iface: iface.to_owned(),
        ingress,
        egress,
    };
    info!(
        iface,
        mode = a.mode_name(),
        egress = a.egress.is_some(),
        "attached"
    );
    Ok(a)
}

fn attach_tc(
    ebpf: &mut Ebpf,
    iface: &str,
    hook: TcAttachType,
) -> anyhow::Result<SchedClassifierLinkId> {
    // Needed for netlink attachment on kernels without TCX (< 6.6); "exists" is fine.
    let _ = tc::qdisc_add_clsact(iface);
    let tc: &mut SchedClassifier = ebpf
        .program_mut(TC_PROGRAM)
        .context("program `safelink_tc` missing")?
        .try_into()?;
    tc.attach(iface, hook)
        .with_context(|| format!("attaching the TC classifier to {iface} ({hook:?})"))
}

pub fn detach(ebpf: &mut Ebpf, a: Attachment) -> anyhow::Result<()> {
    let tc = |ebpf: &mut Ebpf, l, what: &str| -> anyhow::Result<()> {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(TC_PROGRAM)
            .context("program `safelink_tc` missing")?
            .try_into()?;
        tc.detach(l)
            .with_context(|| format!("detaching the {what} classifier from {}", a.iface))
    };
    if let Some(l) = a.egress {
        tc(ebpf, l, "egress")?;
    }
    match a.ingress {
        Ingress::Tc(l) => tc(ebpf, l, "ingress")?,
        Ingress::Xdp { link, .. } => program(ebpf)?
            .detach(link)
            .with_context(|| format!("detaching from {}", a.iface))?,
    }
    info!(iface = a.iface, "detached");
    Ok(())
}

/// Interface of the default route (first `00000000` destination in /proc/net/route).
pub fn default_route_iface() -> anyhow::Result<String> {
    let routes = std::fs::read_to_string("/proc/net/route").context("reading /proc/net/route")?;
    for line in routes.lines().skip(1) {
        let mut f = line.split_whitespace();
        if let (Some(iface), Some("00000000")) = (f.next(), f.next()) {
            return Ok(iface.to_owned());
        }
    }
    bail!("no default route: pass --iface IF")
}

pub fn pin_path(dir: &Path, map: &str) -> PathBuf {
    dir.join(map)
}
