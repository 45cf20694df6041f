//! Thresholds and windows of every automaton, with documented defaults.
//!
//! Every struct deserialises with `#[serde(default)]`, so a config file only names what it
//! changes; the three flood sections share one type, and each fills its missing keys from its
//! own family's defaults ([`flood_section`]), not from another's. Windows are whole seconds of
//! *capture time* (the records' own timestamps, never the wall clock). [`DfaConfig::validate`]
//! rejects values the automata cannot work with (zero windows or thresholds). Why the defaults
//! differ from Zeek's is written next to each field and in `safelink/src/detect/README.md`.
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use super::DetectError;

/// All automata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DfaConfig {
    /// Least capture time between two `Updated` events of one alert (default 1 s): an incident
    /// raises one `New` event, then at most one `Updated` per second while it grows.
    pub update_interval_secs: u64,
    /// An alerting incident without new evidence for its window enters cool-down; after this
    /// many further quiet seconds it closes (default 600 s). Evidence during cool-down re-opens
    /// the same alert instead of raising a new one.
    pub cooldown_secs: u64,
    /// Most keys (sources, victims, source/destination pairs) one automaton tracks at once
    /// (default 50 000, about 20 MB per automaton); beyond it, the least recently updated key
    /// is forgotten to make room, counted (`safelink_detector_keys_evicted_total`). A spoofed
    /// flood fills several automata at once: 50 000 keeps the daemon under 256 MB through one
    /// (`tests/flood_lab.rs`).
    pub max_keys: usize,
    /// Most distinct items (ports, hosts, IPs...) one window of one key remembers (default 4096;
    /// every threshold is far below it).
    pub max_items_per_key: usize,
    /// Most slots the windows of all keys of one automaton hold together (default 1 048 576,
    /// about 40 MB): the room their tables have allocated, about one to two slots per item
    /// remembered (`max_keys` × `max_items_per_key` alone would allow 200 million). Checked
    /// each second: beyond it, the least recently updated keys are forgotten, as for a full
    /// table, and counted with them (`safelink_detector_keys_evicted_total`).
    pub max_items: usize,
    pub port_scan: PortScanConfig,
    pub host_sweep: HostSweepConfig,
    pub arp_scan: ArpScanConfig,
    pub arp_spoof: ArpSpoofConfig,
    pub ssh_brute_force: SshBruteForceConfig,
    pub login_brute_force: LoginBruteForceConfig,
    #[serde(deserialize_with = "syn_section")]
    pub syn_flood: FloodConfig,
    #[serde(deserialize_with = "udp_section")]
    pub udp_flood: FloodConfig,
    #[serde(deserialize_with = "icmp_section")]
    pub icmp_flood: FloodConfig,
    pub amplification: AmplificationConfig,
}

/// Deserialises a flood section over its own family's defaults `base`: `[dfa.udp_flood]`
/// naming one key keeps the UDP defaults for the rest (the shared type's `Default` is the SYN
/// flood's).
fn flood_section<'de, D: Deserializer<'de>>(
    d: D,
    base: FloodConfig,
) -> Result<FloodConfig, D::Error> {
    let given = toml::Table::deserialize(d)?;
    let mut merged = toml::Table::try_from(base).map_err(D::Error::custom)?;
    merged.extend(given);
    FloodConfig::deserialize(merged).map_err(|e| D::Error::custom(e.to_string().trim_end()))
}

fn syn_section<'de, D: Deserializer<'de>>(d: D) -> Result<FloodConfig, D::Error> {
    flood_section(d, FloodConfig::syn())
}

fn udp_section<'de, D: Deserializer<'de>>(d: D) -> Result<FloodConfig, D::Error> {
    flood_section(d, FloodConfig::udp())
}

fn icmp_section<'de, D: Deserializer<'de>>(d: D) -> Result<FloodConfig, D::Error> {
    flood_section(d, FloodConfig::icmp())
}

impl Default for DfaConfig {
    fn default() -> Self {
        Self {
            update_interval_secs: 1,
            cooldown_secs: 600,
            max_keys: 50_000,
            max_items_per_key: 4096,
            max_items: 1 << 20,
            port_scan: PortScanConfig::default(),
            host_sweep: HostSweepConfig::default(),
            arp_scan: ArpScanConfig::default(),
            arp_spoof: ArpSpoofConfig::default(),
            ssh_brute_force: SshBruteForceConfig::default(),
            login_brute_force: LoginBruteForceConfig::default(),
            syn_flood: FloodConfig::syn(),
            udp_flood: FloodConfig::udp(),
            icmp_flood: FloodConfig::icmp(),
            amplification: AmplificationConfig::default(),
        }
    }
}

