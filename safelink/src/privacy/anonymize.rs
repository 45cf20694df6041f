//! The anonymisation policy: how an IP or MAC address is written under the configured mode,
//! and the rewriting of every address in an alert (address fields and the free-text
//! description, which names addresses too). Pure functions of the policy and the input: the
//! same key always gives the same form.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{IpMode, KEY_ENV, MIN_KEY_LEN, PrivacyError, RetentionAges};
use crate::alert::Alert;
use crate::config::PrivacyConfig;

/// Domain-separation labels of the keyed hashes (an IPv4, an IPv6 and a MAC address with
/// the same bytes never share a digest).
const DOMAIN_V4: &[u8] = b"safelink-ip4\0";
const DOMAIN_V6: &[u8] = b"safelink-ip6\0";
const DOMAIN_MAC: &[u8] = b"safelink-mac\0";

/// The resolved `[privacy]` section: what [`Policy::apply`] does to each written alert, and
/// the retention ages. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Policy {
    mode: IpMode,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    hash_macs: bool,
    key: Option<Vec<u8>>,
    ages: RetentionAges,
    retention_interval_s: u64,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("mode", &self.mode)
            .field("ipv4_prefix", &self.ipv4_prefix)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("hash_macs", &self.hash_macs)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("ages", &self.ages)
            .finish()
    }
}

impl Default for Policy {
    /// Addresses as seen, default retention ages.
    fn default() -> Self {
        Policy::new(&PrivacyConfig::default(), None).expect("the default policy is valid")
    }
}

impl Policy {
    /// The policy of `cfg`, with `env_key` (the value of `SAFELINK_PRIVACY_KEY`, if set)
    /// taking precedence over `cfg.key`. Errors name the problem: keyed hashing without a key,
    /// a key shorter than [`MIN_KEY_LEN`] bytes, a prefix out of range.
    pub fn new(cfg: &PrivacyConfig, env_key: Option<&str>) -> Result<Policy, PrivacyError> {
        if cfg.ipv4_prefix > 32 {
            return Err(PrivacyError::Ipv4Prefix(cfg.ipv4_prefix));
        }
        if cfg.ipv6_prefix > 128 {
            return Err(PrivacyError::Ipv6Prefix(cfg.ipv6_prefix));
        }
        let key = env_key
            .filter(|k| !k.is_empty())
            .or(cfg.key.as_deref().filter(|k| !k.is_empty()))
            .map(|k| k.as_bytes().to_vec());
        if cfg.ip_mode == IpMode::KeyedHash || cfg.hash_macs {
            match &key {
                None => return Err(PrivacyError::MissingKey),
                Some(k) if k.len() < MIN_KEY_LEN => return Err(PrivacyError::ShortKey(k.len())),
                Some(_) => {}
            }
        }
        Ok(Policy {
            mode: cfg.ip_mode,
            ipv4_prefix: cfg.ipv4_prefix,
            ipv6_prefix: cfg.ipv6_prefix,
            hash_macs: cfg.hash_macs,
            key,
            ages: RetentionAges {
                alerts: cfg.alert_retention_days,
                archive: cfg.archive_retention_days,
                samples: cfg.sample_retention_days,
            },
            retention_interval_s: cfg.retention_interval_s,
        })
    }

    /// [`Policy::new`] with the key from the `SAFELINK_PRIVACY_KEY` environment variable.
    pub fn from_env(cfg: &PrivacyConfig) -> Result<Policy, PrivacyError> {
        let env = std::env::var(KEY_ENV).ok();
        Policy::new(cfg, env.as_deref())
    }

    pub fn mode(&self) -> IpMode {
        self.mode
    }

    pub fn ipv4_prefix(&self) -> u8 {
        self.ipv4_prefix
    }

    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    pub fn hash_macs(&self) -> bool {
        self.hash_macs
    }

    /// Whether a key is configured (the key itself is never shown).
    pub fn key_configured(&self) -> bool {
        self.key.is_some()
    }

    pub fn ages(&self) -> RetentionAges {
        self.ages
    }

    pub fn retention_interval_s(&self) -> u64 {
        self.retention_interval_s
    }

    /// Whether [`Policy::apply`] changes anything.
    pub fn is_active(&self) -> bool {
        self.mode != IpMode::None || self.hash_macs
    }

