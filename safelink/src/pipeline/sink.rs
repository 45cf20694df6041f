//! The alert sink, the pipeline's last stage: writes alert events into the store on its own
//! thread ([`SinkThread`]), maps detector alert ids to store ids (a bounded map, [`IdMap`]),
//! and survives a failing store. Every alert passes through the privacy [`Policy`] first:
//! what is stored and what is logged is the anonymised form (the detectors upstream keep the
//! real addresses). Counts new alerts in `safelink_alerts_total`.
//!
//! **Group commit.** Each event is written at once (visible to readers) without a flush;
//! the writes are made durable together by one fsync ([`Store::commit`]) as soon as
//! `[store] commit_max_alerts` of them wait or `[store] commit_interval_ms` after the first
//! of them, whichever comes first. An alert is acknowledged — appended to the EVE log and
//! counted in `safelink_alerts_total` — only after its group's fsync, so a `kill -9` loses
//! no acknowledged alert. After each commit the store's size cap is enforced.
//!
//! **A failing store** (disk full, I/O error): the writes of the failed group and every
//! event after it go to a bounded retry queue ([`RETRY_CAP`]; beyond it they are dropped,
//! counted in `alerts_dropped`), and the store turns degraded (`/status`, `/metrics`). Every
//! [`RECOVERY_INTERVAL`] the sink reopens the store (sled 0.34 fails every call after its
//! first I/O error until reopened) and writes the queue again; an alert of the failed group
//! that reached the disk anyway is recognised by its store id and not written twice.
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::eve_log::EveLog;
use crate::{
    alert::{Alert, AlertEvent, AlertSource},
    privacy::Policy,
    store::{Store, StoreError, config::StoreConfig},
    telemetry,
};

/// Events waiting for the sink thread before the detectors block.
const QUEUE: usize = 4096;
/// Most alert writes (new alerts, and updates of alerts not stored yet) held in memory while
/// the store fails; more are dropped, counted.
pub const RETRY_CAP: usize = 10_000;
/// How often a degraded store is reopened and the retry queue written again.
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(500);
/// Detector ids whose store id is remembered (for updates); beyond it the least recently
/// touched quarter is forgotten (a later update of one of those is dropped, logged).
pub const ID_MAP_CAP: usize = 100_000;

/// A detector's alert id: engine ids are per detector (DFA and ANN both start at 1).
type EngineId = (AlertSource, u64);

/// How the sink commits: `[store]` `commit_interval_ms`, `commit_max_alerts`, `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkOptions {
    /// Longest time a written alert waits for its fsync.
    pub commit_interval: Duration,
    /// Most writes per fsync.
    pub commit_max: usize,
    /// The store's size cap (0 = none).
    pub max_bytes: u64,
    /// Most writes held while the store fails ([`RETRY_CAP`]).
    pub retry_cap: usize,
}

impl From<&StoreConfig> for SinkOptions {
    fn from(c: &StoreConfig) -> Self {
        Self {
            commit_interval: Duration::from_millis(c.commit_interval_ms),
            commit_max: c.commit_max_alerts.max(1),
            max_bytes: c.max_bytes,
            retry_cap: RETRY_CAP,
        }
    }
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self::from(&StoreConfig::default())
    }
}

/// The sink on its own thread, fed through a bounded queue.
pub struct SinkThread {
    tx: SyncSender<AlertEvent>,
    join: std::thread::JoinHandle<(u64, u64)>,
}

impl SinkThread {
    /// The sink of `store`, and of `eve` when given (new alerts appended as EVE lines).
    pub fn spawn(store: Store, privacy: Policy, eve: Option<EveLog>, opts: SinkOptions) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let join = std::thread::Builder::new()
            .name("safelink-sink".into())
            .spawn(move || {
                if crate::daemon::stages::fault_injected("sink") {
                    // The test hook: the sink dies a second after start.
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    panic!("fault injected by {}", crate::daemon::stages::FAULT_ENV);
                }
                run_sink_with(store, rx, &privacy, eve, opts)
            })
            .expect("spawn the alert sink thread");
        Self { tx, join }
    }

    /// Hands an event over, waiting while the queue is full (no alert is dropped here). Call
    /// from a thread that may block, never from the async runtime.
    pub fn send(&self, ev: AlertEvent) {
        // The sink ends only when this sender is dropped, so this cannot fail.
        let _ = self.tx.send(ev);
    }

    /// Whether the sink thread has stopped (it only stops by itself when it failed).
    pub fn stopped(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for everything queued to be stored; returns (new, updated).
    pub fn finish(self) -> (u64, u64) {
        drop(self.tx);
        self.join.join().unwrap_or_else(|_| {
            error!("the alert sink thread panicked");
            (0, 0)
        })
    }
}

