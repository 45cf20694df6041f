//! The ANN feature vector: the one table ([`FEATURES`]) that says, for each position, the
//! name, unit, meaning and how it is computed from a [`FlowRecord`]. Extraction, the ONNX
//! metadata (`feature_names`), the model card's feature table and the explanations all read
//! this table, so the order is defined once.
//!
//! Values are raw (counts, bytes, seconds, milliseconds, 0/1 indicators), all ≥ 0 and finite.
//! Scaling lives inside the ONNX graph: `log1p`, then `(x − mean) / std` with the training
//! set's statistics (see [`super::export`]). Changing the table (order, units, meaning) must
//! bump [`FEATURE_VECTOR_VERSION`]; models carry it and are refused when it differs.
use safelink_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::record::{Direction, FlowRecord};

/// Version of this feature vector (order, units and meaning of [`FEATURES`]).
pub const FEATURE_VECTOR_VERSION: u32 = 3;

/// Width of the feature vector.
pub const N_FEATURES: usize = 37;

/// Positions of the host-context features (`ctx_*`, from [`crate::context::FlowContext`]): the
/// last five.
pub const CONTEXT_FEATURES: std::ops::Range<usize> = 32..N_FEATURES;

/// The same attack made smaller or slower: every host-context count `c` of `row` becomes
/// `c^u` (rounded, at least 1), `u` uniform in `[1/2, 1)` from `rng`. The base recipe and every
/// learning cycle train on a copy of each attack row shrunk so: recorded attacks are large
/// (hundreds of ports or hosts in seconds), and trained on them alone a model leans on the
/// context and misses a 10-port scan. Shrunk below the square root, the copies unteach the
/// context (a reflected flood is lone datagrams, only many of them).
pub fn shrink_context(row: &mut [f32], rng: &mut super::train::Rng) {
    shrink_context_by(row, 0.5 + 0.5 * rng.uniform());
}

fn shrink_context_by(row: &mut [f32], u: f64) {
    for v in &mut row[CONTEXT_FEATURES] {
        *v = f64::from(*v).powf(u).round().max(1.0) as f32;
    }
}

/// Positions of the load counts among the host-context features: `ctx_dst_peers` (how many
/// initiators reached the responder) and `ctx_pair_flows` (how many flows the pair opened).
/// They rise and fall with how busy a host is; the other three (`ctx_src_peers`,
/// `ctx_src_ports`, `ctx_src_port_peers`) say which hosts and services a host uses, its role.
pub const LOAD_FEATURES: std::ops::Range<usize> = CONTEXT_FEATURES.start + 3..N_FEATURES;

/// The same local traffic busier: every load count `c` of `row` ([`LOAD_FEATURES`]) becomes
/// `c^(1/u)` (rounded, at most [`crate::context::MAX_PEERS`]), `u` uniform in `(1/2, 1]` from
/// `rng`: the mirror of [`shrink_context`]. Learning cycles train on a copy of each of the
/// host's own benign samples (local baseline, operator verdicts) grown so, and the base
/// recipe on a copy of each benign training row (`ann::recipe::grown_load`, capped there at
/// the busiest benign row). The baseline sees
/// the host at one level of activity; without the copies a busier minute pushed its own
/// normal sessions over the alert threshold (a lab client's iperf3 control session at twice
/// the baseline's pair flows scored 0.92, "resembles ssh_brute_force"). A count of 1 stays 1:
/// a lone flow does not become a flood's.
pub fn grow_load(row: &mut [f32], rng: &mut super::train::Rng) {
    grow_load_by(row, 1.0 - 0.5 * rng.uniform());
}

fn grow_load_by(row: &mut [f32], u: f64) {
    for v in &mut row[LOAD_FEATURES] {
        *v = f64::from(*v)
            .max(1.0)
            .powf(1.0 / u)
            .round()
            .min(crate::context::MAX_PEERS as f64) as f32;
    }
}

/// One position of the feature vector.
pub struct Feature {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub extract: fn(&FlowRecord) -> f32,
}

