//! Byte layout of the store's keys: ids, order-preserving timestamps, index prefixes and the
//! opaque paging cursor. Every index key ends with the same 16-byte suffix `ts ‖ id`, so one
//! cursor works for every index and "newest first" is a reverse range scan.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::StoreError;
use crate::alert::{Alert, AlertKind};

/// Length of the `ts ‖ id` suffix of every index key.
pub(crate) const SUFFIX_LEN: usize = 16;

/// Parses an RFC 3339 timestamp (e.g. `2024-05-01T12:00:00Z`, offsets and fractions allowed).
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// Formats a time as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Order-preserving big-endian encoding of a time (nanoseconds since the epoch, sign bit
/// flipped so that times before 1970 still sort first). Saturates outside 1677..2262.
pub(crate) fn ts_key(t: OffsetDateTime) -> u64 {
    let nanos = t.unix_timestamp_nanos();
    let clamped = nanos.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    (clamped as u64) ^ (1 << 63)
}

/// The time key of an alert's `timestamp`.
pub(crate) fn alert_ts(alert: &Alert) -> u64 {
    ts_key(alert.timestamp.datetime())
}

pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub(crate) fn suffix(ts: u64, id: u64) -> [u8; SUFFIX_LEN] {
    let mut out = [0u8; SUFFIX_LEN];
    out[..8].copy_from_slice(&ts.to_be_bytes());
    out[8..].copy_from_slice(&id.to_be_bytes());
    out
}

/// Splits the `ts ‖ id` suffix off an index key.
pub(crate) fn split_suffix(key: &[u8]) -> Result<(u64, u64), StoreError> {
    let at = key
        .len()
        .checked_sub(SUFFIX_LEN)
        .ok_or_else(|| StoreError::Corrupt(format!("index key of {} bytes", key.len())))?;
    let ts = u64::from_be_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let id = u64::from_be_bytes(key[at + 8..].try_into().expect("8 bytes"));
    Ok((ts, id))
}

/// Prefix of the kind index: the contract string and a NUL separator.
pub(crate) fn kind_prefix(kind: AlertKind) -> Vec<u8> {
    let mut p = kind.as_str().as_bytes().to_vec();
    p.push(0);
    p
}

/// Prefix of the source-IP index: family byte then the address (IPv4-mapped IPv6 as IPv4).
pub(crate) fn ip_prefix(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
        IpAddr::V6(v6) => [&[6u8][..], &v6.octets()].concat(),
    }
}

/// Prefix followed by the `ts ‖ id` suffix.
pub(crate) fn with_suffix(prefix: &[u8], ts: u64, id: u64) -> Vec<u8> {
    [prefix, &suffix(ts, id)].concat()
}

/// The secondary index keys of one active alert.
pub(crate) struct IndexKeys {
    pub time: Vec<u8>,
    pub kind: Vec<u8>,
    pub src: Option<Vec<u8>>,
}

impl IndexKeys {
    pub fn of(alert: &Alert, ts: u64, id: u64) -> Self {
        IndexKeys {
            time: suffix(ts, id).to_vec(),
            kind: with_suffix(&kind_prefix(alert.kind), ts, id),
            src: alert.src_ip.map(|ip| with_suffix(&ip_prefix(ip), ts, id)),
        }
    }
}

/// Opaque position in a newest-first listing: the next page starts strictly after (older
/// than) this alert. Shown to API clients as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) ts: u64,
    pub(crate) id: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.ts, self.id)
    }
}

impl FromStr for Cursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::BadCursor(s.to_string());
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let ts = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())?;
        let id = u64::from_str_radix(&s[16..], 16).map_err(|_| bad())?;
        if id == 0 {
            return Err(bad());
        }
        Ok(Cursor { ts, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_like_times() {
        let a = ts_key(parse_rfc3339("1969-12-31T23:59:59Z").unwrap());
        let b = ts_key(parse_rfc3339("1970-01-01T00:00:00Z").unwrap());
        let c = ts_key(parse_rfc3339("2024-05-01T12:00:00.5+02:00").unwrap());
        let d = ts_key(parse_rfc3339("2024-05-01T10:00:00.6Z").unwrap());
        assert!(a < b && b < c && c < d);
        assert!(suffix(c, 9) < suffix(d, 1));
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            ts: 0x8000_0000_1234_5678,
            id: 42,
        };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in ["", "zz", "0123", &"g".repeat(32), &"0".repeat(32)] {
            assert!(
                matches!(bad.parse::<Cursor>(), Err(StoreError::BadCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn mapped_ipv6_indexes_as_ipv4() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_prefix(v4), ip_prefix(mapped));
        assert_ne!(ip_prefix(v4), ip_prefix("2001:db8::1".parse().unwrap()));
    }
}