/// `port_scan`: failed probes from one source to many ports of one destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortScanConfig {
    /// Sliding window of the main tier (default 300 s, Zeek's 5 min).
    pub window_secs: u64,
    /// Distinct failed ports within `window_secs` that make a scan (default 15, Zeek's value).
    pub ports: u64,
    /// Distinct failed ports within `window_secs` that make the pair suspicious (default 5).
    pub suspicious_ports: u64,
    /// Long window of the slow-scan tier (default 3600 s; Zeek has no second tier).
    pub slow_window_secs: u64,
    /// Distinct failed ports within `slow_window_secs` that make a slow scan (default 30).
    pub slow_ports: u64,
    /// Distinct ports hit by stealth probes (first packet NULL, FIN, XMAS, SYN+FIN...; never
    /// sent by a TCP stack) within `window_secs` that make a scan (default 5).
    pub stealth_ports: u64,
    /// Burst tier: this many distinct ports of one host opened (TCP SYN, UDP) within
    /// `burst_window_secs`, whatever the outcome (default 100 in 10 s). Counted from flow-start
    /// records, so a fast scan is reported while it runs instead of when its flows end.
    pub burst_ports: u64,
    /// Default 10 s.
    pub burst_window_secs: u64,
    /// UDP destination port ranges (inclusive) that are not scan evidence: by default the
    /// classic traceroute range 33434-33534, which a UDP traceroute walks one port per probe.
    pub ignore_udp_ports: Vec<(u16, u16)>,
}

impl Default for PortScanConfig {
    fn default() -> Self {
        Self {
            window_secs: 300,
            ports: 15,
            suspicious_ports: 5,
            slow_window_secs: 3600,
            slow_ports: 30,
            stealth_ports: 5,
            burst_ports: 100,
            burst_window_secs: 10,
            ignore_udp_ports: vec![(33434, 33534)],
        }
    }
}

/// `host_sweep`: failed probes of one service (ICMP echo, TCP port, UDP port) to many hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSweepConfig {
    /// Default 300 s (Zeek's 5 min).
    pub window_secs: u64,
    /// Distinct hosts with a failed probe of one service within the window (default 25, Zeek's),
    /// when they are dense (see `dense_hosts_per_prefix`).
    pub hosts: u64,
    /// Hosts count as dense when there is at most one /24 (IPv6 /64) per this many of them
    /// (default 4): a walked subnet. Zeek has no such condition.
    pub dense_hosts_per_prefix: u64,
    /// Distinct hosts that make a sweep however scattered they are (default 250): peer-to-peer
    /// clients call hundreds of vanished peers on a well-known port.
    pub scattered_hosts: u64,
    /// Default 8.
    pub suspicious_hosts: u64,
}

impl Default for HostSweepConfig {
    fn default() -> Self {
        Self {
            window_secs: 300,
            hosts: 25,
            dense_hosts_per_prefix: 4,
            scattered_hosts: 250,
            suspicious_hosts: 8,
        }
    }
}

/// `arp_scan`: ARP requests from one MAC for many different addresses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArpScanConfig {
    /// Default 60 s.
    pub window_secs: u64,
    /// Distinct target IPs asked for within the window (default 30). A router or a busy host
    /// asks for a handful of neighbours a minute; arp-scan, nmap -sn and netdiscover ask for a
    /// whole subnet in seconds.
    pub targets: u64,
    /// Default 10.
    pub suspicious_targets: u64,
}

impl Default for ArpScanConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            targets: 30,
            suspicious_targets: 10,
        }
    }
}

/// `arp_spoof`: an IP claimed by a second MAC, one MAC claiming the IPs of several hosts
/// (MITM), unsolicited-reply storms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArpSpoofConfig {
    /// Default 60 s.
    pub window_secs: u64,
    /// How long an IP→MAC binding stays owned by its MAC without being refreshed (default
    /// 600 s); after that a new MAC may take the address over without a conflict.
    pub binding_ttl_secs: u64,
    /// Claims of already-owned IPs by one MAC within the window (default 3: a re-addressed host
    /// announces its new address once or twice; a poisoner repeats every 2-10 s).
    pub conflicts: u64,
    /// Distinct owned IPs one MAC claims within the window: 2 is the MITM pattern, poisoning
    /// two hosts about each other (default 2).
    pub mitm_ips: u64,
    /// Unsolicited ARP replies and gratuitous announcements from one MAC within the window
    /// (default 10; a host announces a new address 2-3 times).
    pub storm_replies: u64,
    /// A reply is solicited when the matching request was seen this recently (default 5 s).
    pub solicit_window_secs: u64,
}