fn mean(sum: u64, n: u64) -> f32 {
    if n == 0 { 0.0 } else { sum as f32 / n as f32 }
}

/// Population standard deviation from a sum and a sum of squares.
fn std(sum: u64, sq_sum: u64, n: u64) -> f32 {
    if n < 2 {
        return 0.0;
    }
    let n = n as f64;
    let m = sum as f64 / n;
    ((sq_sum as f64 / n - m * m).max(0.0)).sqrt() as f32
}

/// Inter-arrival times: a direction with `p` packets has `p − 1` gaps.
fn gaps(d: &Direction) -> u64 {
    d.packets.saturating_sub(1)
}

fn ind(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

const MS_PER_US: f32 = 1e-3;

/// The feature vector, in order.
pub const FEATURES: [Feature; N_FEATURES] = [
    Feature {
        name: "duration_s",
        unit: "s",
        description: "last packet − first packet of the flow (either direction)",
        extract: |f| f.last_ns.saturating_sub(f.first_ns) as f32 * 1e-9,
    },
    Feature {
        name: "proto_tcp",
        unit: "0/1",
        description: "IP protocol is TCP",
        extract: |f| ind(f.proto == IPPROTO_TCP),
    },
    Feature {
        name: "proto_udp",
        unit: "0/1",
        description: "IP protocol is UDP",
        extract: |f| ind(f.proto == IPPROTO_UDP),
    },
    Feature {
        name: "proto_icmp",
        unit: "0/1",
        description: "IP protocol is ICMP or ICMPv6",
        extract: |f| ind(f.proto == IPPROTO_ICMP || f.proto == IPPROTO_ICMPV6),
    },
    Feature {
        name: "src_port_low",
        unit: "0/1",
        description: "initiator port < 1024 (TCP/UDP; 0 otherwise)",
        extract: |f| ind(matches!(f.proto, IPPROTO_TCP | IPPROTO_UDP) && f.src_port < 1024),
    },
    Feature {
        name: "dst_port_low",
        unit: "0/1",
        description: "responder port < 1024 (TCP/UDP; 0 otherwise)",
        extract: |f| ind(matches!(f.proto, IPPROTO_TCP | IPPROTO_UDP) && f.dst_port < 1024),
    },
    Feature {
        name: "fwd_packets",
        unit: "packets",
        description: "packets initiator → responder",
        extract: |f| f.fwd.packets as f32,
    },
    Feature {
        name: "rev_packets",
        unit: "packets",
        description: "packets responder → initiator",
        extract: |f| f.rev.packets as f32,
    },
    Feature {
        name: "fwd_bytes",
        unit: "bytes",
        description: "frame bytes initiator → responder",
        extract: |f| f.fwd.bytes as f32,
    },
    Feature {
        name: "rev_bytes",
        unit: "bytes",
        description: "frame bytes responder → initiator",
        extract: |f| f.rev.bytes as f32,
    },
    Feature {
        name: "fwd_l3_mean",
        unit: "bytes",
        description: "mean IP length, initiator → responder",
        extract: |f| mean(f.fwd.l3_sum, f.fwd.packets),
    },
    Feature {
        name: "rev_l3_mean",
        unit: "bytes",
        description: "mean IP length, responder → initiator",
        extract: |f| mean(f.rev.l3_sum, f.rev.packets),
    },
    Feature {
        name: "fwd_l3_std",
        unit: "bytes",
        description: "standard deviation of the IP length, initiator → responder",
        extract: |f| std(f.fwd.l3_sum, f.fwd.l3_sq_sum, f.fwd.packets),
    },
    Feature {
        name: "rev_l3_std",
        unit: "bytes",
        description: "standard deviation of the IP length, responder → initiator",
        extract: |f| std(f.rev.l3_sum, f.rev.l3_sq_sum, f.rev.packets),
    },
    Feature {
        name: "fwd_l3_max",
        unit: "bytes",
        description: "largest IP length, initiator → responder",
        extract: |f| f32::from(f.fwd.l3_max),
    },
    Feature {
        name: "rev_l3_max",
        unit: "bytes",
        description: "largest IP length, responder → initiator",
        extract: |f| f32::from(f.rev.l3_max),
    },
    Feature {
        name: "fwd_iat_mean_ms",
        unit: "ms",
        description: "mean gap between packets, initiator → responder (0 with < 2 packets)",
        extract: |f| mean(f.fwd.iat_sum_us, gaps(&f.fwd)) * MS_PER_US,
    },
    Feature {
        name: "rev_iat_mean_ms",
        unit: "ms",
        description: "mean gap between packets, responder → initiator (0 with < 2 packets)",
        extract: |f| mean(f.rev.iat_sum_us, gaps(&f.rev)) * MS_PER_US,
    },
    Feature {
        name: "fwd_iat_std_ms",
        unit: "ms",
        description: "standard deviation of the gaps, initiator → responder",
        extract: |f| std(f.fwd.iat_sum_us, f.fwd.iat_sq_sum_us, gaps(&f.fwd)) * MS_PER_US,
    },
    Feature {
        name: "fwd_iat_max_ms",
        unit: "ms",
        description: "largest gap, initiator → responder",
        extract: |f| f.fwd.iat_max_us as f32 * MS_PER_US,
    },
    Feature {
        name: "fwd_init_win",
        unit: "bytes",
        description: "TCP window of the initiator's first packet (unscaled; 0 if not TCP)",
        extract: |f| f32::from(f.fwd.init_win),
    },
    Feature {
        name: "rev_init_win",
        unit: "bytes",
        description: "TCP window of the responder's first packet (unscaled; 0 if none)",
        extract: |f| f32::from(f.rev.init_win),
    },
    Feature {
        name: "fwd_syn",
        unit: "packets",
        description: "SYN (without ACK) packets, initiator → responder",
        extract: |f| f.fwd.flags.syn as f32,
    },
    Feature {
        name: "fwd_fin",
        unit: "packets",
        description: "FIN packets, initiator → responder",
        extract: |f| f.fwd.flags.fin as f32,
    },
    Feature {
        name: "fwd_rst",
        unit: "packets",
        description: "RST packets, initiator → responder",
        extract: |f| f.fwd.flags.rst as f32,
    },
    Feature {
        name: "fwd_psh",
        unit: "packets",
        description: "PSH packets, initiator → responder",
        extract: |f| f.fwd.flags.psh as f32,
    },
    Feature {
        name: "fwd_urg",
        unit: "packets",
        description: "URG packets, initiator → responder",
        extract: |f| f.fwd.flags.urg as f32,
    },
    Feature {
        name: "fwd_ece_cwr",
        unit: "flags",
        description: "ECE plus CWR flag count, initiator → responder",
        extract: |f| f.fwd.flags.ece as f32 + f.fwd.flags.cwr as f32,
    },
    Feature {
        name: "rev_synack",
        unit: "packets",
        description: "SYN+ACK packets, responder → initiator",
        extract: |f| f.rev.flags.synack as f32,
    },
    Feature {
        name: "rev_rst",
        unit: "packets",
        description: "RST packets, responder → initiator",
        extract: |f| f.rev.flags.rst as f32,
    },
    Feature {
        name: "rev_psh",
        unit: "packets",
        description: "PSH packets, responder → initiator",
        extract: |f| f.rev.flags.psh as f32,
    },
    Feature {
        name: "icmp_echo_request",
        unit: "0/1",
        description: "first ICMP message is an echo request (ICMP type 8 or ICMPv6 128)",
        extract: |f| {
            ind((f.proto == IPPROTO_ICMP && f.icmp_type == 8)
                || (f.proto == IPPROTO_ICMPV6 && f.icmp_type == 128))
        },
    },
    Feature {
        name: "ctx_src_peers",
        unit: "hosts",
        description: "distinct responders the initiator opened flows to within 60 s of this flow (host context)",
        extract: |f| f.ctx.src_peers as f32,
    },
    Feature {
        name: "ctx_src_ports",
        unit: "ports",
        description: "distinct ports of this responder the initiator opened flows to within 60 s (host context)",
        extract: |f| f.ctx.src_ports as f32,
    },
    Feature {
        name: "ctx_src_port_peers",
        unit: "hosts",
        description: "distinct responders the initiator opened flows to on this protocol and responder port within 60 s (host context)",
        extract: |f| f.ctx.src_port_peers as f32,
    },
    Feature {
        name: "ctx_dst_peers",
        unit: "hosts",
        description: "distinct initiators that opened flows to the responder within 60 s (host context)",
        extract: |f| f.ctx.dst_peers as f32,
    },
    Feature {
        name: "ctx_pair_flows",
        unit: "flows",
        description: "flows the initiator opened to this responder within 60 s (host context)",
        extract: |f| f.ctx.pair_flows as f32,
    },
];

/// Writes the feature vector of `f` into `out` (exactly [`N_FEATURES`] values).
#[inline]
pub fn extract_into(f: &FlowRecord, out: &mut [f32]) {
    let out: &mut [f32; N_FEATURES] = out.try_into().expect("feature slot of N_FEATURES");
    for (o, feat) in out.iter_mut().zip(FEATURES.iter()) {
        *o = (feat.extract)(f);
    }
}

/// The feature vector of `f`.
pub fn extract(f: &FlowRecord) -> [f32; N_FEATURES] {
    let mut v = [0f32; N_FEATURES];
    extract_into(f, &mut v);
    v
}

/// Comma-separated names, in order (the `feature_names` metadata of a model).
pub fn names_csv() -> String {
    FEATURES
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The feature table as Markdown (rendered into `models/README.md`).
pub fn markdown_table() -> String {
    let mut s = String::from("| # | name | unit | description |\n|---|---|---|---|\n");
    for (i, f) in FEATURES.iter().enumerate() {
        s.push_str(&format!(
            "| {i} | `{}` | {} | {} |\n",
            f.name, f.unit, f.description
        ));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn shrink_context_keeps_the_flow_and_shrinks_its_context() {
        let mut row: Vec<f32> = (0..super::N_FEATURES).map(|i| i as f32 + 2.0).collect();
        row[super::CONTEXT_FEATURES][..].copy_from_slice(&[1024.0, 100.0, 400.0, 1.0, 0.0]);
        let before = row.clone();
        super::shrink_context_by(&mut row, 0.5);
        assert_eq!(&row[super::CONTEXT_FEATURES], &[32.0, 10.0, 20.0, 1.0, 1.0]);
        assert_eq!(row[..32], before[..32]);
        super::shrink_context_by(&mut row, 1.0);
        assert_eq!(&row[super::CONTEXT_FEATURES], &[32.0, 10.0, 20.0, 1.0, 1.0]);
    }

    #[test]
    fn grow_load_grows_only_the_load_counts_and_keeps_lone_flows_lone() {
        let mut row: Vec<f32> = (0..super::N_FEATURES).map(|i| i as f32 + 2.0).collect();
        row[super::CONTEXT_FEATURES][..].copy_from_slice(&[5.0, 3.0, 4.0, 1.0, 10.0]);
        let before = row.clone();
        super::grow_load_by(&mut row, 0.5);
        assert_eq!(&row[super::CONTEXT_FEATURES], &[5.0, 3.0, 4.0, 1.0, 100.0]);
        assert_eq!(row[..35], before[..35]);
        super::grow_load_by(&mut row, 0.5);
        assert_eq!(&row[super::CONTEXT_FEATURES], &[5.0, 3.0, 4.0, 1.0, 1024.0]);
        super::grow_load_by(&mut row, 1.0);
        assert_eq!(&row[super::CONTEXT_FEATURES], &[5.0, 3.0, 4.0, 1.0, 1024.0]);
        let names: Vec<&str> = super::FEATURES[super::LOAD_FEATURES]
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["ctx_dst_peers", "ctx_pair_flows"]);
    }

    #[test]
    fn the_context_features_are_the_ctx_ones() {
        for (i, f) in super::FEATURES.iter().enumerate() {
            assert_eq!(
                super::CONTEXT_FEATURES.contains(&i),
                f.name.starts_with("ctx_"),
                "{}",
                f.name
            );
        }
    }

    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::expiry::EndReason;
    use crate::record::Flags;

    /// A TCP flow 10.0.0.1:40000 → 10.0.0.2:22: 4 packets out, 3 back.
    pub(crate) fn sample_flow() -> FlowRecord {
        FlowRecord {
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            src_port: 40000,
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst_port: 22,
            proto: 6,
            vlan: 0,
            first_ns: 1_000_000_000,
            last_ns: 3_500_000_000,
            icmp_type: 0,
            icmp_code: 0,
            end_reason: EndReason::Closed,
            fwd: Direction {
                packets: 4,
                bytes: 4 * 74,
                l3_min: 40,
                l3_max: 100,
                l3_sum: 40 + 60 + 60 + 100,
                l3_sq_sum: 1600 + 3600 + 3600 + 10000,
                iat_min_us: 1000,
                iat_max_us: 3000,
                iat_sum_us: 6000,
                iat_sq_sum_us: 1_000_000 + 4_000_000 + 9_000_000,
                init_ttl: 64,
                init_win: 64240,
                flags: Flags {
                    syn: 1,
                    fin: 1,
                    psh: 2,
                    ack: 3,
                    ..Flags::default()
                },
            },
            rev: Direction {
                packets: 3,
                bytes: 200,
                l3_min: 40,
                l3_max: 60,
                l3_sum: 150,
                l3_sq_sum: 1600 + 2500 + 3600,
                iat_min_us: 10,
                iat_max_us: 20,
                iat_sum_us: 30,
                iat_sq_sum_us: 500,
                init_ttl: 64,
                init_win: 65160,
                flags: Flags {
                    synack: 1,
                    rst: 1,
                    ack: 3,
                    ..Flags::default()
                },
            },
            tunnel: None,
            ctx: crate::context::FlowContext::default(),
        }
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_FEATURES, "feature names are unique");
        assert_eq!(names_csv().split(',').count(), N_FEATURES);
        assert_eq!(markdown_table().lines().count(), N_FEATURES + 2);
    }

    #[test]
    fn exact_values_of_a_known_flow() {
        let v = extract(&sample_flow());
        let get = |n: &str| v[FEATURES.iter().position(|f| f.name == n).unwrap()];
        let close = |n: &str, want: f32| {
            let got = get(n);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{n}: {got} != {want}"
            );
        };
        close("duration_s", 2.5);
        assert_eq!(get("proto_tcp"), 1.0);
        assert_eq!(get("proto_udp"), 0.0);
        assert_eq!(get("src_port_low"), 0.0);
        assert_eq!(get("dst_port_low"), 1.0);
        assert_eq!(get("fwd_packets"), 4.0);
        assert_eq!(get("rev_bytes"), 200.0);
        close("fwd_l3_mean", 65.0);
        // population std of 40, 60, 60, 100 = sqrt(18800 / 4 − 65²) = sqrt(475)
        close("fwd_l3_std", 475f32.sqrt());
        assert_eq!(get("fwd_l3_max"), 100.0);
        // 3 gaps of 1, 2, 3 ms
        close("fwd_iat_mean_ms", 2.0);
        close("fwd_iat_std_ms", (2.0f32 / 3.0).sqrt());
        close("fwd_iat_max_ms", 3.0);
        close("rev_iat_mean_ms", 0.015);
        assert_eq!(get("fwd_init_win"), 64240.0);
        assert_eq!(get("fwd_syn"), 1.0);
        assert_eq!(get("fwd_psh"), 2.0);
        assert_eq!(get("rev_synack"), 1.0);
        assert_eq!(get("rev_rst"), 1.0);
        assert_eq!(get("icmp_echo_request"), 0.0);
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0));
    }

    #[test]
    fn empty_directions_give_zeros_not_nan() {
        let mut f = sample_flow();
        f.rev = Direction::default();
        f.fwd.packets = 1;
        f.fwd.iat_sum_us = 0;
        f.fwd.iat_sq_sum_us = 0;
        f.last_ns = f.first_ns;
        let v = extract(&f);
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{v:?}");
    }
}
