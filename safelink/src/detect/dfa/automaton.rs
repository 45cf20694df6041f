//! The incident automaton every detector runs per key: explicit states and transitions.
//!
//! ```text
//!            evidence, below the suspicious mark
//!   ┌──────┐ ───────────────────────────────┐
//!   │ Idle │ ── evidence ≥ suspicious ──► Suspicious ── quiet for a window ──► Idle
//!   └──────┘ ── evidence ≥ alert ──┐          │ evidence ≥ alert
//!       ▲                          ▼          ▼
//!       │                        Alerting ◄───┘  (raise: one New alert)
//!       │                          │  ▲ evidence: count/last_seen updated (same alert)
//!       │        quiet for a window▼  │ any evidence: back to Alerting, same alert
//!       └── quiet for cool-down ── CoolDown
//!                  (alert closed)
//! ```
//!
//! The detector decides, from its windows, what the latest evidence amounts to (a [`Verdict`]);
//! this type only keeps the state, the incident's counters and the open alert's id, so every
//! family shares the same life cycle: one incident, one alert, updated until it goes quiet.

/// State of one key's automaton.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// Nothing (or only noise) seen recently.
    #[default]
    Idle,
    /// Some evidence within the window, below the alert threshold.
    Suspicious,
    /// Threshold crossed: the alert is open and updated with new evidence.
    Alerting,
    /// The alert is open but no evidence arrived for a window; new evidence re-opens it,
    /// a full cool-down of quiet closes it.
    CoolDown,
}

/// What the detector's windows say after a piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Below every mark (still counted as evidence of the incident).
    Noise,
    Suspicious,
    Alert,
}

impl Verdict {
    /// The verdict of `n` units of evidence against a suspicious and an alert mark.
    pub fn ladder<N: PartialOrd>(n: N, suspicious: N, alert: N) -> Self {
        if n >= alert {
            Verdict::Alert
        } else if n >= suspicious {
            Verdict::Suspicious
        } else {
            Verdict::Noise
        }
    }
}

/// What the caller must do after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to report.
    Stay,
    /// Idle → Suspicious.
    BecameSuspicious,
    /// Threshold crossed: build the alert and hand its id to [`Incident::opened`].
    Raise,
    /// The open alert got more evidence: refresh its count and last_seen.
    Update(u64),
    /// Alerting → CoolDown (no report needed).
    CooledDown,
    /// CoolDown → Idle: the alert with this id is final.
    Close(u64),
    /// Suspicious → Idle: the evidence decayed without an alert.
    Decayed,
}

/// One key's incident: phase, counters and the open alert.
#[derive(Clone, Debug, Default)]
pub struct Incident {
    phase: Phase,
    alert: Option<u64>,
    /// First evidence of the current episode (ns).
    pub first_ns: u64,
    /// Latest evidence (ns).
    pub last_ns: u64,
    /// Evidence units since the episode began (probes, sessions, packets...).
    pub count: u64,
}

impl Incident {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Id of the open alert (Alerting or CoolDown).
    pub fn alert_id(&self) -> Option<u64> {
        self.alert
    }

    /// Feeds `n` units of evidence stamped `ts` whose windows now say `verdict`.
    pub fn observe(&mut self, ts: u64, n: u64, verdict: Verdict) -> Step {
        if self.count == 0 {
            // A new episode.
            self.first_ns = ts;
            self.last_ns = ts;
        }
        self.first_ns = self.first_ns.min(ts);
        self.last_ns = self.last_ns.max(ts);
        self.count = self.count.saturating_add(n);
        match (self.phase, verdict) {
            (Phase::Alerting | Phase::CoolDown, _) => {
                self.phase = Phase::Alerting;
                match self.alert {
                    Some(id) => Step::Update(id),
                    // Unreachable by construction (opened() always follows Raise); recover
                    // by raising again rather than panicking.
                    None => Step::Raise,
                }
            }
            (_, Verdict::Alert) => Step::Raise,
            (Phase::Idle, Verdict::Suspicious) => {
                self.phase = Phase::Suspicious;
                Step::BecameSuspicious
            }
            (Phase::Idle, Verdict::Noise) => {
                // Evidence, but not enough to leave Idle: the episode stays open so its
                // first_ns/count are right if it grows; tick() forgets it after a window.
                Step::Stay
            }
            (Phase::Suspicious, _) => Step::Stay,
        }
    }

