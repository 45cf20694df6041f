//! What kind of interface the sensor attaches to, which decides the ingress hook `auto` picks:
//! a physical NIC (its driver names a bus address: PCI, virtio, ...) gets native XDP; a
//! virtual device without one (veth, bridge, tap, vxlan, ...) gets the TC classifier, because
//! native XDP on a veth makes every frame of its peer, GSO super-packets included, take the
//! slow copying path (`cargo xtask bench veth`: TCP across the pair fell to about a fifth), and
//! generic XDP reallocates every frame a local socket sent to give it XDP's headroom (UDP at
//! 85–88 % of the throughput without the sensor, 97–98 % with TC). Asked with the
//! `ETHTOOL_GDRVINFO` ioctl in the caller's network namespace (sysfs may show another
//! namespace's interfaces).
use std::{ffi::CStr, os::fd::AsRawFd as _};

use anyhow::{Context as _, bail};

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [libc::c_char; 32],
    version: [libc::c_char; 32],
    fw_version: [libc::c_char; 32],
    bus_info: [libc::c_char; 32],
    erom_version: [libc::c_char; 32],
    reserved2: [libc::c_char; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver of an interface and whether it sits on a bus (a physical or virtio device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    pub bus_info: String,
}

impl Driver {
    /// A virtual device: no bus address (veth, bridge, tun/tap, vxlan, bond, ...).
    pub fn is_virtual(&self) -> bool {
        self.bus_info.is_empty() || self.bus_info == "N/A"
    }
}

fn text(b: &[libc::c_char]) -> String {
    // The kernel NUL-terminates these fields (and `driver` forces the last byte to 0).
    let bytes: Vec<u8> = b.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The driver of `iface` in this network namespace.
pub fn driver(iface: &str) -> anyhow::Result<Driver> {
    if iface.len() >= libc::IFNAMSIZ {
        bail!("interface name too long: {iface}");
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
        .context("a socket for the ethtool ioctl")?;
    // SAFETY: all-zero is a valid ethtool_drvinfo and ifreq.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: a valid socket, ifreq and the drvinfo it points to, alive for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("ETHTOOL_GDRVINFO on {iface}"));
    }
    info.driver[31] = 0;
    info.bus_info[31] = 0;
    Ok(Driver {
        name: text(&info.driver),
        bus_info: text(&info.bus_info),
    })
}
