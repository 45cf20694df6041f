//! Clocks taken from timestamps that cannot be trusted blindly ("blinding by time").
//!
//! Detection time is the records' own time. One wrong timestamp must not move it: a pcap
//! frame stamped `u32::MAX` seconds, or a wall-clock step under a live sensor, would make
//! every later record look hours old and every window empty. [`RecordClock`] advances with
//! timestamps within a plausible step ([`PLAUSIBLE_STEP_NS`]) of its current time; a far jump
//! is held as a candidate and decided by the next timestamp: if that one lies closer to the
//! candidate than to the current time, the jump was real (a capture gap, a clock step) and is
//! followed (counted in [`ClockStats::steps`]); otherwise the candidate was a lone outlier
//! (counted in [`ClockStats::outliers`]) and its user gives it the current time instead
//! ([`Observed::released`]). The replay holds a candidate frame back until it is decided; the
//! rule engine only delays its clock.
//!
//! [`Ticks`] bounds what a periodic tick (a quiet live sensor's "time passes") may do: it
//! follows the tick source's increments, at most [`MAX_TICK_STEP_NS`] per tick, so a step of
//! the tick source moves the engine by one tick, not by the step.

/// A timestamp further than this from the clock (ahead, or behind for a clock that follows
/// backward steps) is a far jump: 5 minutes. Records of one network a few minutes apart are
/// ordinary; hours apart they are a capture gap, a clock step or garbage.
pub const PLAUSIBLE_STEP_NS: u64 = 300 * 1_000_000_000;

/// The most one tick may move a clock: 1 s, the daemon's tick period.
pub const MAX_TICK_STEP_NS: u64 = 1_000_000_000;

/// What a clock has seen of implausible time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClockStats {
    /// Lone far jumps, not followed (their records were given the clock's time).
    pub outliers: u64,
    /// Far jumps confirmed by the next timestamp and followed.
    pub steps: u64,
    /// Ticks whose source jumped by more than [`PLAUSIBLE_STEP_NS`] (followed by one tick's
    /// worth only).
    pub tick_jumps: u64,
}

/// Which far jumps a [`RecordClock`] may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Forward only: timestamps behind the clock are late evidence (flow records end after
    /// later packets were seen) and neither move the clock nor decide a candidate. The first
    /// timestamp starts the clock.
    Forward,
    /// Both ways (capture frames, which come in time order): a confirmed backward jump sets
    /// the clock back.
    Both,
}

/// What [`RecordClock::observe`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The candidate held since the previous call, now decided: the time to give its record
    /// (its own when the jump was confirmed, the clock's when it was a lone outlier).
    pub released: Option<u64>,
    /// The time to give this record; `None` while it is held as a far jump's candidate.
    pub ts: Option<u64>,
}

/// A clock driven by record timestamps that resists lone outliers (see the module doc).
#[derive(Clone, Debug)]
pub struct RecordClock {
    now: u64,
    /// Whether a timestamp was accepted yet (before that the clock reads 0 and the first far
    /// timestamp is not a "step").
    started: bool,
    follow: Follow,
    max_step: u64,
    pending: Option<u64>,
    stats: ClockStats,
}

fn dist(a: u64, b: u64) -> u64 {
    a.abs_diff(b)
}

impl RecordClock {
    pub fn new(follow: Follow) -> Self {
        Self::with_step(follow, PLAUSIBLE_STEP_NS)
    }

    pub fn with_step(follow: Follow, max_step_ns: u64) -> Self {
        Self {
            now: 0,
            started: false,
            follow,
            max_step: max_step_ns.max(1),
            pending: None,
            stats: ClockStats::default(),
        }
    }

    /// The current time (ns; 0 before the first timestamp).
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn stats(&self) -> ClockStats {
        self.stats
    }

    /// The far jump waiting for its decision, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// Takes one timestamp; see [`Observed`].
    pub fn observe(&mut self, ts: u64) -> Observed {
        if self.follow == Follow::Forward && self.started && ts < self.now {
            // Late evidence says nothing about a jump ahead.
            return Observed {
                released: None,
                ts: Some(ts),
            };
        }
        let mut released = None;
        if let Some(c) = self.pending.take() {
            if dist(ts, c) < dist(ts, self.now) {
                if self.started {
                    self.stats.steps += 1;
                    tracing::debug!(from = self.now, to = c, "clock step confirmed");
                }
                self.started = true;
                self.now = c;
                released = Some(c);
            } else {
                self.stats.outliers += 1;
                tracing::debug!(
                    now = self.now,
                    outlier = c,
                    "lone timestamp outlier ignored"
                );
                released = Some(if self.started { self.now } else { ts });
            }
        }
        // A forward-only clock starts at its first timestamp; a two-way one (frames) holds
        // even that one until the next agrees, so a garbage first frame cannot set it.
        let far = dist(ts, self.now) > self.max_step
            && (self.follow == Follow::Both || (self.started && ts > self.now));
        if far {
            self.pending = Some(ts);
            return Observed { released, ts: None };
        }
        if !self.started || ts > self.now {
            self.now = ts;
        }
        self.started = true;
        Observed {
            released,
            ts: Some(ts),
        }
    }

    /// End of input: decides a candidate that nothing followed. With earlier timestamps it is
    /// an outlier (returns the clock's time for its record); as the only timestamp ever, it
    /// is the time. `None` when nothing was pending.
    pub fn finish(&mut self) -> Option<u64> {
        let c = self.pending.take()?;
        if self.started {
            self.stats.outliers += 1;
            Some(self.now)
        } else {
            self.started = true;
            self.now = c;
            Some(c)
        }
    }

