//! The feature vector an alert carries (`Alert::features`): the triggering flow's numbers as
//! `f32`, in the fixed order of [`FEATURE_NAMES`]. No payload exists anywhere, so none is here.
//!
//! A flow-start record (one packet) fills the same layout as a one-packet flow, so the learner
//! sees one shape whatever triggered the alert. ARP alerts carry no vector.
use crate::record::{Direction, FlowRecord, FlowStartRecord};

/// Per-direction part of the layout (prefixed `fwd_` / `rev_` in [`FEATURE_NAMES`]).
#[cfg(test)]
const DIR: [&str; 21] = [
    "packets",
    "bytes",
    "l3_min",
    "l3_max",
    "l3_mean",
    "l3_std",
    "iat_min_us",
    "iat_max_us",
    "iat_mean_us",
    "iat_std_us",
    "init_ttl",
    "init_win",
    "syn",
    "synack",
    "fin",
    "rst",
    "psh",
    "urg",
    "ack",
    "ece",
    "cwr",
];

/// Names of the vector's entries, in order (48 entries).
pub const FEATURE_NAMES: [&str; 48] = [
    "proto",
    "src_port",
    "dst_port",
    "duration_s",
    "fwd_packets",
    "fwd_bytes",
    "fwd_l3_min",
    "fwd_l3_max",
    "fwd_l3_mean",
    "fwd_l3_std",
    "fwd_iat_min_us",
    "fwd_iat_max_us",
    "fwd_iat_mean_us",
    "fwd_iat_std_us",
    "fwd_init_ttl",
    "fwd_init_win",
    "fwd_syn",
    "fwd_synack",
    "fwd_fin",
    "fwd_rst",
    "fwd_psh",
    "fwd_urg",
    "fwd_ack",
    "fwd_ece",
    "fwd_cwr",
    "rev_packets",
    "rev_bytes",
    "rev_l3_min",
    "rev_l3_max",
    "rev_l3_mean",
    "rev_l3_std",
    "rev_iat_min_us",
    "rev_iat_max_us",
    "rev_iat_mean_us",
    "rev_iat_std_us",
    "rev_init_ttl",
    "rev_init_win",
    "rev_syn",
    "rev_synack",
    "rev_fin",
    "rev_rst",
    "rev_psh",
    "rev_urg",
    "rev_ack",
    "rev_ece",
    "rev_cwr",
    "icmp_type",
    "icmp_code",
];

fn mean_std(sum: u64, sq_sum: u64, n: u64) -> (f32, f32) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let n = n as f64;
    let mean = sum as f64 / n;
    let var = (sq_sum as f64 / n - mean * mean).max(0.0);
    (mean as f32, var.sqrt() as f32)
}

fn push_dir(v: &mut Vec<f32>, d: &Direction) {
    let (l3_mean, l3_std) = mean_std(d.l3_sum, d.l3_sq_sum, d.packets);
    // IATs are between consecutive packets: packets - 1 of them.
    let (iat_mean, iat_std) = mean_std(d.iat_sum_us, d.iat_sq_sum_us, d.packets.saturating_sub(1));
    let f = &d.flags;
    v.extend_from_slice(&[
        d.packets as f32,
        d.bytes as f32,
        f32::from(d.l3_min),
        f32::from(d.l3_max),
        l3_mean,
        l3_std,
        d.iat_min_us as f32,
        d.iat_max_us as f32,
        iat_mean,
        iat_std,
        f32::from(d.init_ttl),
        f32::from(d.init_win),
        f.syn as f32,
        f.synack as f32,
        f.fin as f32,
        f.rst as f32,
        f.psh as f32,
        f.urg as f32,
        f.ack as f32,
        f.ece as f32,
        f.cwr as f32,
    ]);
}

/// The vector of a finished flow.
pub fn of_flow(f: &FlowRecord) -> Vec<f32> {
    let mut v = Vec::with_capacity(FEATURE_NAMES.len());
    v.extend_from_slice(&[
        f32::from(f.proto),
        f32::from(f.src_port),
        f32::from(f.dst_port),
        (f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9) as f32,
    ]);
    push_dir(&mut v, &f.fwd);
    push_dir(&mut v, &f.rev);
    v.push(f32::from(f.icmp_type));
    v.push(f32::from(f.icmp_code));
    v
}

/// The vector of a flow's first packet (a one-packet flow).
pub fn of_start(s: &FlowStartRecord) -> Vec<f32> {
    use safelink_common::{TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};
    let t = s.tcp_flags;
    let bit = |m: u8| u32::from(s.proto == 6 && t & m != 0);
    let syn = s.proto == 6 && t & TCP_SYN != 0 && t & TCP_ACK == 0;
    let synack = s.proto == 6 && t & TCP_SYN != 0 && t & TCP_ACK != 0;
    let fwd = Direction {
        packets: 1,
        bytes: u64::from(s.l3_len),
        l3_min: s.l3_len,
        l3_max: s.l3_len,
        l3_sum: u64::from(s.l3_len),
        l3_sq_sum: u64::from(s.l3_len) * u64::from(s.l3_len),
        init_ttl: s.ttl,
        flags: crate::record::Flags {
            syn: u32::from(syn),
            synack: u32::from(synack),
            fin: bit(TCP_FIN),
            rst: bit(TCP_RST),
            psh: bit(TCP_PSH),
            urg: bit(TCP_URG),
            ack: bit(TCP_ACK),
            ece: bit(TCP_ECE),
            cwr: bit(TCP_CWR),
        },
        ..Direction::default()
    };
    let mut v = Vec::with_capacity(FEATURE_NAMES.len());
    v.extend_from_slice(&[
        f32::from(s.proto),
        f32::from(s.src_port),
        f32::from(s.dst_port),
        0.0,
    ]);
    push_dir(&mut v, &fwd);
    push_dir(&mut v, &Direction::default());
    v.push(f32::from(s.icmp_type));
    v.push(f32::from(s.icmp_code));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_layout() {
        assert_eq!(DIR.len() * 2 + 6, FEATURE_NAMES.len());
        for (i, d) in DIR.iter().enumerate() {
            assert_eq!(FEATURE_NAMES[4 + i], format!("fwd_{d}"));
            assert_eq!(FEATURE_NAMES[4 + DIR.len() + i], format!("rev_{d}"));
        }
    }
}
