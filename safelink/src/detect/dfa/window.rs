//! Sliding time windows over capture time, bounded in memory.
//!
//! Evidence may arrive out of order (a flow record is emitted when the flow ends, after records
//! of later packets), so both windows accept any timestamp and drop only what is older than the
//! window at the time of the question.
use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// Below this many items a window's table is never shrunk (a few bytes are not worth a
/// reallocation).
const SHRINK_FLOOR: usize = 8;

/// The capacity to shrink a table of `len` items and `capacity` slots to, if it has emptied
/// to a quarter of what it can hold (never for fewer than [`SHRINK_FLOOR`] items): the one
/// rule for every window's and queue's memory.
pub(super) fn shrunk_capacity(capacity: usize, len: usize) -> Option<usize> {
    (capacity > 4 * len.max(SHRINK_FLOOR)).then_some(2 * len)
}

/// Distinct items seen within the last `window_ns` (item → latest time seen), at most `cap`.
#[derive(Clone, Debug)]
pub struct DistinctWindow<T> {
    items: HashMap<T, u64>,
    window_ns: u64,
    cap: usize,
    pruned_at: u64,
}

impl<T: Eq + Hash> DistinctWindow<T> {
    pub fn new(window_ns: u64, cap: usize) -> Self {
        Self {
            items: HashMap::new(),
            window_ns,
            cap: cap.max(1),
            pruned_at: 0,
        }
    }

    /// Adds `item` seen at `ts`; `now` is the engine clock. Returns true when the item was not
    /// in the window yet. Once `cap` distinct items are held, new ones are not remembered (every
    /// threshold is far below the cap, so the verdict is already known).
    pub fn insert(&mut self, item: T, ts: u64, now: u64) -> bool {
        let cutoff = now.saturating_sub(self.window_ns);
        if ts < cutoff {
            return false;
        }
        self.maybe_prune(now);
        match self.items.get_mut(&item) {
            Some(t) => {
                let fresh = *t < cutoff;
                *t = (*t).max(ts);
                fresh
            }
            None => {
                if self.items.len() >= self.cap {
                    self.prune(now);
                    if self.items.len() >= self.cap {
                        return false;
                    }
                }
                self.items.insert(item, ts);
                true
            }
        }
    }

    /// Distinct items within the window at `now`.
    pub fn len(&mut self, now: u64) -> u64 {
        self.maybe_prune(now);
        let cutoff = now.saturating_sub(self.window_ns);
        self.items.values().filter(|&&t| t >= cutoff).count() as u64
    }

    /// Distinct items last seen at or after `since` (a sub-window of a longer window).
    pub fn count_since(&self, since: u64) -> u64 {
        self.items.values().filter(|&&t| t >= since).count() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items within the window at `now`.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = &T> {
        let cutoff = now.saturating_sub(self.window_ns);
        self.items
            .iter()
            .filter(move |(_, t)| **t >= cutoff)
            .map(|(k, _)| k)
    }

    /// Slots of the item table allocated: what the window holds on to (the memory budget
    /// counts these, not the items still inside the window).
    pub fn allocated(&self) -> usize {
        self.items.capacity()
    }

    /// Drops what has left the window, at most about 16 times per window (amortised O(1) per
    /// call): for a key's periodic tick as much as for each insert.
    /// Returns the slots still allocated ([`Self::allocated`]).
    pub fn expire(&mut self, now: u64) -> usize {
        self.maybe_prune(now);
        self.allocated()
    }

    fn maybe_prune(&mut self, now: u64) {
        // Prune about 16 times per window: amortised O(1) per insert.
        if now.saturating_sub(self.pruned_at) >= (self.window_ns / 16).max(1_000_000_000) {
            self.prune(now);
        }
    }

    /// Drops the items older than the window. A table that has emptied to a quarter of what it
    /// can hold is shrunk: under address churn most keys of a burst go quiet, and a window
    /// that once held a sweep's thousand hosts would otherwise keep their memory for as long
    /// as its key lives (up to the slow-scan tier's hour).
    pub fn prune(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.window_ns);
        self.items.retain(|_, t| *t >= cutoff);
        if let Some(c) = shrunk_capacity(self.items.capacity(), self.items.len()) {
            self.items.shrink_to(c);
        }
        self.pruned_at = now;
    }
}

/// A sum over a sliding window, kept in 16 buckets per window (so it is exact to 1/16 of the
/// window at the trailing edge).
#[derive(Clone, Debug)]
pub struct RateWindow {
    /// (bucket index, sum), ascending by index.
    buckets: VecDeque<(u64, u64)>,
    bucket_ns: u64,
    window_ns: u64,
}

impl RateWindow {
    pub fn new(window_ns: u64) -> Self {
        Self {
            buckets: VecDeque::new(),
            bucket_ns: (window_ns / 16).max(1),
            window_ns,
        }
    }