    fn hmac(&self, domain: &[u8], data: &[u8]) -> Option<[u8; 32]> {
        let key = self.key.as_deref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(domain);
        mac.update(data);
        Some(mac.finalize().into_bytes().into())
    }

    /// The written form of `ip` (IPv4-mapped IPv6 is treated as IPv4).
    pub fn ip(&self, ip: IpAddr) -> IpAddr {
        let ip = ip.to_canonical();
        match self.mode {
            IpMode::None => ip,
            IpMode::Truncate => truncate(ip, self.ipv4_prefix, self.ipv6_prefix),
            IpMode::KeyedHash => match ip {
                IpAddr::V4(v4) => match self.hmac(DOMAIN_V4, &v4.octets()) {
                    Some(h) => IpAddr::V4(hashed_v4(&h)),
                    None => ip,
                },
                IpAddr::V6(v6) => match self.hmac(DOMAIN_V6, &v6.octets()) {
                    Some(h) => IpAddr::V6(hashed_v6(&h)),
                    None => ip,
                },
            },
        }
    }

    /// The written form of a MAC address: a locally administered unicast MAC derived from
    /// the keyed hash when `hash_macs` is on, else the address as given.
    pub fn mac_bytes(&self, mac: [u8; 6]) -> [u8; 6] {
        if !self.hash_macs {
            return mac;
        }
        match self.hmac(DOMAIN_MAC, &mac) {
            Some(h) => hashed_mac(&h),
            None => mac,
        }
    }

    /// [`Policy::mac_bytes`] of a textual MAC. Text that is not a MAC is hashed as text (so
    /// it is never written in clear when MAC hashing is on).
    pub fn mac(&self, mac: &str) -> String {
        if !self.hash_macs {
            return mac.to_string();
        }
        match parse_mac(mac) {
            Some(m) => format_mac(self.mac_bytes(m)),
            None => match self.hmac(DOMAIN_MAC, mac.to_ascii_lowercase().as_bytes()) {
                Some(h) => format_mac(hashed_mac(&h)),
                None => mac.to_string(),
            },
        }
    }