impl Default for ArpSpoofConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            binding_ttl_secs: 600,
            conflicts: 3,
            mitm_ips: 2,
            storm_replies: 10,
            solicit_window_secs: 5,
        }
    }
}

/// What a failed-looking login session is (no payload: only sizes, counts and duration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionShape {
    /// Longest session (default 60 s): a failed login ends within seconds.
    pub max_duration_secs: u64,
    /// Most bytes the server sends (L2, default 16384): banner, key exchange and a few
    /// failure messages; a shell, a listing or a page is more.
    pub max_server_bytes: u64,
    /// Most packets the client sends (default 100).
    pub max_client_packets: u64,
}

impl Default for SessionShape {
    fn default() -> Self {
        Self {
            max_duration_secs: 60,
            max_server_bytes: 16_384,
            max_client_packets: 100,
        }
    }
}

/// `ssh_brute_force`: many short, failed-looking SSH sessions from one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshBruteForceConfig {
    /// SSH ports (default 22 and 2222).
    pub ports: Vec<u16>,
    /// Default 1800 s (Zeek's 30 min).
    pub window_secs: u64,
    /// Failed-looking sessions within the window (default 10). Zeek counts 30 failed SSH
    /// connections, judged from payload sizes; without payload we judge a session by its shape,
    /// and brute-force tools make about 3 guesses per connection, so 10 sessions ≈ 30 guesses
    /// and paced runs are reported within minutes.
    pub sessions: u64,
    /// Default 3.
    pub suspicious_sessions: u64,
    pub session: SessionShape,
}

impl Default for SshBruteForceConfig {
    fn default() -> Self {
        Self {
            ports: vec![22, 2222],
            window_secs: 1800,
            sessions: 10,
            suspicious_sessions: 3,
            session: SessionShape::default(),
        }
    }
}

/// One login service watched by `login_brute_force`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginService {
    pub port: u16,
    pub name: String,
    /// Overrides [`LoginBruteForceConfig::sessions`] for this service.
    #[serde(default)]
    pub sessions: Option<u64>,
    /// Whether the slow (back-to-back) tier applies (default true). Off for HTTP, where scripts
    /// and scanners fetch one small page after another without keep-alive.
    #[serde(default = "yes")]
    pub slow: bool,
}

fn yes() -> bool {
    true
}

/// `login_brute_force`: many short, similar, failed-looking sessions from one source to one
/// login service of one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginBruteForceConfig {
    pub services: Vec<LoginService>,
    /// Default 60 s. Shorter than SSH's: health checks and pollers open a database or HTTP
    /// session every few seconds for ever, so only a fast burst, or a slow run that keeps the
    /// service busy (the slow tier below), is evidence.
    pub window_secs: u64,
    /// Similar failed-looking sessions within the window (default 20).
    pub sessions: u64,
    /// Default 5.
    pub suspicious_sessions: u64,
    /// Slow tier: a window of 600 s...
    pub slow_window_secs: u64,
    /// ...with at least this many similar sessions (default 10)...
    pub slow_sessions: u64,
    /// ...that kept the service busy at least this share of the time between the first and
    /// the last (default 30 %): a tool tries again as soon as one attempt fails, while a health
    /// check or poller holds a session for a moment every few seconds (1-5 %).
    pub slow_min_busy_percent: u64,
    pub session: SessionShape,
}

impl Default for LoginBruteForceConfig {
    fn default() -> Self {
        let s = |port: u16, name: &str, sessions: Option<u64>| LoginService {
            port,
            name: name.to_owned(),
            sessions,
            // HTTP (the services with their own count) has no slow tier.
            slow: sessions.is_none(),
        };
        Self {
            services: vec![
                s(21, "ftp", None),
                s(23, "telnet", None),
                s(25, "smtp", None),
                s(110, "pop3", None),
                s(143, "imap", None),
                s(139, "netbios-ssn", None),
                s(445, "smb", None),
                s(389, "ldap", None),
                s(587, "smtp-submission", None),
                s(993, "imaps", None),
                s(995, "pop3s", None),
                s(1433, "mssql", None),
                s(1521, "oracle", None),
                s(3306, "mysql", None),
                s(3389, "rdp", None),
                s(5432, "postgresql", None),
                s(5900, "vnc", None),
                s(6379, "redis", None),
                s(27017, "mongodb", None),
                // HTTP auth: pages load in bursts of short connections, so twice the count.
                s(80, "http", Some(40)),
                s(8080, "http-alt", Some(40)),
            ],
            window_secs: 60,
            sessions: 20,
            suspicious_sessions: 5,
            slow_window_secs: 600,
            slow_sessions: 10,
            slow_min_busy_percent: 30,
            session: SessionShape::default(),
        }
    }
}