/// Runs until the channel closes with the default [`SinkOptions`]; returns how many alerts
/// were stored (new) and updated. Alerts are anonymised by `privacy` before they are logged
/// or stored.
pub fn run_sink(store: Store, rx: Receiver<AlertEvent>, privacy: &Policy) -> (u64, u64) {
    run_sink_with(store, rx, privacy, None, SinkOptions::default())
}

/// [`run_sink`] with `opts`, each stored new alert also appended to `eve` (with its store id).
pub fn run_sink_with(
    store: Store,
    rx: Receiver<AlertEvent>,
    privacy: &Policy,
    eve: Option<EveLog>,
    opts: SinkOptions,
) -> (u64, u64) {
    store.set_max_bytes(opts.max_bytes);
    let mut sink = Sink {
        store,
        eve,
        opts,
        ids: IdMap::new(ID_MAP_CAP),
        pending: Vec::new(),
        group_start: None,
        retry: VecDeque::new(),
        next_recovery: Instant::now(),
        new: 0,
        updated: 0,
    };
    loop {
        let deadline = sink.deadline();
        let got = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(mut ev) => {
                match &mut ev {
                    AlertEvent::New(a) => {
                        privacy.apply(a);
                        warn!(
                            kind = a.kind.as_str(),
                            src = ?a.src_ip,
                            dest = ?a.dest_ip,
                            src_mac = ?a.src_mac,
                            "{}",
                            a.description
                        );
                    }
                    AlertEvent::Updated(a) => privacy.apply(a),
                }
                sink.event(ev);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        sink.due();
    }
    sink.shutdown();
    (sink.new, sink.updated)
}

/// One alert write: a new alert (with the store id it was given, if it was written before
/// and may have reached the disk), or the latest state of an alert stored before.
#[derive(Debug)]
enum Write {
    New {
        engine: EngineId,
        sid: Option<u64>,
        alert: Alert,
    },
    Update {
        engine: EngineId,
        alert: Alert,
    },
}

impl Write {
    fn engine(&self) -> EngineId {
        match self {
            Write::New { engine, .. } | Write::Update { engine, .. } => *engine,
        }
    }
}

/// Copies the fields an update changes.
fn apply_update(stored: &mut Alert, a: &Alert) {
    stored.count = a.count;
    stored.last_seen = a.last_seen;
    stored.confidence = a.confidence;
    stored.severity = a.severity;
    stored.description.clone_from(&a.description);
    if a.explanation.is_some() {
        stored.explanation.clone_from(&a.explanation);
    }
    if a.resembles.is_some() {
        stored.resembles = a.resembles;
    }
}

struct Sink {
    store: Store,
    eve: Option<EveLog>,
    opts: SinkOptions,
    ids: IdMap,
    /// Written, waiting for the group's fsync.
    pending: Vec<Write>,
    /// When the first write of `pending` was made.
    group_start: Option<Instant>,
    /// Not written: the store failed. Updates of a queued new alert are merged into it.
    retry: VecDeque<Write>,
    next_recovery: Instant,
    new: u64,
    updated: u64,
}

impl Sink {
    /// Whether writes go to the retry queue instead of the store.
    fn failing(&self) -> bool {
        !self.retry.is_empty() || self.store.degraded()
    }

    /// When the loop must wake up without an event: the group's commit, the next recovery.
    fn deadline(&self) -> Option<Instant> {
        let commit = self.group_start.map(|t| t + self.opts.commit_interval);
        let recover = self.failing().then_some(self.next_recovery);
        commit.into_iter().chain(recover).min()
    }

    fn event(&mut self, ev: AlertEvent) {
        let w = match ev {
            AlertEvent::New(a) => Write::New {
                engine: (a.source, a.id),
                sid: None,
                alert: a,
            },
            AlertEvent::Updated(a) => Write::Update {
                engine: (a.source, a.id),
                alert: a,
            },
        };
        if self.failing() {
            self.enqueue(w);
        } else {
            self.write(w);
        }
    }

    /// Commits and recovers when it is time.
    fn due(&mut self) {
        let now = Instant::now();
        if self.pending.len() >= self.opts.commit_max
            || self
                .group_start
                .is_some_and(|t| now >= t + self.opts.commit_interval)
        {
            self.commit();
        }
        if self.failing() && now >= self.next_recovery {
            self.recover();
        }
    }

    /// Writes `w` (deferred: durable at the next commit); a storage failure sends it, and
    /// everything written since the last commit, to the retry queue.
    fn write(&mut self, w: Write) {
        let r = match &w {
            Write::New { sid, alert, .. } => self.insert(*sid, alert).map(Some),
            Write::Update { engine, alert } => {
                let Some(sid) = self.ids.get(engine) else {
                    // Never stored, or its id was forgotten (evicted, deleted meanwhile).
                    debug!(?engine, "update of an alert the sink does not know dropped");
                    return;
                };
                self.store
                    .update_deferred(sid, |s| apply_update(s, alert))
                    .map(|_| None)
            }
        };
        match (r, w) {
            (Ok(Some(sid)), Write::New { engine, alert, .. }) => {
                self.ids.insert(engine, sid);
                self.push_pending(Write::New {
                    engine,
                    sid: Some(sid),
                    alert,
                });
            }
            (Ok(_), w) => self.push_pending(w),
            (Err(StoreError::NotFound(id)), w) => {
                // Deleted meanwhile (retention, or forgotten on request): stays deleted.
                debug!(id, "update of a deleted alert dropped");
                self.ids.remove(&w.engine());
            }
            (Err(e), w) => {
                if self.store.note_error(&e) {
                    self.fail(&e);
                    self.enqueue(w);
                } else {
                    error!(error = %e, "storing an alert failed; dropped");
                    self.store.note_dropped(1);
                }
            }
        }
    }

    /// Inserts a new alert, unless it was given store id `sid` before a failure and is on
    /// disk under that id after all.
    fn insert(&self, sid: Option<u64>, alert: &Alert) -> Result<u64, StoreError> {
        if let Some(sid) = sid
            && let Some(stored) = self.store.get(sid)?
            && stored.kind == alert.kind
            && stored.first_seen == alert.first_seen
            && stored.src_ip == alert.src_ip
        {
            self.store
                .update_deferred(sid, |s| apply_update(s, alert))?;
            return Ok(sid);
        }
        self.store.insert_deferred(alert.clone())
    }

    fn push_pending(&mut self, w: Write) {
        self.group_start.get_or_insert_with(Instant::now);
        self.pending.push(w);
        if self.pending.len() >= self.opts.commit_max {
            self.commit();
        }
    }

    /// One fsync for every pending write, then the acknowledgements (EVE line, metrics) and
    /// the size cap. On failure the pending writes go to the retry queue.
    fn commit(&mut self) -> bool {
        self.group_start = None;
        if self.pending.is_empty() {
            return true;
        }
        if let Err(e) = self.store.commit() {
            self.store.note_error(&e);
            self.fail(&e);
            return false;
        }
        for w in std::mem::take(&mut self.pending) {
            match w {
                Write::New { sid, mut alert, .. } => {
                    alert.id = sid.expect("pending new alerts have a store id");
                    if let Some(log) = self.eve.as_mut() {
                        log.write(&alert);
                    }
                    telemetry::record_alert(alert.kind, alert.source);
                    self.new += 1;
                }
                Write::Update { .. } => self.updated += 1,
            }
        }
        match self.store.enforce_cap() {
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "enforcing the store's size cap failed");
                self.store.note_error(&e);
            }
        }
        true
    }

    /// The store failed: what waits for a commit goes to the retry queue (in order, before
    /// anything queued later).
    fn fail(&mut self, e: &StoreError) {
        if self.retry.is_empty() {
            error!(error = %e, "alert store failing: alerts are queued for a retry");
        }
        self.group_start = None;
        let pending = std::mem::take(&mut self.pending);
        for w in pending.into_iter().rev() {
            self.retry.push_front(w);
        }
        self.trim_retry();
        self.next_recovery = Instant::now() + RECOVERY_INTERVAL;
        self.store.set_queued(self.retry.len() as u64);
    }

    /// Queues `w` for the retry; an update of a queued alert is merged into it.
    fn enqueue(&mut self, w: Write) {
        if let Write::Update { engine, alert } = &w {
            for q in self.retry.iter_mut().rev() {
                match q {
                    Write::New {
                        engine: e,
                        alert: a,
                        ..
                    } if e == engine => {
                        apply_update(a, alert);
                        return;
                    }
                    Write::Update {
                        engine: e,
                        alert: a,
                        ..
                    } if e == engine => {
                        *a = alert.clone();
                        return;
                    }
                    _ => {}
                }
            }
        }
        self.retry.push_back(w);
        self.trim_retry();
        self.store.set_queued(self.retry.len() as u64);
    }

    /// Drops the newest writes beyond the retry cap (the start of an incident is the most
    /// telling part), counted.
    fn trim_retry(&mut self) {
        let cap = self.opts.retry_cap;
        if self.retry.len() > cap {
            let n = self.retry.len() - cap;
            self.retry.truncate(cap);
            self.store.note_dropped(n as u64);
            warn!(
                dropped = n,
                "alert retry queue full: alerts dropped while the store fails"
            );
        }
    }

    /// Reopens the store and writes the retry queue again, one group.
    fn recover(&mut self) {
        self.next_recovery = Instant::now() + RECOVERY_INTERVAL;
        if let Err(e) = self.store.reopen() {
            self.store.note_error(&e);
            debug!(error = %e, "alert store still failing");
            return;
        }
        let queued = self.retry.len();
        let retry = std::mem::take(&mut self.retry);
        // Written one by one as usual; a new failure puts the rest back behind `pending`.
        let mut rest = retry.into_iter();
        for w in rest.by_ref() {
            if !self.retry.is_empty() {
                self.retry.push_back(w);
                continue;
            }
            self.write(w);
        }
        if self.retry.is_empty()
            && self.commit()
            && let Some(outage) = self.store.note_recovered()
        {
            info!(
                written = queued,
                outage_ms = outage.as_millis() as u64,
                "alert store recovered: queued alerts written"
            );
        }
        self.store.set_queued(self.retry.len() as u64);
    }

    /// End of input: commit, one last recovery when the store fails, and what still cannot
    /// be written is dropped (counted).
    fn shutdown(&mut self) {
        self.commit();
        if self.failing() {
            self.recover();
        }
        if !self.retry.is_empty() {
            error!(
                dropped = self.retry.len(),
                "alert store still failing at shutdown: queued alerts lost"
            );
            self.store.note_dropped(self.retry.len() as u64);
            self.retry.clear();
            self.store.set_queued(0);
        }
    }
}