    /// `text` with every IP and MAC address it names replaced by its written form.
    pub fn text(&self, text: &str) -> String {
        if !self.is_active() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, addr) in addresses(text) {
            out.push_str(&text[at..range.start]);
            match addr {
                Addr::Ip(ip) => out.push_str(&self.ip(ip).to_string()),
                Addr::Mac(m) if self.hash_macs => out.push_str(&format_mac(self.mac_bytes(m))),
                Addr::Mac(_) => out.push_str(&text[range.clone()]),
            }
            at = range.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Rewrites every address of `alert` into its written form: `src_ip`, `dest_ip`, the
    /// tunnel's outer addresses, `src_mac` and the addresses named in `description`. When IPs are anonymised the
    /// Community ID is dropped: it is an unkeyed hash of the real addresses and ports, so
    /// trying the few candidates of a truncated prefix would give the address back.
    pub fn apply(&self, alert: &mut Alert) {
        if !self.is_active() {
            return;
        }
        alert.src_ip = alert.src_ip.map(|ip| self.ip(ip));
        alert.dest_ip = alert.dest_ip.map(|ip| self.ip(ip));
        if let Some(t) = &mut alert.tunnel {
            t.outer_src = self.ip(t.outer_src);
            t.outer_dst = self.ip(t.outer_dst);
        }
        if let Some(m) = &alert.src_mac {
            alert.src_mac = Some(self.mac(m));
        }
        alert.description = self.text(&alert.description);
        if self.mode != IpMode::None {
            alert.community_id = None;
        }
    }

    /// `r` with its addresses in their written form (`run --print-records`).
    pub fn record(&self, r: &crate::record::Record) -> crate::record::Record {
        use crate::record::Record;
        let mut r = r.clone();
        if !self.is_active() {
            return r;
        }
        let v4 = |ip: std::net::Ipv4Addr| match self.ip(IpAddr::V4(ip)) {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => ip,
        };
        let tunnel = |t: &mut Option<crate::tunnel::Tunnel>| {
            if let Some(t) = t {
                t.outer_src = self.ip(t.outer_src);
                t.outer_dst = self.ip(t.outer_dst);
            }
        };
        match &mut r {
            Record::FlowStart(s) => {
                s.src_ip = self.ip(s.src_ip);
                s.dst_ip = self.ip(s.dst_ip);
                s.src_mac = self.mac(&s.src_mac);
                tunnel(&mut s.tunnel);
            }
            Record::Flow(f) | Record::FlowUpdate(f) => {
                f.src_ip = self.ip(f.src_ip);
                f.dst_ip = self.ip(f.dst_ip);
                tunnel(&mut f.tunnel);
            }
            Record::OuterFlow(o) => {
                o.tunnel.outer_src = self.ip(o.tunnel.outer_src);
                o.tunnel.outer_dst = self.ip(o.tunnel.outer_dst);
            }
            Record::Arp(a) => {
                a.sender_ip = v4(a.sender_ip);
                a.target_ip = v4(a.target_ip);
                a.eth_src = self.mac(&a.eth_src);
                a.sender_mac = self.mac(&a.sender_mac);
                a.target_mac = self.mac(&a.target_mac);
            }
        }
        r
    }

    /// The forms under which `ip` may be stored: as seen and as written by this policy.
    pub fn ip_forms(&self, ip: IpAddr) -> Vec<IpAddr> {
        let raw = ip.to_canonical();
        let written = self.ip(raw);
        if written == raw {
            vec![raw]
        } else {
            vec![raw, written]
        }
    }

    /// The forms under which `mac` may be stored: as seen and as written by this policy.
    pub fn mac_forms(&self, mac: [u8; 6]) -> Vec<[u8; 6]> {
        let written = self.mac_bytes(mac);
        if written == mac {
            vec![mac]
        } else {
            vec![mac, written]
        }
    }
}

/// `ip` with the host bits zeroed.
fn truncate(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(v4_prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// 28 bits of the digest in 240.0.0.0/4 (reserved, "future use"), never the broadcast
/// address 255.255.255.255.
fn hashed_v4(h: &[u8; 32]) -> Ipv4Addr {
    let bits = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x0fff_ffff;
    let addr = 0xf000_0000 | bits;
    Ipv4Addr::from(if addr == u32::MAX { addr - 1 } else { addr })
}

/// 120 bits of the digest after the fd00::/8 (unique local) prefix.
fn hashed_v6(h: &[u8; 32]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..].copy_from_slice(&h[..15]);
    Ipv6Addr::from(b)
}

/// 46 bits of the digest as a locally administered (bit 1 set) unicast (bit 0 clear) MAC.
fn hashed_mac(h: &[u8; 32]) -> [u8; 6] {
    let mut m = [h[0], h[1], h[2], h[3], h[4], h[5]];
    m[0] = (m[0] | 0x02) & !0x01;
    m
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), any case.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Lower-case colon form, as the detectors write MACs.
pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// An address found in free text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    Ip(IpAddr),
    Mac([u8; 6]),
}

fn parse_addr(s: &str) -> Option<Addr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(Addr::Ip(ip.to_canonical()));
    }
    parse_mac(s).map(Addr::Mac)
}

/// An address at the start of `run` (an address-character run), as its length: the run read
/// as an address, else without trailing punctuation, else as `IPv4:port`.
fn address_in(run: &str) -> Option<(usize, Addr)> {
    if let Some(a) = parse_addr(run) {
        return Some((run.len(), a));
    }
    let trimmed = run.trim_end_matches(['.', ':']);
    if let Some(a) = parse_addr(trimmed) {
        return Some((trimmed.len(), a));
    }
    let (host, port) = trimmed.rsplit_once(':')?;
    if !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v4) = host.parse::<Ipv4Addr>()
    {
        return Some((host.len(), Addr::Ip(IpAddr::V4(v4))));
    }
    None
}