/// `syn_flood`, `udp_flood`, `icmp_flood`: rates per victim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Sliding window (default 5 s).
    pub window_secs: u64,
    /// New flows (SYN flood: half-open SYNs to one port) towards one victim within the window.
    pub new_flows: u64,
    /// ...or this many within one second (a short flood: `hping3 --flood -c 1000` is over in a
    /// fraction of a second).
    pub peak_flows_per_sec: u64,
    /// A single one-way flow with at least this many packets...
    pub heavy_flow_packets: u64,
    /// ...at this many packets per second or more is a flood by itself.
    pub heavy_flow_pps: u64,
    /// A one-way flow of small packets (mean L3 size at most `small_packet_l3` bytes) needs
    /// only this many at `heavy_flow_pps`: a packet-rate flood is over in a second or two
    /// (`hping3 --udp -k -c 2000 -i u1000` with its default empty datagrams), while bulk
    /// transfers that legitimately run one-way (iperf3, RTP video) carry large packets.
    /// 0: every heavy flow needs `heavy_flow_packets`. UDP and ICMP floods only (the SYN
    /// flood's single flow is counted in SYNs, which are all small).
    pub small_flow_packets: u64,
    /// See `small_flow_packets`.
    pub small_packet_l3: u16,
}

impl FloodConfig {
    /// SYN flood: 500 half-open SYNs in 5 s (100/s) to one port (completed connections are
    /// taken back), or one 5-tuple repeating its SYN 200 times at 100/s (a TCP stack retries
    /// a SYN 5-7 times in two minutes).
    pub fn syn() -> Self {
        Self {
            window_secs: 5,
            new_flows: 500,
            peak_flows_per_sec: 500,
            heavy_flow_packets: 200,
            heavy_flow_pps: 100,
            small_flow_packets: 0,
            small_packet_l3: 0,
        }
    }

    /// UDP flood: 2500 new UDP flows in 5 s (500/s) or 1000 within a second to one host;
    /// higher than SYN because DNS and NTP servers legitimately see a new flow per query. One
    /// one-way flow is a flood at 1000 packets/s once it has 10 000 packets (10 s), or 1000
    /// (1 s) when they average 128 L3 bytes or less (an IPv6 datagram with 80 bytes of data;
    /// iperf3 and media streams send 1000-1500).
    pub fn udp() -> Self {
        Self {
            window_secs: 5,
            new_flows: 2500,
            peak_flows_per_sec: 1000,
            heavy_flow_packets: 10_000,
            heavy_flow_pps: 1000,
            small_flow_packets: 1000,
            small_packet_l3: 128,
        }
    }

    /// ICMP flood: ICMP flows are keyed per host pair, so 1000 new ones in 5 s (or 500 within a
    /// second) means as many sources; a single ping flood is one flow of 1000+ packets at
    /// 500+/s.
    pub fn icmp() -> Self {
        Self {
            window_secs: 5,
            new_flows: 1000,
            peak_flows_per_sec: 500,
            heavy_flow_packets: 1000,
            heavy_flow_pps: 500,
            small_flow_packets: 0,
            small_packet_l3: 0,
        }
    }

    /// Whether a one-way flow of `packets` adding up to `l3_bytes` is long enough to be a flood
    /// by itself (its rate is judged apart): `heavy_flow_packets`, or `small_flow_packets` of
    /// small packets.
    pub fn heavy_enough(&self, packets: u64, l3_bytes: u64) -> bool {
        packets >= self.heavy_flow_packets
            || (self.small_flow_packets > 0
                && packets >= self.small_flow_packets
                && l3_bytes <= packets.saturating_mul(u64::from(self.small_packet_l3)))
    }
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self::syn()
    }
}

