//! Exports with the filters of `GET /alerts`: `GET /alerts/export.csv` (header row, one row
//! per alert) and `GET /alerts/export.json` (EVE-style JSON lines, `event_type: "alert"`,
//! shaped like Suricata's eve.json so existing pipelines ingest it).
use std::net::IpAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiQuery;
use super::params::ListParams;
use super::{ApiError, ApiState, blocking};
use crate::alert::{Alert, AlertKind, AlertSource, AlertView, Severity};
use crate::store::{AlertFilter, Store, StoreError};

/// CSV columns, in order (the alert fields except the feature vector; `explanation` as JSON).
pub const CSV_HEADER: [&str; 18] = [
    "id",
    "timestamp",
    "source",
    "kind",
    "severity",
    "confidence",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "src_mac",
    "first_seen",
    "last_seen",
    "count",
    "description",
    "community_id",
    "explanation",
];

/// `signature_id` of the EVE export: base + 1000 × source + kind number (stable; new kinds
/// take new numbers).
pub const SIGNATURE_ID_BASE: u64 = 5_100_000;

/// Every active alert matching `filter`, newest first.
fn collect(store: &Store, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(filter, 1000, cursor)?;
        out.extend(page.alerts);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The serde string of a contract enum (`dfa`, `high`...).
fn contract_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

/// The CSV body for `alerts`.
pub fn to_csv(alerts: &[Alert]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for a in alerts {
        w.write_record([
            a.id.to_string(),
            a.timestamp.to_string(),
            contract_str(&a.source),
            a.kind.as_str().to_string(),
            contract_str(&a.severity),
            a.confidence.to_string(),
            opt(&a.src_ip),
            opt(&a.src_port),
            opt(&a.dest_ip),
            opt(&a.dest_port),
            a.proto.clone(),
            opt(&a.src_mac),
            a.first_seen.to_string(),
            a.last_seen.to_string(),
            a.count.to_string(),
            a.description.clone(),
            opt(&a.community_id),
            a.explanation
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

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

#[derive(Serialize)]
struct EveAlert<'a> {
    action: &'static str,
    gid: u32,
    signature_id: u64,
    rev: u32,
    signature: &'a str,
    category: &'static str,
    severity: u8,
}

#[derive(Serialize)]
struct EveEvent<'a> {
    timestamp: String,
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
    safelink: AlertView<'a>,
}

/// One EVE JSON line per alert.
pub fn to_eve_lines(alerts: &[Alert]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for a in alerts {
        let event = EveEvent {
            timestamp: a.timestamp.to_string(),
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
            },
            safelink: AlertView::from(a),
        };
        serde_json::to_writer(&mut out, &event)?;
        out.push(b'\n');
    }
    Ok(out)
}

fn attachment(content_type: &'static str, filename: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response()
}

pub async fn csv(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = p.filter_only("export.csv")?;
    let alerts = blocking(&state, move |s| collect(&s, &filter)).await?;
    let body = to_csv(&alerts).map_err(|e| ApiError::internal(format!("CSV export: {e}")))?;
    Ok(attachment(
        "text/csv; charset=utf-8",
        "attachment; filename=\"safelink-alerts.csv\"",
        body,
    ))
}

pub async fn eve(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = p.filter_only("export.json")?;
    let alerts = blocking(&state, move |s| collect(&s, &filter)).await?;
    let body = to_eve_lines(&alerts).map_err(|e| ApiError::internal(format!("EVE export: {e}")))?;
    Ok(attachment(
        "application/x-ndjson",
        "attachment; filename=\"safelink-alerts.json\"",
        body,
    ))
}
