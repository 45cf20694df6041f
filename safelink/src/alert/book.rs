//! The open alerts of one detector (the rule engine or the ANN): ids, `New`/`Updated` events
//! and update throttling.
use std::collections::HashMap;

use super::Alert;

/// What a detector reports about an alert.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertKind, build::base_alert};

    #[test]
    fn book_throttles_updates_and_reports_final_state() {
        let mut b = AlertBook::new(1_000);
        let a = base_alert(AlertKind::PORT_SCAN, 0, 0, 0);
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
