//! The engine's open alerts: ids, `New`/`Updated` events, update throttling, and the helpers
//! that fill an [`Alert`] (RFC 3339 timestamps, Community ID, protocol names).
use std::{collections::HashMap, net::IpAddr};

use crate::alert::{Alert, AlertKind, AlertSource, Severity};

/// What the engine reports about an alert.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertEvent {
    /// A new incident: the alert as first raised.
    New(Alert),
    /// More evidence for an alert reported before (same `id`): its current state.
    Updated(Alert),
}

impl AlertEvent {
    pub fn alert(&self) -> &Alert {
        match self {
            Self::New(a) | Self::Updated(a) => a,
        }
    }

    pub fn into_alert(self) -> Alert {
        match self {
            Self::New(a) | Self::Updated(a) => a,
        }
    }
}

struct Slot {
    alert: Alert,
    dirty: bool,
    emitted_ns: u64,
}

/// Open alerts by engine id (1, 2, ... per engine).
pub struct AlertBook {
    open: HashMap<u64, Slot>,
    next_id: u64,
    update_interval_ns: u64,
    out: Vec<AlertEvent>,
}

impl AlertBook {
    pub fn new(update_interval_ns: u64) -> Self {
        Self {
            open: HashMap::new(),
            next_id: 1,
            update_interval_ns,
            out: Vec::new(),
        }
    }

    /// Opens an alert (its `id` is assigned here) and reports it as `New`.
    pub fn raise(&mut self, mut alert: Alert, now: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        alert.id = id;
        self.out.push(AlertEvent::New(alert.clone()));
        self.open.insert(
            id,
            Slot {
                alert,
                dirty: false,
                emitted_ns: now,
            },
        );
        id
    }

    /// Changes an open alert; the change is reported by the next [`Self::flush`].
    pub fn update(&mut self, id: u64, f: impl FnOnce(&mut Alert)) {
        if let Some(s) = self.open.get_mut(&id) {
            f(&mut s.alert);
            s.dirty = true;
        }
    }

    /// The current state of an open alert.
    pub fn get(&self, id: u64) -> Option<&Alert> {
        self.open.get(&id).map(|s| &s.alert)
    }

    /// Reports changed alerts whose last report is at least the update interval old (all
    /// changed alerts when `force`).
    pub fn flush(&mut self, now: u64, force: bool) {
        let mut ids: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, s)| {
                s.dirty && (force || now.saturating_sub(s.emitted_ns) >= self.update_interval_ns)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(s) = self.open.get_mut(&id) {
                s.dirty = false;
                s.emitted_ns = now;
                self.out.push(AlertEvent::Updated(s.alert.clone()));
            }
        }
    }

    /// The incident is over: reports the final state if it changed, and forgets the alert.
    pub fn close(&mut self, id: u64) {
        if let Some(s) = self.open.remove(&id)
            && s.dirty
        {
            self.out.push(AlertEvent::Updated(s.alert));
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes the events produced so far.
    pub fn drain_into(&mut self, out: &mut Vec<AlertEvent>) {
        out.append(&mut self.out);
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2015-07-14T09:16:23.632810Z`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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

/// Protocol name as the alert contract spells it.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// Community ID v1 (seed 0) of a flow, oriented any way (the hash is symmetric). For ICMP the
/// "ports" are the type and code, as the specification says.
pub fn community_id(
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    icmp: Option<(u8, u8)>,
) -> Option<String> {
    let (sp, dp) = match (proto, icmp) {
        (6 | 17 | 132, _) => (Some(sport), Some(dport)),
        (1 | 58, Some((t, c))) => (Some(u16::from(t)), Some(u16::from(c))),
        _ => (None, None),
    };
    community_id::calculate_community_id(0, src, dst, sp, dp, proto, false).ok()
}

/// An alert with the fields every family fills the same way.
pub fn base_alert(kind: AlertKind, severity: Severity, now: u64, first: u64, last: u64) -> Alert {
    Alert {
        id: 0,
        timestamp: rfc3339(now),
        source: AlertSource::Dfa,
        kind,
        severity,
        confidence: 1.0,
        src_ip: None,
        src_port: None,
        dest_ip: None,
        dest_port: None,
        proto: String::new(),
        src_mac: None,
        first_seen: rfc3339(first),
        last_seen: rfc3339(last),
        count: 0,
        description: String::new(),
        community_id: None,
        explanation: None,
        features: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // capinfos: first packet of the NTP capture.
        assert_eq!(
            rfc3339(1_436_865_383_632_810_000),
            "2015-07-14T09:16:23.632810Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(4_102_444_799_999_999_999),
            "2099-12-31T23:59:59.999999Z"
        );
        // Never panics, whatever the input.
        let _ = rfc3339(u64::MAX);
    }

    #[test]
    fn community_id_spec_vectors() {
        // Community ID specification baseline (and Zeek's documentation example).
        let a = IpAddr::V4(Ipv4Addr::new(128, 232, 110, 120));
        let b = IpAddr::V4(Ipv4Addr::new(66, 35, 250, 204));
        let id = community_id(6, a, 34855, b, 80, None).unwrap();
        assert_eq!(id, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(community_id(6, b, 80, a, 34855, None).unwrap(), id);
        let x = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let y = IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(
            community_id(6, x, 1122, y, 3344, None).unwrap(),
            "1:wCb3OG7yAFWelaUydu0D+125CLM="
        );
        let v6 = IpAddr::V6("::1".parse().unwrap());
        assert_eq!(community_id(6, x, 1, v6, 2, None), None);
    }

    #[test]
    fn book_throttles_updates_and_reports_final_state() {
        let mut b = AlertBook::new(1_000);
        let a = base_alert(AlertKind::PortScan, Severity::Medium, 0, 0, 0);
        let id = b.raise(a, 0);
        assert_eq!(id, 1);
        b.update(id, |a| a.count = 5);
        b.flush(500, false);
        let mut ev = Vec::new();
        b.drain_into(&mut ev);
        assert_eq!(ev.len(), 1, "only the New event before the interval passed");
        b.flush(1_000, false);
        b.update(id, |a| a.count = 6);
        b.close(id);
        b.drain_into(&mut ev);
        let counts: Vec<(bool, u64)> = ev
            .iter()
            .map(|e| (matches!(e, AlertEvent::New(_)), e.alert().count))
            .collect();
        assert_eq!(counts, vec![(true, 0), (false, 5), (false, 6)]);
        assert_eq!(b.open_count(), 0);
    }
}