    /// Records the id of the alert raised after [`Step::Raise`].
    pub fn opened(&mut self, id: u64) {
        self.alert = Some(id);
        self.phase = Phase::Alerting;
    }

    /// Time passes: `quiet_ns` is the family's window, `cooldown_ns` the extra quiet time
    /// after which an alert closes.
    pub fn tick(&mut self, now: u64, quiet_ns: u64, cooldown_ns: u64) -> Step {
        let quiet_for = now.saturating_sub(self.last_ns);
        match self.phase {
            Phase::Idle => {
                if quiet_for > quiet_ns {
                    // Sub-threshold evidence older than a window: the episode is forgotten.
                    self.count = 0;
                }
                Step::Stay
            }
            Phase::Suspicious if quiet_for > quiet_ns => {
                self.phase = Phase::Idle;
                self.count = 0;
                Step::Decayed
            }
            Phase::Suspicious => Step::Stay,
            Phase::Alerting if quiet_for > quiet_ns => {
                self.phase = Phase::CoolDown;
                Step::CooledDown
            }
            Phase::Alerting => Step::Stay,
            Phase::CoolDown if quiet_for > quiet_ns.saturating_add(cooldown_ns) => {
                self.phase = Phase::Idle;
                self.count = 0;
                match self.alert.take() {
                    Some(id) => Step::Close(id),
                    None => Step::Decayed,
                }
            }
            Phase::CoolDown => Step::Stay,
        }
    }

    /// True when the key holds nothing worth keeping at `now` (Idle and quiet for `keep_ns`).
    pub fn forgettable(&self, now: u64, keep_ns: u64) -> bool {
        self.phase == Phase::Idle && now.saturating_sub(self.last_ns) > keep_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_life_cycle() {
        let mut i = Incident::default();
        assert_eq!(i.phase(), Phase::Idle);
        assert_eq!(i.observe(10, 1, Verdict::Noise), Step::Stay);
        assert_eq!(i.phase(), Phase::Idle);
        assert_eq!(
            i.observe(11, 1, Verdict::Suspicious),
            Step::BecameSuspicious
        );
        assert_eq!(i.phase(), Phase::Suspicious);
        assert_eq!(i.observe(12, 1, Verdict::Alert), Step::Raise);
        i.opened(7);
        assert_eq!(i.phase(), Phase::Alerting);
        assert_eq!((i.first_ns, i.last_ns, i.count), (10, 12, 3));
        assert_eq!(i.observe(13, 2, Verdict::Noise), Step::Update(7));
        assert_eq!(i.count, 5);
        assert_eq!(i.tick(20, 10, 100), Step::Stay);
        assert_eq!(i.tick(24, 10, 100), Step::CooledDown);
        assert_eq!(i.phase(), Phase::CoolDown);
        // Evidence during cool-down re-opens the same alert.
        assert_eq!(i.observe(30, 1, Verdict::Noise), Step::Update(7));
        assert_eq!(i.phase(), Phase::Alerting);
        assert_eq!(i.tick(41, 10, 100), Step::CooledDown);
        assert_eq!(i.tick(140, 10, 100), Step::Stay);
        assert_eq!(i.tick(141, 10, 100), Step::Close(7));
        assert_eq!(i.phase(), Phase::Idle);
        assert!(i.forgettable(200, 10));
        // A new episode starts from scratch.
        assert_eq!(i.observe(300, 1, Verdict::Alert), Step::Raise);
        assert_eq!((i.first_ns, i.count), (300, 1));
    }

    #[test]
    fn suspicion_decays() {
        let mut i = Incident::default();
        assert_eq!(i.observe(5, 1, Verdict::Suspicious), Step::BecameSuspicious);
        assert_eq!(i.tick(15, 10, 0), Step::Stay);
        assert_eq!(i.tick(16, 10, 0), Step::Decayed);
        assert_eq!(i.phase(), Phase::Idle);
        assert_eq!(i.alert_id(), None);
    }

    #[test]
    fn out_of_order_evidence_keeps_bounds() {
        let mut i = Incident::default();
        i.observe(100, 1, Verdict::Noise);
        i.observe(90, 1, Verdict::Noise);
        assert_eq!((i.first_ns, i.last_ns), (90, 100));
    }
}
