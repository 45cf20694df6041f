//! Exports with the filters of `GET /alerts`: `GET /alerts/export.csv` (header row, one row
//! per alert) and `GET /alerts/export.json` (EVE JSON lines valid under Suricata's schema, see
//! [`crate::alert::eve`], so existing pipelines ingest them).
//!
//! Both are streamed: the body is written one store page ([`EXPORT_PAGE`] alerts) at a time,
//! the next page read only when the client has taken the previous one (chunked transfer
//! encoding), so an export of any size holds at most one page in memory and a slow client
//! slows the reads instead of filling memory.
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream;

use super::error::{ApiQuery, ErrorBody};
use super::params::ListParams;
use super::{ApiError, ApiState, blocking};
use crate::alert::{Alert, eve};
use crate::store::{AlertFilter, Cursor, Store};

/// Alerts read from the store per step of an export (the most one export holds at once).
pub const EXPORT_PAGE: usize = 500;

/// CSV columns, in order (the alert fields except the feature vector; `explanation` as JSON,
/// `resembles` as its family and probability).
pub const CSV_HEADER: [&str; 20] = [
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
    "resembles",
    "resembles_probability",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

/// CSV rows for `alerts`, after the header row when `header`.
fn csv_rows(alerts: &[Alert], header: bool) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_HEADER)?;
    }
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
            opt(&a.resembles.map(|r| r.family)),
            opt(&a.resembles.map(|r| r.probability)),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// The CSV body for `alerts` (header row first).
pub fn to_csv(alerts: &[Alert]) -> Result<Vec<u8>, csv::Error> {
    csv_rows(alerts, true)
}

/// One EVE JSON line per alert ([`crate::alert::eve`]).
pub fn to_eve_lines(alerts: &[Alert]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in alerts {
        eve::write_line(a, &mut out);
    }
    out
}

/// The two export formats.
#[derive(Clone, Copy, Debug)]
enum Format {
    Csv,
    Eve,
}

impl Format {
    /// One page of the body; `first` adds the CSV header.
    fn encode(self, alerts: &[Alert], first: bool) -> std::io::Result<Bytes> {
        match self {
            Format::Csv => csv_rows(alerts, first)
                .map(Bytes::from)
                .map_err(std::io::Error::other),
            Format::Eve => Ok(Bytes::from(to_eve_lines(alerts))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Eve => "application/x-ndjson",
        }
    }

    fn disposition(self) -> &'static str {
        match self {
            Format::Csv => "attachment; filename=\"safelink-alerts.csv\"",
            Format::Eve => "attachment; filename=\"safelink-alerts.json\"",
        }
    }
}

/// One page after `cursor` (none: the first), encoded, and the cursor of the next page.
fn page(
    store: &Store,
    filter: &AlertFilter,
    format: Format,
    cursor: Option<Cursor>,
) -> std::io::Result<(Bytes, Option<Cursor>)> {
    let p = store
        .query(filter, EXPORT_PAGE, cursor)
        .map_err(std::io::Error::other)?;
    Ok((format.encode(&p.alerts, cursor.is_none())?, p.next_cursor))
}

/// The body after the first page: each next page is read (on the blocking pool) only when
/// the previous one has been taken. A store error mid-way ends the body early (the client
/// sees a truncated chunked body, never a complete-looking one) and is logged.
fn rest(
    store: Store,
    filter: AlertFilter,
    format: Format,
    next: Option<Cursor>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    stream::unfold(next, move |cursor| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let cursor = cursor?;
            let res =
                tokio::task::spawn_blocking(move || page(&store, &filter, format, Some(cursor)))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match res {
                Ok((bytes, next)) => Some((Ok(bytes), next)),
                Err(e) => {
                    tracing::error!(error = %e, "export stopped part-way");
                    Some((Err(e), None))
                }
            }
        }
    })
}

/// The streamed export: the first page is read before the answer starts, so a store error
/// there is still a JSON 500.
async fn export(
    state: &ApiState,
    filter: AlertFilter,
    format: Format,
) -> Result<Response, ApiError> {
    let f = filter.clone();
    let (first, next) = blocking(state, move |s| {
        let p = s.query(&f, EXPORT_PAGE, None)?;
        Ok((p.alerts, p.next_cursor))
    })
    .await?;
    let first = format
        .encode(&first, true)
        .map_err(|e| ApiError::internal(format!("export: {e}")))?;
    let body = stream::once(async move { Ok(first) }).chain(rest(
        state.store.clone(),
        filter,
        format,
        next,
    ));
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CONTENT_DISPOSITION, format.disposition()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/alerts/export.csv",
    tag = "alerts",
    summary = "Every matching active alert as CSV (streamed)",
    params(ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "header row and one row per alert", body = String, content_type = "text/csv"),
        (status = 400, description = "a bad parameter, named", body = ErrorBody)
    )
)]
pub async fn csv(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = p.filter_only("export.csv")?;
    export(&state, filter, Format::Csv).await
}

#[utoipa::path(
    get,
    path = "/alerts/export.json",
    tag = "alerts",
    summary = "Every matching active alert as EVE JSON lines (streamed)",
    params(ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "one EVE JSON line per alert", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "a bad parameter, named", body = ErrorBody)
    )
)]
pub async fn eve(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = p.filter_only("export.json")?;
    export(&state, filter, Format::Eve).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertKind, AlertSource, Timestamp};

    fn store_with(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for i in 0..n {
            let mut a = crate::alert::build::base_alert(
                AlertKind::PORT_SCAN,
                1_700_000_000_000_000_000 + i * 1_000_000_000,
                1_700_000_000_000_000_000,
                1_700_000_000_000_000_000,
            );
            a.source = AlertSource::Dfa;
            a.timestamp = Timestamp::from_ns(1_700_000_000_000_000_000 + i * 1_000_000_000);
            store.insert(a).unwrap();
        }
        (dir, store)
    }

    /// The body comes one page at a time: every chunk after the first holds at most
    /// EXPORT_PAGE alerts, and all of them together are every alert once.
    #[tokio::test]
    async fn the_body_is_produced_one_page_at_a_time() {
        let (_dir, store) = store_with(1_234);
        let filter = AlertFilter::default();
        let (first, next) = page(&store, &filter, Format::Eve, None).unwrap();
        let chunks: Vec<Bytes> = rest(store, filter, Format::Eve, next)
            .map(|c| c.unwrap())
            .collect()
            .await;
        let lines = |b: &Bytes| b.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(lines(&first), EXPORT_PAGE);
        assert_eq!(
            chunks.iter().map(lines).collect::<Vec<_>>(),
            [EXPORT_PAGE, 1_234 - 2 * EXPORT_PAGE]
        );
    }
}
