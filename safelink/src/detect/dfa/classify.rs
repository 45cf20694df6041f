//! Shared judgements about single records: which addresses can be victims, whether a flow was a
//! failed probe, whether a first packet's TCP flags are a stealth-scan probe.

use safelink_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};

use crate::record::FlowRecord;

/// The protocol numbers, from `safelink_common` (the one place they are written).
pub use safelink_common::{
    IPPROTO_ICMP as ICMP, IPPROTO_ICMPV6 as ICMPV6, IPPROTO_TCP as TCP, IPPROTO_UDP as UDP,
};

/// Scans, sweeps and floods are only counted towards unicast host addresses.
pub use crate::record::is_unicast;

/// Both directions carried application data (PSH, or a packet longer than any bare header
/// with options: IPv6 40 + TCP 60 = 100 bytes).
pub fn tcp_has_data(f: &FlowRecord) -> bool {
    f.fwd.flags.psh > 0 || f.rev.flags.psh > 0 || f.fwd.l3_max > 100 || f.rev.l3_max > 100
}

/// The handshake completed: the responder answered SYN-ACK and the initiator acknowledged.
pub fn tcp_established(f: &FlowRecord) -> bool {
    f.rev.flags.synack > 0 && f.fwd.flags.ack > 0
}

/// A flow that probed and got nothing useful back: TCP without any data (unanswered SYN,
/// RST/refused, connect-then-reset, FIN/NULL/XMAS/ACK probes), UDP, ICMP or any other IP
/// protocol without any reply.
pub fn failed_probe(f: &FlowRecord) -> bool {
    match f.proto {
        TCP => !tcp_has_data(f),
        _ => f.rev.packets == 0,
    }
}

/// TCP flags of a first packet that no TCP stack sends to open or continue a connection:
/// NULL, FIN without ACK (FIN and XMAS scans), SYN+FIN, SYN+RST, PSH/URG without ACK.
pub fn stealth_flags(flags: u8) -> bool {
    let f = flags & 0x3f;
    if f & TCP_ACK != 0 {
        return false;
    }
    f == 0
        || f & TCP_FIN != 0
        || (f & TCP_SYN != 0 && f & TCP_RST != 0)
        || (f & (TCP_SYN | TCP_RST) == 0 && f & (TCP_PSH | TCP_URG) != 0)
}

/// Name of a stealth probe's flags for descriptions.
pub fn stealth_name(flags: u8) -> &'static str {
    let f = flags & 0x3f;
    if f == 0 {
        "NULL"
    } else if f & (TCP_FIN | TCP_PSH | TCP_URG) == (TCP_FIN | TCP_PSH | TCP_URG) {
        "XMAS"
    } else if f & TCP_SYN != 0 {
        "SYN+FIN/RST"
    } else if f & TCP_FIN != 0 {
        "FIN"
    } else {
        "odd-flags"
    }
}

/// A flow whose initiator never sent SYN or ACK: it started with a stealth probe, which the
/// port-scan automaton already counted from the flow-start record.
pub fn started_stealthy(f: &FlowRecord) -> bool {
    f.proto == TCP
        && f.fwd.flags.ack == 0
        && (f.fwd.flags.fin > 0 || (f.fwd.flags.syn == 0 && f.fwd.flags.rst == 0))
}

/// A TCP flow whose initiator only answered: it sent SYN-ACKs or resets (with or without ACK)
/// and nothing that opens or probes a connection. Such flows are backscatter of floods with
/// spoofed sources, SYN-ACK reflection, or the tail of a connection the sensor did not see
/// start — never a probe.
pub fn tcp_response_only(f: &FlowRecord) -> bool {
    let x = &f.fwd.flags;
    f.proto == TCP
        && x.syn == 0
        && x.fin == 0
        && x.psh == 0
        && x.urg == 0
        && (x.synack > 0 || x.rst > 0)
}

/// Seconds between a flow's first and last packet.
pub fn duration_s(f: &FlowRecord) -> f64 {
    f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9
}

/// An ICMP error message (v4: unreachable, source quench, redirect, time exceeded, parameter
/// problem; v6: every type below 128): a host's answer to other traffic, never a request.
pub fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    (proto == ICMP && matches!(icmp_type, 3 | 4 | 5 | 11 | 12))
        || (proto == ICMPV6 && icmp_type < 128)
}

/// ICMP echo request (v4 type 8, v6 type 128).
pub fn is_echo_request(proto: u8, icmp_type: u8) -> bool {
    (proto == ICMP && icmp_type == 8) || (proto == ICMPV6 && icmp_type == 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stealth_flag_table() {
        let cases: [(u8, bool); 12] = [
            (0x00, true),  // NULL
            (0x01, true),  // FIN
            (0x29, true),  // XMAS FIN+PSH+URG
            (0x03, true),  // SYN+FIN
            (0x06, true),  // SYN+RST
            (0x08, true),  // PSH alone
            (0x02, false), // SYN
            (0xc2, false), // SYN+ECE+CWR (ECN setup)
            (0x12, false), // SYN+ACK
            (0x10, false), // ACK
            (0x11, false), // FIN+ACK (Maimon / mid-stream close)
            (0x04, false), // RST
        ];
        for (f, want) in cases {
            assert_eq!(stealth_flags(f), want, "flags {f:#04x}");
        }
        assert_eq!(stealth_name(0x29), "XMAS");
        assert_eq!(stealth_name(0x00), "NULL");
        assert_eq!(stealth_name(0x01), "FIN");
    }

    #[test]
    fn responses_are_not_probes() {
        use crate::detect::dfa::testutil::*;
        let mut f = flow("192.0.2.1", 443, "192.0.2.2", 40000, TCP, T0);
        f.fwd.flags.rst = 1;
        f.fwd.flags.ack = 1;
        assert!(tcp_response_only(&f));
        f.fwd.flags = crate::record::Flags {
            synack: 1,
            ack: 1,
            ..Default::default()
        };
        assert!(tcp_response_only(&f));
        f.fwd.flags = crate::record::Flags {
            ack: 1,
            ..Default::default()
        };
        assert!(!tcp_response_only(&f), "a bare ACK is an ACK-scan probe");
        assert!(!tcp_response_only(&failed_syn(
            "192.0.2.1",
            "192.0.2.2",
            80,
            T0
        )));
    }

    #[test]
    fn unicast() {
        for (a, want) in [
            ("10.0.0.1", true),
            ("255.255.255.255", false),
            ("224.0.0.251", false),
            ("239.255.255.250", false),
            ("0.0.0.0", false),
            ("ff02::1", false),
            ("2001:db8::1", true),
        ] {
            assert_eq!(is_unicast(&a.parse().unwrap()), want, "{a}");
        }
    }
}
