//! Feature rows: one finished flow as the ANN sees it (its feature vector, [`super::features`])
//! plus the few non-identifying facts that describe a training set (IP version, protocol,
//! ports); never an address, never payload. The CSV form is what `safelink analyze --features`
//! prints and, with a leading `capture` column, what `models/benign/flows.csv.gz` holds.
//!
//! Numbers are written with Rust's shortest round-trip formatting, so a row read back gives
//! the very same `f32` values the sensor computed, and the file is the same bytes on every run.
use std::fmt::Write as _;

use thiserror::Error;

use super::features::{FEATURES, N_FEATURES, extract};
use crate::record::FlowRecord;

/// Columns before the feature vector.
const LEAD: [&str; 4] = ["ip_version", "proto", "src_port", "dst_port"];

/// One finished flow's feature row.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureRow {
    /// 4 or 6.
    pub ip_version: u8,
    pub proto: u8,
    /// Initiator port (0 for ICMP).
    pub src_port: u16,
    /// Responder port (0 for ICMP).
    pub dst_port: u16,
    pub features: [f32; N_FEATURES],
}

/// A CSV line that is not a feature row.
#[derive(Debug, Error, PartialEq)]
pub enum RowError {
    #[error("expected {expected} columns, found {found}")]
    Columns { expected: usize, found: usize },
    #[error("column {column}: {value:?} is not a valid value")]
    Value { column: String, value: String },
}

impl FeatureRow {
    /// The row of a finished flow (the same vector the detector scores).
    pub fn of(f: &FlowRecord) -> Self {
        FeatureRow {
            ip_version: if f.src_ip.is_ipv6() { 6 } else { 4 },
            proto: f.proto,
            src_port: f.src_port,
            dst_port: f.dst_port,
            features: extract(f),
        }
    }

    /// The CSV header: the lead columns, then the feature names in order.
    pub fn csv_header() -> String {
        LEAD.iter()
            .copied()
            .chain(FEATURES.iter().map(|f| f.name))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The row as one CSV line (no newline).
    pub fn to_csv(&self) -> String {
        let mut s = format!(
            "{},{},{},{}",
            self.ip_version, self.proto, self.src_port, self.dst_port
        );
        for v in &self.features {
            // Writing to a String cannot fail.
            let _ = write!(s, ",{v}");
        }
        s
    }

    /// Parses the columns of [`Self::to_csv`] (already split on commas).
    pub fn from_fields(fields: &[&str]) -> Result<Self, RowError> {
        let expected = LEAD.len() + N_FEATURES;
        if fields.len() != expected {
            return Err(RowError::Columns {
                expected,
                found: fields.len(),
            });
        }
        fn num<T: std::str::FromStr>(column: &str, value: &str) -> Result<T, RowError> {
            value.parse().map_err(|_| RowError::Value {
                column: column.to_owned(),
                value: value.to_owned(),
            })
        }
        let ip_version: u8 = num(LEAD[0], fields[0])?;
        if ip_version != 4 && ip_version != 6 {
            return Err(RowError::Value {
                column: LEAD[0].to_owned(),
                value: fields[0].to_owned(),
            });
        }
        let mut features = [0f32; N_FEATURES];
        for ((slot, value), feat) in features
            .iter_mut()
            .zip(&fields[LEAD.len()..])
            .zip(FEATURES.iter())
        {
            let v: f32 = num(feat.name, value)?;
            if !v.is_finite() || v < 0.0 {
                return Err(RowError::Value {
                    column: feat.name.to_owned(),
                    value: (*value).to_owned(),
                });
            }
            *slot = v;
        }
        Ok(FeatureRow {
            ip_version,
            proto: num(LEAD[1], fields[1])?,
            src_port: num(LEAD[2], fields[2])?,
            dst_port: num(LEAD[3], fields[3])?,
            features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::features::tests::sample_flow;

    #[test]
    fn a_row_reads_back_bit_for_bit() {
        let f = sample_flow();
        let row = FeatureRow::of(&f);
        assert_eq!(row.ip_version, 4);
        assert_eq!((row.proto, row.src_port, row.dst_port), (6, 40000, 22));
        let line = row.to_csv();
        let fields: Vec<&str> = line.split(',').collect();
        let back = FeatureRow::from_fields(&fields).unwrap();
        assert_eq!(back, row);
        for (a, b) in back.features.iter().zip(extract(&f).iter()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(
            FeatureRow::csv_header().split(',').count(),
            fields.len(),
            "header and row have the same width"
        );
        assert!(
            FeatureRow::csv_header().starts_with("ip_version,proto,src_port,dst_port,duration_s,")
        );
    }

    #[test]
    fn bad_rows_are_refused_with_the_column() {
        assert_eq!(
            FeatureRow::from_fields(&["4", "6"]),
            Err(RowError::Columns {
                expected: 4 + N_FEATURES,
                found: 2
            })
        );
        let line = FeatureRow::of(&sample_flow()).to_csv();
        let mut fields: Vec<&str> = line.split(',').collect();
        fields[4] = "-1";
        assert_eq!(
            FeatureRow::from_fields(&fields),
            Err(RowError::Value {
                column: "duration_s".into(),
                value: "-1".into()
            })
        );
        fields[4] = "1";
        fields[0] = "5";
        assert!(matches!(
            FeatureRow::from_fields(&fields),
            Err(RowError::Value { column, .. }) if column == "ip_version"
        ));
    }
}
