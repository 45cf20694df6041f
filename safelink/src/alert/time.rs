//! Alert time: [`Timestamp`], nanoseconds since the Unix epoch as an integer everywhere in the
//! pipeline, written as RFC 3339 UTC text only at the edges (JSON, exports, logs).
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// A point in time, nanoseconds since 1970-01-01T00:00:00Z, to the microsecond: the precision
/// of the alert contract's RFC 3339 UTC text (`2015-07-14T09:16:23.632810Z`), so the value in
/// memory, the stored text and the store's time index always agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(u64);

/// Why a text is not a [`Timestamp`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("not an RFC 3339 time: {0}")]
    Syntax(String),
    #[error("before 1970 or after 2554")]
    OutOfRange,
}

impl Timestamp {
    /// The time `ns`, truncated to the microsecond.
    pub const fn from_ns(ns: u64) -> Self {
        Self(ns - ns % 1000)
    }

    pub const fn ns(self) -> u64 {
        self.0
    }

    /// Parses RFC 3339 with any offset and fraction (`2024-05-01T12:00:00.5+02:00`).
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| TimestampError::Syntax(e.to_string()))?;
        Self::from_datetime(t)
    }

    pub fn from_datetime(t: OffsetDateTime) -> Result<Self, TimestampError> {
        u64::try_from(t.unix_timestamp_nanos())
            .map(Self::from_ns)
            .map_err(|_| TimestampError::OutOfRange)
    }

    pub fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("every u64 of nanoseconds is a valid time")
    }

    /// The wall clock now.
    pub fn now() -> Self {
        Self::from_ns(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        let secs = ns / 1_000_000_000;
        let frac = ns % 1_000_000_000;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )?;
        write!(f, ".{:06}Z", frac / 1000)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ns: u64) -> String {
        Timestamp::from_ns(ns).to_string()
    }

    #[test]
    fn known_values() {
        assert_eq!(text(0), "1970-01-01T00:00:00.000000Z");
        // capinfos: first packet of the NTP capture.
        assert_eq!(
            text(1_436_865_383_632_810_000),
            "2015-07-14T09:16:23.632810Z"
        );
        assert_eq!(text(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            text(4_102_444_799_999_999_000),
            "2099-12-31T23:59:59.999999Z"
        );
        assert_eq!(text(1_000_001_999), "1970-01-01T00:00:01.000001Z");
        // Never panics, whatever the input.
        let _ = text(u64::MAX);
    }

    #[test]
    fn round_trips_exactly_and_refuses_bad_text() {
        assert_eq!(Timestamp::from_ns(1_999).ns(), 1_000);
        for ns in [0, 1_000, 1_436_865_383_632_810_123] {
            let t = Timestamp::from_ns(ns);
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
        assert_eq!(
            Timestamp::parse("2024-05-01T12:00:00.5+02:00").unwrap(),
            Timestamp::parse("2024-05-01T10:00:00.500Z").unwrap()
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59Z"),
            Err(TimestampError::OutOfRange)
        );
        assert!(matches!(
            Timestamp::parse("yesterday"),
            Err(TimestampError::Syntax(_))
        ));
    }
}