/// Detector id → store id, bounded: beyond `cap` entries the least recently touched quarter
/// is forgotten (updates of an incident keep its entry fresh; closed incidents get none).
pub struct IdMap {
    map: HashMap<EngineId, (u64, u64)>,
    tick: u64,
    cap: usize,
    evicted: u64,
}

impl IdMap {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            tick: 0,
            cap: cap.max(4),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Ids forgotten so far because the map was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The store id of `k`, marking it used.
    pub fn get(&mut self, k: &EngineId) -> Option<u64> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(k).map(|(sid, t)| {
            *t = tick;
            *sid
        })
    }

    pub fn insert(&mut self, k: EngineId, sid: u64) {
        self.tick += 1;
        self.map.insert(k, (sid, self.tick));
        if self.map.len() > self.cap {
            let mut ticks: Vec<u64> = self.map.values().map(|&(_, t)| t).collect();
            let cut = self.map.len() - self.cap * 3 / 4;
            let (_, &mut nth, _) = ticks.select_nth_unstable(cut - 1);
            let before = self.map.len();
            self.map.retain(|_, &mut (_, t)| t > nth);
            self.evicted += (before - self.map.len()) as u64;
            debug!(
                forgotten = before - self.map.len(),
                "sink id map full: least recently used ids forgotten"
            );
        }
    }

    pub fn remove(&mut self, k: &EngineId) {
        self.map.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, AlertKind, Severity, Timestamp};

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }
    use crate::config::PrivacyConfig;
    use crate::privacy::IpMode;

    fn alert(id: u64, count: u64) -> Alert {
        Alert {
            id,
            timestamp: ts("2024-05-01T12:00:00Z"),
            source: AlertSource::Dfa,
            kind: AlertKind::PORT_SCAN,
            severity: Severity::Medium,
            confidence: 1.0,
            src_ip: Some("198.51.100.7".parse().unwrap()),
            src_port: Some(4000),
            dest_ip: Some("192.0.2.1".parse().unwrap()),
            dest_port: Some(22),
            proto: "tcp".into(),
            src_mac: None,
            first_seen: ts("2024-05-01T12:00:00Z"),
            last_seen: ts("2024-05-01T12:00:00Z"),
            count,
            description: format!("port scan of 192.0.2.1 from 198.51.100.7 ({count})"),
            community_id: Some("1:x=".into()),
            tunnel: None,
            explanation: None,
            resembles: None,
            features: vec![],
        }
    }

    #[test]
    fn stores_the_anonymised_form_and_a_deleted_alert_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let policy = Policy::new(
            &PrivacyConfig {
                ip_mode: IpMode::Truncate,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let (tx, rx) = mpsc::sync_channel(16);
        tx.send(AlertEvent::New(alert(1, 1))).unwrap();
        tx.send(AlertEvent::Updated(alert(1, 5))).unwrap();
        drop(tx);
        assert_eq!(run_sink(store.clone(), rx, &policy), (1, 1));
        let stored = store.get(1).unwrap().unwrap();
        assert_eq!(stored.src_ip, Some("198.51.100.0".parse().unwrap()));
        assert_eq!(stored.dest_ip, Some("192.0.2.0".parse().unwrap()));
        assert_eq!(
            stored.description,
            "port scan of 192.0.2.0 from 198.51.100.0 (5)"
        );
        assert_eq!(stored.community_id, None);
        assert_eq!(stored.count, 5);

        // Deleted (forgotten) between two updates of the same incident: not recreated.
        let (tx, rx) = mpsc::sync_channel(16);
        let p = policy.clone();
        let s = store.clone();
        let sink = std::thread::spawn(move || run_sink(s, rx, &p));
        tx.send(AlertEvent::New(alert(2, 1))).unwrap();
        while store.get(2).unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(store.delete_matching(|a| a.id == 2).unwrap().alerts, 1);
        tx.send(AlertEvent::Updated(alert(2, 7))).unwrap();
        tx.send(AlertEvent::Updated(alert(2, 8))).unwrap();
        drop(tx);
        assert_eq!(sink.join().unwrap(), (1, 0));
        assert_eq!(store.get(2).unwrap(), None);
        assert_eq!(store.get_archived(2).unwrap(), None);
    }

    #[test]
    fn the_id_map_forgets_the_least_recently_used_ids_beyond_its_cap() {
        let mut m = IdMap::new(100);
        for i in 0..100 {
            m.insert((AlertSource::Dfa, i), 1000 + i);
        }
        // Incident 0 keeps getting updates: it stays.
        assert_eq!(m.get(&(AlertSource::Dfa, 0)), Some(1000));
        m.insert((AlertSource::Ann, 1), 5000);
        assert_eq!(m.len(), 75);
        assert_eq!(m.evicted(), 26);
        assert_eq!(m.get(&(AlertSource::Dfa, 0)), Some(1000));
        assert_eq!(m.get(&(AlertSource::Ann, 1)), Some(5000));
        assert_eq!(m.get(&(AlertSource::Dfa, 1)), None);
        assert_eq!(m.get(&(AlertSource::Dfa, 99)), Some(1099));
        for i in 0..100_000 {
            m.insert((AlertSource::Ann, 10 + i), i);
            assert!(m.len() <= 100);
        }
    }
}
