//! Deletion on request: every active and archived alert (and, once the store has them,
//! every training sample) about one IP or MAC address. "About" means the address is the
//! alert's source or destination, its source MAC, or is named in its description, in the
//! form as seen or as written by the current policy. Under `truncate` the written form is
//! the whole prefix, so forgetting one address forgets every alert of its prefix. A model
//! already trained on deleted samples is not retrained by this; later cycles no longer see
//! them.
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use tracing::info;

use super::Policy;
use super::anonymize::{Addr, addresses, format_mac, parse_mac};
use crate::alert::Alert;
use crate::store::{Store, StoreError, TreeCounts};

/// Whose data to delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Ip(IpAddr),
    Mac([u8; 6]),
}

/// A subject that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error("bad ip {0:?}: expected an IPv4 or IPv6 address such as 192.0.2.7")]
    BadIp(String),
    #[error("bad mac {0:?}: expected six hex bytes such as 00:11:22:aa:bb:cc")]
    BadMac(String),
}

impl Subject {
    pub fn parse_ip(s: &str) -> Result<Subject, SubjectError> {
        s.trim()
            .parse::<IpAddr>()
            .map(|ip| Subject::Ip(ip.to_canonical()))
            .map_err(|_| SubjectError::BadIp(s.to_string()))
    }

    pub fn parse_mac(s: &str) -> Result<Subject, SubjectError> {
        parse_mac(s.trim())
            .map(Subject::Mac)
            .ok_or_else(|| SubjectError::BadMac(s.to_string()))
    }

    /// The subject as this policy writes it (what logs may show).
    pub fn written(&self, policy: &Policy) -> Subject {
        match *self {
            Subject::Ip(ip) => Subject::Ip(policy.ip(ip)),
            Subject::Mac(m) => Subject::Mac(policy.mac_bytes(m)),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(ip) => write!(f, "ip {ip}"),
            Subject::Mac(m) => write!(f, "mac {}", format_mac(*m)),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Subject::Ip(ip) => m.serialize_entry("ip", &ip.to_string())?,
            Subject::Mac(mac) => m.serialize_entry("mac", &format_mac(*mac))?,
        }
        m.end()
    }
}

/// The stored forms a subject may take under `policy`.
#[derive(Clone, Debug)]
enum Forms {
    Ip(Vec<IpAddr>),
    Mac(Vec<[u8; 6]>),
}

impl Forms {
    fn of(subject: Subject, policy: &Policy) -> Forms {
        match subject {
            Subject::Ip(ip) => Forms::Ip(policy.ip_forms(ip)),
            Subject::Mac(m) => Forms::Mac(policy.mac_forms(m)),
        }
    }

    fn about(&self, a: &Alert) -> bool {
        let named = |want: &dyn Fn(Addr) -> bool| {
            addresses(&a.description)
                .into_iter()
                .any(|(_, addr)| want(addr))
        };
        match self {
            Forms::Ip(ips) => {
                let hit = |ip: &IpAddr| ips.contains(&ip.to_canonical());
                a.src_ip.as_ref().is_some_and(hit)
                    || a.dest_ip.as_ref().is_some_and(hit)
                    || named(&|addr| matches!(addr, Addr::Ip(ip) if hit(&ip)))
            }
            Forms::Mac(macs) => {
                a.src_mac
                    .as_deref()
                    .and_then(parse_mac)
                    .is_some_and(|m| macs.contains(&m))
                    || named(&|addr| matches!(addr, Addr::Mac(m) if macs.contains(&m)))
            }
        }
    }
}

/// Whether `alert` is about `subject` (in the form as seen or as `policy` writes it).
pub fn is_about(alert: &Alert, subject: Subject, policy: &Policy) -> bool {
    Forms::of(subject, policy).about(alert)
}

/// Deletes everything stored about `subject`; returns the counts per tree after the
/// deletion is durable. Logs only the written form of the subject.
pub fn forget(store: &Store, policy: &Policy, subject: Subject) -> Result<TreeCounts, StoreError> {
    let forms = Forms::of(subject, policy);
    let mut deleted = store.delete_matching(|a| forms.about(a))?;
    // Training samples carry the two flow addresses (no MAC): no new cycle will use them.
    if let Forms::Ip(ips) = &forms {
        deleted.samples = store.delete_samples_matching(|s| {
            ips.contains(&s.src_ip.to_canonical()) || ips.contains(&s.dst_ip.to_canonical())
        })?;
    }
    for (tree, n) in deleted.per_tree() {
        metrics::counter!("safelink_privacy_forgotten_total", "tree" => tree).increment(n);
    }
    info!(
        subject = %subject.written(policy),
        alerts = deleted.alerts,
        archive = deleted.archive,
        samples = deleted.samples,
        "forgot a subject on request"
    );
    Ok(deleted)
}
