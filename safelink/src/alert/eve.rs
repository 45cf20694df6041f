//! EVE JSON: an alert as Suricata's `eve.json` writes one, valid under Suricata's own schema
//! (`etc/schema.json`: the top level allows only its listed properties, `timestamp` ends in a
//! numeric offset, the `alert` object allows only its listed properties). SafeLink's own fields
//! go where the schema allows extra data, `alert.metadata`, each as a list of strings; the
//! `flow_id` is derived from the Community ID when the alert has a flow. Used by the API's
//! `GET /alerts/export.json` and by `safelink run --eve-log FILE`.
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Alert, AlertKind, AlertSource, Severity, Timestamp};

/// `signature_id` of the EVE export: base + 1000 × source + kind number (stable; new kinds
/// take new numbers).
pub const SIGNATURE_ID_BASE: u64 = 5_100_000;

/// Stable Suricata-style rule id of a (source, kind).
pub fn signature_id(source: AlertSource, kind: AlertKind) -> u64 {
    let source = match source {
        AlertSource::Dfa => 0,
        AlertSource::Ann => 1,
    };
    SIGNATURE_ID_BASE + 1000 * source + u64::from(kind.number())
}

/// Suricata's severity scale: 1 is the most severe, 3 the least.
pub fn eve_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical | Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
    }
}

/// Suricata's spelling of the protocol (`TCP`, `UDP`, `ICMP`, `IPv6-ICMP`).
fn eve_proto(proto: &str) -> String {
    match proto {
        "icmpv6" => "IPv6-ICMP".to_string(),
        other => other.to_ascii_uppercase(),
    }
}

/// Suricata's timestamp form: microseconds and a numeric UTC offset,
/// `2026-12-02T01:25:20.960941+0000`.
pub fn eve_timestamp(t: Timestamp) -> String {
    let s = t.to_string();
    format!("{}+0000", s.trim_end_matches('Z'))
}

/// A positive 63-bit id of the alert's flow (from its Community ID, so the same flow has the
/// same id in every export and on every sensor). `None` for alerts without a flow (ARP).
pub fn flow_id(a: &Alert) -> Option<u64> {
    let cid = a.community_id.as_deref()?;
    let d = Sha256::digest(cid.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    Some(u64::from_be_bytes(b) & (u64::MAX >> 1))
}

#[derive(Serialize)]
struct EveAlert<'a> {
    action: &'static str,
    gid: u32,
    signature_id: u64,
    rev: u32,
    signature: &'a str,
    category: &'static str,
    severity: u8,
    metadata: Map<String, Value>,
}

#[derive(Serialize)]
struct EveEvent<'a> {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<u64>,
    event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    alert: EveAlert<'a>,
}

/// SafeLink's fields of `a`, as `alert.metadata` wants them: every value a list of strings.
/// `features` is the feature row as `name=value` pairs, in the table's order.
fn metadata(a: &Alert) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Vec<String>| {
        if !v.is_empty() {
            m.insert(k.to_owned(), Value::from(v));
        }
    };
    put("safelink_id", vec![a.id.to_string()]);
    put("source", vec![a.source.as_str().to_owned()]);
    put("kind", vec![a.kind.as_str().to_owned()]);
    put("severity", vec![a.severity.as_str().to_owned()]);
    put("confidence", vec![a.confidence.to_string()]);
    put("count", vec![a.count.to_string()]);
    put("first_seen", vec![a.first_seen.to_string()]);
    put("last_seen", vec![a.last_seen.to_string()]);
    put("src_mac", a.src_mac.iter().cloned().collect());
    if let Some(t) = &a.tunnel {
        put("tunnel_type", vec![t.kind.clone()]);
        put("tunnel_id", vec![t.id.to_string()]);
        put("tunnel_outer_src", vec![t.outer_src.to_string()]);
        put("tunnel_outer_dst", vec![t.outer_dst.to_string()]);
    }
    put(
        "explanation",
        a.explanation.iter().map(Value::to_string).collect(),
    );
    if let Some(r) = &a.resembles {
        put("resembles", vec![r.family.as_str().to_owned()]);
        put("resembles_probability", vec![r.probability.to_string()]);
    }
    put(
        "features",
        a.named_features()
            .iter()
            .map(|f| format!("{}={}", f.name, f.value))
            .collect(),
    );
    m
}

fn event(a: &Alert) -> EveEvent<'_> {
    EveEvent {
        timestamp: eve_timestamp(a.timestamp),
        flow_id: flow_id(a),
        event_type: "alert",
        src_ip: a.src_ip,
        src_port: a.src_port,
        dest_ip: a.dest_ip,
        dest_port: a.dest_port,
        proto: eve_proto(&a.proto),
        community_id: a.community_id.as_deref(),
        alert: EveAlert {
            action: "allowed",
            gid: 1,
            signature_id: signature_id(a.source, a.kind),
            rev: 1,
            signature: &a.description,
            category: a.kind.as_str(),
            severity: eve_severity(a.severity),
            metadata: metadata(a),
        },
    }
}

/// The EVE event of `a`.
pub fn to_eve(a: &Alert) -> Value {
    serde_json::to_value(event(a)).expect("an EVE event serialises")
}

/// Appends the EVE line of `a` (JSON, fields in Suricata's order, and a newline) to `out`.
pub fn write_line(a: &Alert, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, &event(a)).expect("writing JSON to memory");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_a_numeric_offset() {
        let t = Timestamp::parse("2026-12-02T01:25:20.960941Z").unwrap();
        assert_eq!(eve_timestamp(t), "2026-12-02T01:25:20.960941+0000");
    }

    #[test]
    fn tunnel_travels_in_the_metadata() {
        let mut a = crate::alert::build::base_alert(AlertKind::PORT_SCAN, 1, 1, 1);
        assert!(
            !to_eve(&a)["alert"]["metadata"]
                .as_object()
                .unwrap()
                .contains_key("tunnel_type")
        );
        a.tunnel = Some(crate::tunnel::Tunnel {
            kind: "geneve".into(),
            id: 7,
            outer_src: "198.51.100.1".parse().unwrap(),
            outer_dst: "2001:db8::2".parse().unwrap(),
        });
        let m = &to_eve(&a)["alert"]["metadata"];
        assert_eq!(m["tunnel_type"], serde_json::json!(["geneve"]));
        assert_eq!(m["tunnel_id"], serde_json::json!(["7"]));
        assert_eq!(m["tunnel_outer_src"], serde_json::json!(["198.51.100.1"]));
        assert_eq!(m["tunnel_outer_dst"], serde_json::json!(["2001:db8::2"]));
    }
}
