//! Query parameters of the alert listings and exports, validated into a store filter with
//! an error naming the bad parameter. Empty values count as absent (HTML forms send them).
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as DeError, StrDeserializer};
use time::OffsetDateTime;

use super::ApiError;
use crate::alert::{AlertKind, AlertSource};
use crate::store::{AlertFilter, Cursor, parse_rfc3339};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 1000;

/// Raw query string of `GET /alerts`, `/alerts/archive` and the exports.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Alert kind (`GET /kinds`).
    kind: Option<String>,
    /// `dfa` or `ann`.
    source: Option<String>,
    /// Source IP address.
    src_ip: Option<String>,
    /// RFC 3339 time: alerts at or after it.
    since: Option<String>,
    /// RFC 3339 time: alerts before it.
    until: Option<String>,
    /// Page size, 1 to 1000 (listings only; default 100).
    limit: Option<String>,
    /// `next_cursor` of the previous page (listings only).
    cursor: Option<String>,
}

/// A validated listing request.
#[derive(Debug)]
pub struct Listing {
    pub filter: AlertFilter,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Parses a contract string (`port_scan`, `dfa`...) with serde's own "expected one of" text.
fn contract<'de, T: Deserialize<'de>>(name: &str, value: &'de str) -> Result<T, ApiError> {
    let de: StrDeserializer<'de, DeError> = value.into_deserializer();
    T::deserialize(de).map_err(|e| ApiError::bad_request(format!("bad {name} {value:?}: {e}")))
}

fn time_param(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    parse_rfc3339(value).map_err(|e| {
        ApiError::bad_request(format!(
            "bad {name} {value:?}: expected an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"
        ))
    })
}

impl ListParams {
    /// The filter alone (exports: every matching alert, so no `limit` or `cursor`).
    pub fn filter_only(self, endpoint: &str) -> Result<AlertFilter, ApiError> {
        if present(&self.limit).is_some() || present(&self.cursor).is_some() {
            return Err(ApiError::bad_request(format!(
                "{endpoint} takes no limit or cursor: it exports every matching alert"
            )));
        }
        self.filter()
    }

    /// Filter plus paging (`limit` 1..=1000, default 100; `cursor` from a previous page).
    pub fn listing(self) -> Result<Listing, ApiError> {
        let limit = match present(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(s) => {
                let n: u64 = s.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "bad limit {s:?}: expected an integer from 1 to {MAX_LIMIT}"
                    ))
                })?;
                if n == 0 || n > MAX_LIMIT as u64 {
                    return Err(ApiError::bad_request(format!(
                        "limit {n} is out of range: expected 1 to {MAX_LIMIT}"
                    )));
                }
                n as usize
            }
        };
        let cursor = present(&self.cursor)
            .map(str::parse::<Cursor>)
            .transpose()?;
        Ok(Listing {
            filter: self.filter()?,
            limit,
            cursor,
        })
    }

    fn filter(&self) -> Result<AlertFilter, ApiError> {
        let filter = AlertFilter {
            kind: present(&self.kind)
                .map(|v| contract::<AlertKind>("kind", v))
                .transpose()?,
            source: present(&self.source)
                .map(|v| contract::<AlertSource>("source", v))
                .transpose()?,
            src_ip: present(&self.src_ip)
                .map(|v| {
                    v.parse::<IpAddr>()
                        .map_err(|e| ApiError::bad_request(format!("bad src_ip {v:?}: {e}")))
                })
                .transpose()?,
            since: present(&self.since)
                .map(|v| time_param("since", v))
                .transpose()?,
            until: present(&self.until)
                .map(|v| time_param("until", v))
                .transpose()?,
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since > until
        {
            return Err(ApiError::bad_request("since is after until"));
        }
        Ok(filter)
    }
}