/// Every IP or MAC address named in `text`, with its byte range: maximal runs of hex digits,
/// `:` and `.`, read as an address (see [`address_in`]); when the whole run is not one, the
/// address glued behind a prefix (`dst:10.0.0.1`, `ip:fe80::1`, `a10.0.0.1`) is found by
/// trying the run from each `:` and each letter-to-digit boundary on, longest first.
pub fn addresses(text: &str) -> Vec<(Range<usize>, Addr)> {
    let is_addr_char = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_addr_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_addr_char(bytes[i]) {
            i += 1;
        }
        // The run is ASCII, so these slices are on char boundaries.
        let run = &text[start..i];
        if !run.contains(['.', ':']) {
            continue;
        }
        let rb = run.as_bytes();
        let found = std::iter::once(0)
            .chain((1..rb.len()).filter(|&k| {
                rb[k - 1] == b':' || (rb[k - 1].is_ascii_alphabetic() && rb[k].is_ascii_digit())
            }))
            .find_map(|k| address_in(&run[k..]).map(|(len, a)| (k, len, a)));
        if let Some((k, len, a)) = found {
            out.push((start + k..start + k + len, a));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: IpMode, hash_macs: bool, key: Option<&str>) -> Policy {
        let cfg = PrivacyConfig {
            ip_mode: mode,
            hash_macs,
            ..Default::default()
        };
        Policy::new(&cfg, key).unwrap()
    }

    const KEY: &str = "0123456789abcdef-test-key";

    #[test]
    fn printed_records_carry_the_written_forms() {
        use crate::record::{FlowStartRecord, Record};
        let p = policy(IpMode::Truncate, false, None);
        let s = FlowStartRecord {
            ts_ns: 1,
            src_ip: "192.0.2.77".parse().unwrap(),
            src_port: 40000,
            dst_ip: "198.51.100.9".parse().unwrap(),
            dst_port: 22,
            proto: 6,
            vlan: 0,
            src_mac: "02:00:00:00:00:01".into(),
            tcp_flags: 2,
            tcp_flags_unknown: false,
            icmp_type: 0,
            icmp_code: 0,
            l3_len: 60,
            ttl: 64,
            tunnel: Some(crate::tunnel::Tunnel {
                kind: "vxlan".into(),
                id: 42,
                outer_src: "203.0.113.5".parse().unwrap(),
                outer_dst: "203.0.113.6".parse().unwrap(),
            }),
            ctx: crate::context::FlowContext::default(),
        };
        let Record::FlowStart(w) = p.record(&Record::FlowStart(s)) else {
            unreachable!()
        };
        assert_eq!(w.src_ip, "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(w.dst_ip, "198.51.100.0".parse::<IpAddr>().unwrap());
        let t = w.tunnel.expect("tunnel kept");
        assert_eq!(
            (t.outer_src, t.outer_dst, t.id),
            (
                "203.0.113.0".parse().unwrap(),
                "203.0.113.0".parse().unwrap(),
                42
            )
        );
        assert_eq!(w.src_port, 40000);
    }

    #[test]
    fn alert_tunnel_endpoints_are_anonymised() {
        let p = policy(IpMode::Truncate, false, None);
        let mut a = crate::alert::build::base_alert(crate::alert::AlertKind::PORT_SCAN, 1, 1, 1);
        a.tunnel = Some(crate::tunnel::Tunnel {
            kind: "gre".into(),
            id: 1,
            outer_src: "203.0.113.77".parse().unwrap(),
            outer_dst: "198.51.100.9".parse().unwrap(),
        });
        p.apply(&mut a);
        let t = a.tunnel.unwrap();
        assert_eq!(
            (t.outer_src, t.outer_dst),
            (
                "203.0.113.0".parse::<IpAddr>().unwrap(),
                "198.51.100.0".parse::<IpAddr>().unwrap()
            )
        );
    }

    #[test]
    fn addresses_glued_to_a_prefix_are_found() {
        let p = policy(IpMode::Truncate, false, None);
        assert_eq!(
            p.text("dst:10.0.0.1 src:192.0.2.77:4242 ip:2001:db8::1, a10.9.8.7 and 198.51.100.9."),
            "dst:10.0.0.0 src:192.0.2.0:4242 ip:2001:db8::, a10.9.8.0 and 198.51.100.0."
        );
    }

    #[test]
    fn truncate_zeroes_host_bits() {
        let p = policy(IpMode::Truncate, false, None);
        assert_eq!(
            p.ip("10.100.25.14".parse().unwrap()),
            "10.100.25.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            p.ip("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            p.ip("2001:db8:aa:bb::1".parse().unwrap()),
            "2001:db8:aa::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            truncate("1.2.3.4".parse().unwrap(), 0, 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            truncate("1.2.3.4".parse().unwrap(), 32, 128),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            truncate("1.2.3.4".parse().unwrap(), 12, 0),
            "1.0.0.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn keyed_hash_is_stable_keyed_and_in_reserved_space() {
        let p = policy(IpMode::KeyedHash, true, Some(KEY));
        let q = policy(IpMode::KeyedHash, true, Some("another-key-of-16-bytes"));
        let a: IpAddr = "192.168.56.1".parse().unwrap();
        let b: IpAddr = "192.168.56.2".parse().unwrap();
        assert_eq!(p.ip(a), p.ip(a));
        assert_ne!(p.ip(a), p.ip(b));
        assert_ne!(p.ip(a), q.ip(a));
        let IpAddr::V4(h) = p.ip(a) else {
            panic!("v4 stays v4")
        };
        assert_eq!(h.octets()[0] & 0xf0, 0xf0);
        let IpAddr::V6(h6) = p.ip("2001:db8::1".parse().unwrap()) else {
            panic!("v6 stays v6")
        };
        assert_eq!(h6.octets()[0], 0xfd);
        let m = p.mac_bytes([0, 0x0c, 0x29, 0x20, 0xa8, 0x7f]);
        assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(m, [0, 0x0c, 0x29, 0x20, 0xa8, 0x7f]);
        assert_eq!(p.mac("00:0C:29:20:A8:7F"), format_mac(m));
    }

    #[test]
    fn key_rules_are_enforced() {
        let cfg = PrivacyConfig {
            ip_mode: IpMode::KeyedHash,
            ..Default::default()
        };
        assert_eq!(Policy::new(&cfg, None), Err(PrivacyError::MissingKey));
        assert_eq!(Policy::new(&cfg, Some("")), Err(PrivacyError::MissingKey));
        assert_eq!(
            Policy::new(&cfg, Some("short")),
            Err(PrivacyError::ShortKey(5))
        );
        let macs = PrivacyConfig {
            hash_macs: true,
            ..Default::default()
        };
        assert_eq!(Policy::new(&macs, None), Err(PrivacyError::MissingKey));
        let from_file = PrivacyConfig {
            key: Some(KEY.into()),
            ..cfg.clone()
        };
        let env_wins = Policy::new(&from_file, Some("environment-key-0001")).unwrap();
        let file = Policy::new(&from_file, None).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(env_wins.ip(a), file.ip(a));
        assert!(!format!("{file:?}").contains(KEY));
        let bad = PrivacyConfig {
            ipv4_prefix: 33,
            ..Default::default()
        };
        assert_eq!(Policy::new(&bad, None), Err(PrivacyError::Ipv4Prefix(33)));
    }

    #[test]
    fn text_rewrites_every_address() {
        let p = policy(IpMode::Truncate, false, None);
        assert_eq!(
            p.text("SSH brute force from 192.168.56.1 against 192.168.56.103:22: 10 sessions"),
            "SSH brute force from 192.168.56.0 against 192.168.56.0:22: 10 sessions"
        );
        assert_eq!(
            p.text("scan of [2001:db8:1:2::5]:80 by 10.0.0.9."),
            "scan of [2001:db8:1::]:80 by 10.0.0.0."
        );
        let h = policy(IpMode::KeyedHash, true, Some(KEY));
        let mac = h.mac("00:e0:4d:3c:25:7b");
        let ip = h.ip("10.0.0.153".parse().unwrap());
        assert_eq!(
            h.text("ARP spoofing by 00:e0:4d:3c:25:7b: claims 10.0.0.153 (owned by x)"),
            format!("ARP spoofing by {mac}: claims {ip} (owned by x)")
        );
        // MACs stay when only IPs are anonymised; words and numbers are left alone.
        assert_eq!(
            p.text("ARP scan from 00:0c:29:20:a8:7f (10.0.0.128): 30 distinct, 1.0 deadbeef"),
            "ARP scan from 00:0c:29:20:a8:7f (10.0.0.0): 30 distinct, 1.0 deadbeef"
        );
    }

    #[test]
    fn finds_addresses_in_text() {
        let found: Vec<Addr> = addresses("a 10.0.0.1:22, fe80::1 and 00:11:22:33:44:55: x")
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(
            found,
            vec![
                Addr::Ip("10.0.0.1".parse().unwrap()),
                Addr::Ip("fe80::1".parse().unwrap()),
                Addr::Mac([0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            ]
        );
    }
}
