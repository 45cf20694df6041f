//! Exports with the filters of `GET /alerts`: `GET /alerts/export.csv` (header row, one row
//! per alert) and `GET /alerts/export.json` (EVE JSON lines valid under Suricata's schema, see
//! [`crate::alert::eve`], so existing pipelines ingest them).
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiQuery;
use super::params::ListParams;
use super::{ApiError, ApiState, blocking};
use crate::alert::{Alert, eve};
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
            a.source.as_str().to_owned(),
            a.kind.as_str().to_string(),
            a.severity.as_str().to_owned(),
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

/// One EVE JSON line per alert ([`crate::alert::eve`]).
pub fn to_eve_lines(alerts: &[Alert]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in alerts {
        eve::write_line(a, &mut out);
    }
    out
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
    let body = to_eve_lines(&alerts);
    Ok(attachment(
        "application/x-ndjson",
        "attachment; filename=\"safelink-alerts.json\"",
        body,
    ))
}