/// One UDP service that reflectors abuse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmpService {
    pub port: u16,
    pub name: String,
    /// An unsolicited response of this many L3 bytes or more is an alert by itself (a
    /// per-packet rule for services whose honest replies are small, e.g. NTP: 76-120 bytes,
    /// while a mode 6/7 monlist reply is 200-500).
    #[serde(default)]
    pub single_packet_l3: Option<u16>,
}

/// `amplification`: unsolicited responses from reflection services towards one victim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmplificationConfig {
    pub services: Vec<AmpService>,
    /// Default 10 s.
    pub window_secs: u64,
    /// Distinct reflectors within the window (default 10)...
    pub reflectors: u64,
    /// ...and at least this many response bytes (L3 of each flow's first packet, default 50 000).
    pub bytes: u64,
    /// One unsolicited response flow of this many bytes is an alert by itself (default 1 MB).
    pub heavy_flow_bytes: u64,
    /// A first response at least this large (L3 bytes, default 512: more than a classic DNS
    /// answer, more than SSDP/mDNS answers) is a large one...
    pub large_response_l3: u16,
    /// ...and this many reflectors sending large ones within the window alert (default 10).
    pub large_reflectors: u64,
    /// TCP reflection: distinct servers whose flows to the victim start with a SYN-ACK within
    /// the window (default 50).
    pub tcp_reflectors: u64,
}

impl Default for AmplificationConfig {
    fn default() -> Self {
        let s = |port: u16, name: &str, single: Option<u16>| AmpService {
            port,
            name: name.to_owned(),
            single_packet_l3: single,
        };
        Self {
            services: vec![
                s(17, "qotd", Some(200)),
                s(19, "chargen", Some(200)),
                s(53, "dns", None),
                s(69, "tftp", None),
                s(111, "portmap", None),
                s(123, "ntp", Some(200)),
                s(137, "netbios-ns", None),
                s(161, "snmp", None),
                s(389, "cldap", None),
                s(520, "rip", None),
                s(1434, "mssql-browser", None),
                s(1900, "ssdp", None),
                s(3283, "apple-ard", None),
                s(3702, "ws-discovery", None),
                s(500, "isakmp", None),
                s(4500, "ipsec-nat-t", None),
                s(623, "ipmi-rmcp", None),
                s(47808, "bacnet", None),
                s(5353, "mdns", None),
                s(5683, "coap", None),
                s(10001, "ubiquiti", None),
                s(11211, "memcached", Some(1000)),
                s(37810, "dvr-dhcpdiscover", None),
            ],
            window_secs: 10,
            reflectors: 10,
            bytes: 50_000,
            heavy_flow_bytes: 1_000_000,
            large_response_l3: 512,
            large_reflectors: 10,
            tcp_reflectors: 50,
        }
    }
}

