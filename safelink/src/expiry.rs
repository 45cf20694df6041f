//! The flow expiry policy, shared by the kernel-map sweeper and the replay path so both end
//! flows at the same moments, and the interim-update policy ([`Interim`]) by which running
//! heavy flows reach the detectors before they end. Outer flows of tunnels end by the same
//! idle and active timeouts ([`outer_expired`]).
use rustc_hash::FxHashMap;
use safelink_common::{
    DirStats, FlowKey, FlowStats, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, OuterStats,
};
use serde::Serialize;

use std::time::Duration;

use serde::Deserialize;

/// When a flow is considered finished and exported as a [`crate::record::FlowRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// No packet for this long: the flow ends (default 60 s, Suricata's TCP new/closed timeout).
    pub idle: Duration,
    /// A flow older than this is exported and restarted (default 1800 s, nfstream's default).
    pub active: Duration,
    /// After the first FIN/RST, wait this long for the closing packets (default 2 s).
    pub closed_linger: Duration,
    /// A flow that is still only a SYN (or one TCP segment without data, or one datagram of UDP
    /// or another non-ICMP protocol) ends after this much silence
    /// (default 2 s), so failed connections and probes reach the detectors quickly.
    pub embryonic: Duration,
    /// A running flow is reported (an interim update) each time it has this many packets more
    /// than at its last report, at most once per sweep; 0 turns interim updates off.
    pub interim_packets: u64,
    /// Replay only: the most flows the flow table holds (the kernel map's own bound is fixed
    /// at 65 536). When it is full, the longest-idle sixteenth is exported
    /// ([`EndReason::Evicted`]).
    pub max_flows: usize,
    /// The tunnels the parser opens (`[flows] tunnels`, `vxlan_port`, `geneve_port`).
    pub tunnels: safelink_common::parse::TunnelConfig,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowsConfig::default().timeouts()
    }
}

/// `[flows]`: flow expiry (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowsConfig {
    pub idle_timeout_s: u64,
    pub active_timeout_s: u64,
    pub closed_linger_s: u64,
    pub embryonic_timeout_s: u64,
    pub interim_packets: u64,
    pub max_flows: u64,
    /// Tunnel kinds decapsulated, by the XDP program and in replay: inner flows are keyed and
    /// reported with their tunnel. `[]` turns decapsulation off.
    pub tunnels: crate::tunnel::TunnelKinds,
    /// UDP destination ports of VXLAN and Geneve.
    pub vxlan_port: u16,
    pub geneve_port: u16,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FlowsConfig {
    /// The defaults, written once: idle 60 s (Suricata's TCP new/closed timeout), active
    /// 1800 s (nfstream), closing linger 2 s, embryonic 2 s, an interim update every 1000
    /// packets (a flow at 1000 packets/s or more is reported every sweep, a slower one less
    /// often, an ordinary one never), at most 1 048 576 flows in the replay's table (16 times
    /// the kernel map; some 300 MiB of flow state), every tunnel kind decoded on its IANA
    /// port (VXLAN 4789, Geneve 6081).
    pub const DEFAULT: Self = Self {
        idle_timeout_s: 60,
        active_timeout_s: 1800,
        closed_linger_s: 2,
        embryonic_timeout_s: 2,
        interim_packets: 1000,
        max_flows: 1 << 20,
        tunnels: crate::tunnel::TunnelKinds::ALL,
        vxlan_port: safelink_common::parse::TunnelConfig::DEFAULT.vxlan_port,
        geneve_port: safelink_common::parse::TunnelConfig::DEFAULT.geneve_port,
    };

    /// The parser's tunnel configuration.
    pub fn tunnel_config(&self) -> safelink_common::parse::TunnelConfig {
        self.tunnels.parser(self.vxlan_port, self.geneve_port)
    }

    pub fn timeouts(&self) -> FlowTimeouts {
        FlowTimeouts {
            idle: Duration::from_secs(self.idle_timeout_s),
            active: Duration::from_secs(self.active_timeout_s),
            closed_linger: Duration::from_secs(self.closed_linger_s),
            embryonic: Duration::from_secs(self.embryonic_timeout_s),
            interim_packets: self.interim_packets,
            max_flows: usize::try_from(self.max_flows).unwrap_or(usize::MAX).max(1),
            tunnels: self.tunnel_config(),
        }
    }
}