    /// Moves the clock forward to `to` (a tick; see [`Ticks`]). Never backward, never starts
    /// the clock's record time.
    pub fn advance_to(&mut self, to: u64) {
        self.now = self.now.max(to);
    }

    /// Counts one tick whose source jumped.
    fn tick_jump(&mut self) {
        self.stats.tick_jumps += 1;
    }
}

/// Follows a periodic tick source by its increments, each at most [`MAX_TICK_STEP_NS`].
#[derive(Clone, Debug, Default)]
pub struct Ticks {
    /// The source's last reading and the clock right after that tick.
    last: Option<(u64, u64)>,
}

impl Ticks {
    /// A tick reading `source_ns`: moves `clock` by the source's increment since the last
    /// tick (bounded; a source going backward moves nothing). The first tick only takes its
    /// bearings.
    pub fn tick(&mut self, source_ns: u64, clock: &mut RecordClock) {
        if let Some((last_src, base)) = self.last {
            let inc = source_ns.saturating_sub(last_src);
            if inc > PLAUSIBLE_STEP_NS {
                clock.tick_jump();
                tracing::warn!(
                    jump_s = inc / 1_000_000_000,
                    "the tick clock jumped; following by one tick"
                );
            }
            clock.advance_to(base.saturating_add(inc.min(MAX_TICK_STEP_NS)));
        }
        self.last = Some((source_ns, clock.now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T: u64 = 1_700_000_000 * S;

    /// Feeds timestamps; returns the times given to records, in the order they are released.
    fn run(c: &mut RecordClock, ts: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for &t in ts {
            let o = c.observe(t);
            out.extend(o.released);
            out.extend(o.ts);
        }
        out.extend(c.finish());
        out
    }

    #[test]
    fn a_lone_outlier_is_clamped_and_counted() {
        for follow in [Follow::Forward, Follow::Both] {
            let mut c = RecordClock::new(follow);
            let got = run(&mut c, &[T, T + S, u64::MAX, T + 2 * S, T + 3 * S]);
            assert_eq!(got, vec![T, T + S, T + S, T + 2 * S, T + 3 * S]);
            assert_eq!(c.now(), T + 3 * S);
            assert_eq!(
                c.stats(),
                ClockStats {
                    outliers: 1,
                    steps: 0,
                    tick_jumps: 0
                }
            );
        }
    }

    #[test]
    fn a_gap_is_confirmed_by_the_next_timestamp() {
        let h = 3600 * S;
        let mut c = RecordClock::new(Follow::Both);
        let got = run(&mut c, &[T, T + S, T + 3 * h, T + 3 * h + S]);
        assert_eq!(got, vec![T, T + S, T + 3 * h, T + 3 * h + S]);
        assert_eq!((c.stats().steps, c.stats().outliers), (1, 0));
        // Sparse traffic: each far timestamp is followed by one further still.
        let mut c = RecordClock::new(Follow::Forward);
        let got = run(&mut c, &[T, T + h, T + 2 * h, T + 2 * h + S]);
        assert_eq!(got, vec![T, T + h, T + 2 * h, T + 2 * h + S]);
        assert_eq!((c.stats().steps, c.stats().outliers), (2, 0));
    }

    #[test]
    fn a_first_outlier_does_not_start_the_clock() {
        let mut c = RecordClock::new(Follow::Both);
        let got = run(&mut c, &[u64::MAX, T, T + S]);
        // The outlier gets the time of the timestamp that disproved it.
        assert_eq!(got, vec![T, T, T + S]);
        assert_eq!(
            (c.stats().steps, c.stats().outliers, c.now()),
            (0, 1, T + S)
        );
        let mut c = RecordClock::new(Follow::Both);
        assert_eq!(run(&mut c, &[T]), vec![T]);
        assert_eq!(c.stats(), ClockStats::default());
    }

    #[test]
    fn backward_steps_only_when_following_both_ways() {
        let h = 3600 * S;
        let mut c = RecordClock::new(Follow::Both);
        assert_eq!(
            run(&mut c, &[T, T - h, T - h + S]),
            vec![T, T - h, T - h + S]
        );
        assert_eq!((c.stats().steps, c.now()), (1, T - h + S));
        let mut c = RecordClock::new(Follow::Forward);
        assert_eq!(
            run(&mut c, &[T, T - h, T - h + S]),
            vec![T, T - h, T - h + S]
        );
        assert_eq!((c.stats(), c.now()), (ClockStats::default(), T));
    }

    #[test]
    fn ticks_follow_increments_not_jumps() {
        let mut c = RecordClock::new(Follow::Forward);
        c.observe(T);
        let mut t = Ticks::default();
        t.tick(T, &mut c);
        t.tick(T + S, &mut c);
        assert_eq!(c.now(), T + S);
        t.tick(T + 3600 * S, &mut c);
        assert_eq!(c.now(), T + 2 * S);
        t.tick(T + 3601 * S, &mut c);
        assert_eq!(c.now(), T + 3 * S);
        t.tick(u64::MAX, &mut c);
        t.tick(0, &mut c);
        assert_eq!(c.now(), T + 4 * S);
        assert_eq!(c.stats().tick_jumps, 2);
    }
}