fn positive(field: &'static str, v: u64) -> Result<(), DetectError> {
    if v == 0 {
        return Err(DetectError::InvalidConfig {
            field,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

impl DfaConfig {
    /// Checks that every window and threshold is usable.
    pub fn validate(&self) -> Result<(), DetectError> {
        positive("update_interval_secs", self.update_interval_secs)?;
        positive("max_keys", self.max_keys as u64)?;
        positive("max_items_per_key", self.max_items_per_key as u64)?;
        positive("max_items", self.max_items as u64)?;
        let p = &self.port_scan;
        positive("port_scan.window_secs", p.window_secs)?;
        positive("port_scan.ports", p.ports)?;
        positive("port_scan.slow_window_secs", p.slow_window_secs)?;
        positive("port_scan.slow_ports", p.slow_ports)?;
        positive("port_scan.stealth_ports", p.stealth_ports)?;
        positive("port_scan.burst_ports", p.burst_ports)?;
        positive("port_scan.burst_window_secs", p.burst_window_secs)?;
        for &(a, b) in &p.ignore_udp_ports {
            if a > b {
                return Err(DetectError::InvalidConfig {
                    field: "port_scan.ignore_udp_ports",
                    reason: format!("range {a}-{b} is reversed"),
                });
            }
        }
        positive("host_sweep.window_secs", self.host_sweep.window_secs)?;
        positive("host_sweep.hosts", self.host_sweep.hosts)?;
        positive(
            "host_sweep.scattered_hosts",
            self.host_sweep.scattered_hosts,
        )?;
        positive("arp_scan.window_secs", self.arp_scan.window_secs)?;
        positive("arp_scan.targets", self.arp_scan.targets)?;
        let s = &self.arp_spoof;
        positive("arp_spoof.window_secs", s.window_secs)?;
        positive("arp_spoof.binding_ttl_secs", s.binding_ttl_secs)?;
        positive("arp_spoof.conflicts", s.conflicts)?;
        positive("arp_spoof.mitm_ips", s.mitm_ips)?;
        positive("arp_spoof.storm_replies", s.storm_replies)?;
        positive(
            "ssh_brute_force.window_secs",
            self.ssh_brute_force.window_secs,
        )?;
        positive("ssh_brute_force.sessions", self.ssh_brute_force.sessions)?;
        positive(
            "login_brute_force.window_secs",
            self.login_brute_force.window_secs,
        )?;
        positive(
            "login_brute_force.sessions",
            self.login_brute_force.sessions,
        )?;
        for svc in &self.login_brute_force.services {
            if svc.sessions == Some(0) {
                return Err(DetectError::InvalidConfig {
                    field: "login_brute_force.services.sessions",
                    reason: format!("{} ({}) must be at least 1", svc.name, svc.port),
                });
            }
        }
        for (name, f) in [
            ("syn_flood", &self.syn_flood),
            ("udp_flood", &self.udp_flood),
            ("icmp_flood", &self.icmp_flood),
        ] {
            if f.window_secs == 0
                || f.new_flows == 0
                || f.peak_flows_per_sec == 0
                || f.heavy_flow_packets == 0
            {
                return Err(DetectError::InvalidConfig {
                    field: "flood",
                    reason: format!(
                        "{name}: window_secs, new_flows and heavy_flow_packets must be at least 1"
                    ),
                });
            }
        }
        let a = &self.amplification;
        positive("amplification.window_secs", a.window_secs)?;
        positive("amplification.reflectors", a.reflectors)?;
        positive("amplification.heavy_flow_bytes", a.heavy_flow_bytes)?;
        positive("amplification.large_reflectors", a.large_reflectors)?;
        positive("amplification.tcp_reflectors", a.tcp_reflectors)?;
        Ok(())
    }
}

/// Seconds to nanoseconds, saturating.
pub(crate) fn ns(secs: u64) -> u64 {
    secs.saturating_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_partial_json_keeps_defaults() {
        DfaConfig::default().validate().unwrap();
        let c: DfaConfig =
            serde_json::from_str(r#"{"port_scan": {"ports": 20}, "cooldown_secs": 60}"#).unwrap();
        assert_eq!(c.port_scan.ports, 20);
        assert_eq!(c.port_scan.window_secs, 300);
        assert_eq!(c.cooldown_secs, 60);
        assert_eq!(c.host_sweep, HostSweepConfig::default());
    }

    #[test]
    fn a_partial_flood_section_keeps_its_own_familys_defaults() {
        let c: DfaConfig = toml::from_str(
            "[udp_flood]\nnew_flows = 5000\n[icmp_flood]\nwindow_secs = 10\n[syn_flood]\nnew_flows = 800",
        )
        .unwrap();
        let udp = FloodConfig {
            new_flows: 5000,
            ..FloodConfig::udp()
        };
        assert_eq!(c.udp_flood, udp);
        assert_eq!(c.udp_flood.heavy_flow_pps, 1000); // not the SYN flood's 100
        let icmp = FloodConfig {
            window_secs: 10,
            ..FloodConfig::icmp()
        };
        assert_eq!(c.icmp_flood, icmp);
        assert_eq!(c.syn_flood.new_flows, 800);
        assert_eq!(c.syn_flood.heavy_flow_packets, 200);
        // The same through JSON (the API's form).
        let c: DfaConfig = serde_json::from_str(r#"{"udp_flood": {"new_flows": 5000}}"#).unwrap();
        assert_eq!(c.udp_flood, udp);
        // An unknown key in a flood section is still refused, by name.
        let e = toml::from_str::<DfaConfig>("[udp_flood]\nnew_flow = 5000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("new_flow"), "{e}");
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let mut c = DfaConfig::default();
        c.port_scan.ports = 0;
        assert!(matches!(
            c.validate(),
            Err(DetectError::InvalidConfig {
                field: "port_scan.ports",
                ..
            })
        ));
        let mut c = DfaConfig::default();
        c.port_scan.ignore_udp_ports = vec![(10, 5)];
        assert!(c.validate().is_err());
        assert!(serde_json::from_str::<DfaConfig>(r#"{"no_such_field": 1}"#).is_err());
    }
}