/// Why a flow record was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No packet for the idle timeout.
    Idle,
    /// Older than the active timeout.
    Active,
    /// TCP FIN or RST seen, then the closing linger passed.
    Closed,
    /// End of the capture file (replay) or flush on request.
    Flush,
    /// Still in progress (a snapshot of the live flow map).
    Open,
    /// Nothing but a first SYN (or a single datagram, not ICMP) and no answer for the embryonic
    /// timeout: a failed connection attempt or a probe.
    Unanswered,
    /// Replay: the flow table was full (`[flows] max_flows`) and this flow was among the
    /// longest idle.
    Evicted,
}

/// The largest IP packet of a TCP segment that carries no data: an IPv6 header (40 bytes) and
/// a TCP header with the most options (60).
pub const BARE_SEGMENT_MAX_L3: u16 = 100;

/// Whether a direction's segments carry no data: no PSH and no packet longer than headers
/// ([`BARE_SEGMENT_MAX_L3`]).
pub fn bare_segments(d: &DirStats) -> bool {
    d.flags.psh == 0 && d.l3_max <= BARE_SEGMENT_MAX_L3
}

/// A flow that never got past its first step: only pure SYNs (either direction); a single TCP
/// segment without SYN, SYN-ACK, FIN, RST or data (a bare ACK of `hping3 -A --rand-source`,
/// whose victim cannot answer the spoofed source); or a single datagram of UDP or of any IP
/// protocol other than TCP and ICMP. An XDP sensor sees one interface's ingress only, so for
/// flows it initiated the answer is invisible; what stays embryonic is what nobody answered.
/// (A FIN or RST ends a flow after the closing linger anyway.)
pub fn embryonic(k: &FlowKey, s: &FlowStats) -> bool {
    match k.proto {
        IPPROTO_TCP => {
            let pure_syns =
                s.ab.flags.syn as u64 == s.ab.packets && s.ba.flags.syn as u64 == s.ba.packets;
            let lone = if s.ab.packets + s.ba.packets == 1 {
                Some(if s.ab.packets == 1 { &s.ab } else { &s.ba })
            } else {
                None
            };
            pure_syns
                || lone.is_some_and(|d| {
                    let f = &d.flags;
                    f.syn + f.synack + f.fin + f.rst == 0 && bare_segments(d)
                })
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => false,
        // UDP, and any other IP protocol (an nmap -sO probe, a lone GRE or ESP packet).
        _ => s.ab.packets + s.ba.packets == 1,
    }
}

/// Decides whether a flow whose clock now reads `now_ns` is finished.
pub fn expired(t: &FlowTimeouts, k: &FlowKey, s: &FlowStats, now_ns: u64) -> Option<EndReason> {
    let idle_for = now_ns.saturating_sub(s.last_ns);
    if idle_for >= t.embryonic.as_nanos() as u64 && embryonic(k, s) {
        return Some(EndReason::Unanswered);
    }
    if s.end_flags != 0 && idle_for >= t.closed_linger.as_nanos() as u64 {
        return Some(EndReason::Closed);
    }
    if idle_for >= t.idle.as_nanos() as u64 {
        return Some(EndReason::Idle);
    }
    if now_ns.saturating_sub(s.first_ns) >= t.active.as_nanos() as u64 {
        return Some(EndReason::Active);
    }
    None
}

/// Decides whether an outer flow (a tunnel's outer packets) whose clock now reads `now_ns` is
/// finished: the idle and active timeouts of flows (a tunnel has no handshake or close).
pub fn outer_expired(t: &FlowTimeouts, s: &OuterStats, now_ns: u64) -> Option<EndReason> {
    if now_ns.saturating_sub(s.last_ns) >= t.idle.as_nanos() as u64 {
        return Some(EndReason::Idle);
    }
    if now_ns.saturating_sub(s.first_ns) >= t.active.as_nanos() as u64 {
        return Some(EndReason::Active);
    }
    None
}

/// Which running flows get an interim update at a sweep: those with at least
/// [`FlowTimeouts::interim_packets`] packets more than at their last report. Rate-adaptive: a
/// flood is reported at every sweep, a slow flow rarely, a short one never. Bounded: it only
/// remembers flows reported at least once that were still running at the last sweep.
#[derive(Debug, Default)]
pub struct Interim {
    /// Reported flows: packets at the last report, sweep in which the flow was last seen.
    reported: FxHashMap<FlowKey, (u64, u64)>,
    sweep: u64,
}

impl Interim {
    /// Starts a sweep: call [`Self::due`] for every flow that did not expire, then
    /// [`Self::end_sweep`].
    pub fn begin_sweep(&mut self) {
        self.sweep += 1;
    }

    /// Whether the running flow `k` is due an interim update now.
    pub fn due(&mut self, t: &FlowTimeouts, k: &FlowKey, s: &FlowStats) -> bool {
        if t.interim_packets == 0 {
            return false;
        }
        let packets = s.ab.packets + s.ba.packets;
        let sweep = self.sweep;
        match self.reported.get_mut(k) {
            Some((last, seen)) => {
                *seen = sweep;
                if packets.saturating_sub(*last) >= t.interim_packets {
                    *last = packets;
                    return true;
                }
                false
            }
            None if packets >= t.interim_packets => {
                self.reported.insert(*k, (packets, sweep));
                true
            }
            None => false,
        }
    }

    /// Forgets flows not seen in this sweep (ended, or evicted from the kernel map).
    pub fn end_sweep(&mut self) {
        let sweep = self.sweep;
        self.reported.retain(|_, (_, seen)| *seen == sweep);
    }

    /// Flows currently remembered.
    pub fn len(&self) -> usize {
        self.reported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reported.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn one_packet(proto: u8) -> (FlowKey, FlowStats) {
        let k = FlowKey {
            proto,
            ..FlowKey::default()
        };
        let mut s = FlowStats {
            first_ns: 10 * S,
            last_ns: 10 * S,
            initiator_is_a: 1,
            ..FlowStats::default()
        };
        s.ab.packets = 1;
        (k, s)
    }

    #[test]
    fn a_lone_datagram_of_any_protocol_but_icmp_ends_unanswered_after_the_embryonic_timeout() {
        let t = FlowTimeouts::default();
        // UDP, GRE, ESP, SCTP, an nmap -sO probe of protocol 200.
        for proto in [17u8, 47, 50, 132, 200] {
            let (k, s) = one_packet(proto);
            assert_eq!(expired(&t, &k, &s, 11 * S), None, "proto {proto}");
            assert_eq!(
                expired(&t, &k, &s, 12 * S),
                Some(EndReason::Unanswered),
                "proto {proto}"
            );
        }
        // A lone ICMP echo (a ping sent every few seconds) waits for the idle timeout.
        for proto in [1u8, 58] {
            let (k, s) = one_packet(proto);
            assert_eq!(expired(&t, &k, &s, 12 * S), None, "proto {proto}");
            assert_eq!(expired(&t, &k, &s, 70 * S), Some(EndReason::Idle));
        }
        // Two datagrams: not embryonic any more.
        let (k, mut s) = one_packet(47);
        s.ab.packets = 2;
        assert_eq!(expired(&t, &k, &s, 12 * S), None);
    }

    #[test]
    fn a_lone_bare_tcp_segment_ends_unanswered_after_the_embryonic_timeout() {
        let t = FlowTimeouts::default();
        // One bare ACK (52 bytes: IPv4 and TCP headers with timestamps), in either direction.
        let bare = || {
            let (k, mut s) = one_packet(6);
            s.ab.flags.ack = 1;
            s.ab.l3_max = 52;
            (k, s)
        };
        let (k, s) = bare();
        assert_eq!(expired(&t, &k, &s, 11 * S), None);
        assert_eq!(expired(&t, &k, &s, 12 * S), Some(EndReason::Unanswered));
        let (k, mut s) = bare();
        std::mem::swap(&mut s.ab, &mut s.ba);
        assert_eq!(expired(&t, &k, &s, 12 * S), Some(EndReason::Unanswered));
        // An IPv6 segment with every TCP option is still bare; one more byte is data.
        let (k, mut s) = bare();
        s.ab.l3_max = BARE_SEGMENT_MAX_L3;
        assert_eq!(expired(&t, &k, &s, 12 * S), Some(EndReason::Unanswered));
        // What waits for the idle timeout as before: a segment with data (a connection seen
        // from its middle, a keystroke), a PSH, a lone SYN-ACK (backscatter), two segments.
        for change in [
            (|s: &mut FlowStats| s.ab.l3_max = BARE_SEGMENT_MAX_L3 + 1) as fn(&mut FlowStats),
            |s| s.ab.flags.psh = 1,
            |s| s.ab.flags.synack = 1,
            |s| {
                s.ab.packets = 2;
                s.ab.flags.ack = 2;
            },
        ] {
            let (k, mut s) = bare();
            change(&mut s);
            assert_eq!(expired(&t, &k, &s, 12 * S), None, "{s:?}");
            assert_eq!(expired(&t, &k, &s, 70 * S), Some(EndReason::Idle));
        }
        // A lone FIN or RST ends after the closing linger, as before.
        let (k, mut s) = bare();
        s.ab.flags.rst = 1;
        s.end_flags = safelink_common::END_RST;
        assert_eq!(expired(&t, &k, &s, 12 * S), Some(EndReason::Closed));
    }
}