    fn drop_old(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.window_ns) / self.bucket_ns;
        while self.buckets.front().is_some_and(|&(b, _)| b < cutoff) {
            self.buckets.pop_front();
        }
    }

    /// Adds `n` at `ts` (ignored when older than the window at `now`).
    pub fn add(&mut self, ts: u64, n: u64, now: u64) {
        self.drop_old(now);
        if ts < now.saturating_sub(self.window_ns) {
            return;
        }
        let b = ts / self.bucket_ns;
        // Usually the newest bucket; out-of-order evidence walks back a little.
        let pos = self.buckets.iter().rposition(|&(x, _)| x <= b);
        match pos {
            Some(i) if self.buckets[i].0 == b => {
                self.buckets[i].1 = self.buckets[i].1.saturating_add(n);
            }
            Some(i) => self.buckets.insert(i + 1, (b, n)),
            None => self.buckets.push_front((b, n)),
        }
        if self.buckets.len() > 64 {
            // Far-future timestamps could otherwise grow the deque; keep the newest.
            self.buckets.pop_front();
        }
    }

    /// Takes back up to `n` added at `ts` (e.g. a SYN whose connection completed).
    pub fn sub(&mut self, ts: u64, n: u64) {
        let b = ts / self.bucket_ns;
        if let Some(x) = self.buckets.iter_mut().find(|(x, _)| *x == b) {
            x.1 = x.1.saturating_sub(n);
        }
    }

    /// Sum within the window at `now`.
    pub fn sum(&mut self, now: u64) -> u64 {
        self.drop_old(now);
        self.buckets.iter().map(|&(_, n)| n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// An automaton's per-key state, in least-recently-updated order (front: the key whose evidence
/// is oldest), so that a full table makes room in O(1).
pub type KeyMap<K, E> = hashlink::LinkedHashMap<K, E>;

/// Gets or creates the entry of `key` and marks it most recently updated, keeping the map under
/// `max` keys: when full, the least recently updated key is forgotten to make room (handed to
/// `evicted`). O(1) whatever the table holds: a table filled with spoofed keys cannot keep a
/// new source out, and only a key that stays quiet while `max` others get evidence is
/// forgotten.
pub fn slot<K: Eq + Hash, E>(
    map: &mut KeyMap<K, E>,
    key: K,
    max: usize,
    make: impl FnOnce() -> E,
    mut evicted: impl FnMut(E),
) -> &mut E {
    if map.contains_key(&key) {
        return map.to_back(&key).expect("present");
    }
    while map.len() >= max.max(1) {
        match map.pop_front() {
            Some((_, e)) => evicted(e),
            None => break,
        }
    }
    map.entry(key).or_insert_with(make)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn distinct_window_slides() {
        let mut w = DistinctWindow::new(10 * S, 100);
        assert!(w.insert(1u16, S, S));
        assert!(!w.insert(1, 2 * S, 2 * S));
        assert!(w.insert(2, 5 * S, 5 * S));
        assert_eq!(w.len(5 * S), 2);
        // Port 1 was last seen at 2 s: gone at 12.5 s, port 2 stays until 15 s.
        assert_eq!(w.len(12 * S + S / 2), 1);
        assert_eq!(w.len(16 * S), 0);
        // Too old to count.
        assert!(!w.insert(3, S, 16 * S));
    }

    #[test]
    fn distinct_window_cap() {
        let mut w = DistinctWindow::new(10 * S, 3);
        for p in 0..10u16 {
            w.insert(p, S, S);
        }
        assert_eq!(w.len(S), 3);
    }

    #[test]
    fn distinct_window_gives_back_what_a_burst_left() {
        let mut w = DistinctWindow::new(10 * S, 10_000);
        for h in 0..1_000u32 {
            w.insert(h, S, S);
        }
        let burst = w.allocated();
        assert!(burst >= 1_000);
        // One host stays active; the burst's other 999 leave the window.
        w.insert(7, 20 * S, 20 * S);
        w.prune(20 * S);
        assert_eq!(w.len(20 * S), 1);
        assert!(
            w.allocated() <= 4 * SHRINK_FLOOR,
            "{} of {burst}",
            w.allocated()
        );
        // A window that is still full is not reallocated.
        let mut full = DistinctWindow::new(10 * S, 10_000);
        for h in 0..1_000u32 {
            full.insert(h, S, S);
        }
        let before = full.allocated();
        full.prune(2 * S);
        assert_eq!(full.allocated(), before);
    }

    #[test]
    fn rate_window_out_of_order_and_sub() {
        let mut r = RateWindow::new(16 * S);
        r.add(10 * S, 5, 10 * S);
        r.add(5 * S, 2, 10 * S);
        r.add(12 * S, 1, 12 * S);
        assert_eq!(r.sum(12 * S), 8);
        r.sub(5 * S, 1);
        assert_eq!(r.sum(12 * S), 7);
        // At 22 s the window starts at 6 s: the 5 s bucket is gone.
        assert_eq!(r.sum(22 * S), 6);
        assert_eq!(r.sum(100 * S), 0);
        r.add(0, 1, u64::MAX);
        assert_eq!(r.sum(u64::MAX), 0);
    }

    #[test]
    fn slot_bounds_the_map_and_forgets_the_least_recently_updated_key() {
        let mut m: KeyMap<u32, u32> = KeyMap::new();
        let mut gone = Vec::new();
        for k in 0..3 {
            *slot(&mut m, k, 3, || 0, |e| gone.push(e)) += k;
        }
        // Key 0 gets evidence again: key 1 is now the least recently updated.
        *slot(&mut m, 0, 3, || 0, |e| gone.push(e)) += 10;
        *slot(&mut m, 9, 3, || 9, |e| gone.push(e)) += 0;
        assert_eq!(gone, vec![1]);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![2, 0, 9]);
        assert_eq!(m[&0], 10);
    }
}
