//! The fleet learner (`safelink learner --fleet URL --signing-key FILE`): samples of every
//! sensor in, a signed model out.
//!
//! 1. Holds the [`Lease`] (waits while another learner holds it).
//! 2. Reads the samples stream through a durable pull consumer (a restart resumes where it
//!    stopped). Each message is recorded by its `Nats-Msg-Id` in its own sled database before
//!    it is acknowledged, so a message redelivered after a crash is recognised and dropped as
//!    a duplicate (counted, as are the redeliveries the server reports).
//! 3. Every `cycle_every`, with at least `min_samples` waiting: one flow reported twice keeps
//!    its strongest label (an operator's verdict outranks a rule's, which outranks the ANN's);
//!    no sensor contributes more than max(1/k, 20 %) of the cycle's samples ([`cap_shares`]);
//!    the samples go into the learner's store and the single-host cycle runs (training from
//!    the current weights, held-out and golden-set validation). A cycle of several sensors
//!    that is refused runs again without each of the [`RETRY_WITHOUT`] largest contributors
//!    in turn, and the first that deploys is kept: one sensor sending poisoned labels costs
//!    its own samples, not the fleet's cycle.
//! 4. A deployed model is published: renew the lease (compare-and-swap; a lost lease stops
//!    here), take the next version with a create-if-absent `v<N>` key, sign the manifest with
//!    the lease revision stamped in, put the file in the object store (history) and the
//!    bundle on the `canary` channel.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, kv::CreateErrorKind};
use ed25519_dalek::SigningKey;
use futures_util::StreamExt as _;
use serde::Serialize;
use tracing::{info, warn};

use super::connect::{self, Layout};
use super::lease::{Lease, LeaseError};
use super::manifest::{Bundle, GoldenResult, Manifest};
use super::{Channel, FleetError, FleetSection, names};
use crate::learn::{LabelSource, Learner, Outcome, TrainingSample};
use crate::store::Store;

/// A delivered sample not acknowledged within this long (the learner died) is delivered
/// again; the learner acknowledges each as soon as it is recorded.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// How the learner runs.
#[derive(Clone, Debug)]
pub struct LearnerOptions {
    pub url: String,
    pub fleet: FleetSection,
    pub learner_id: String,
    pub data_dir: PathBuf,
    pub cycle_every: Duration,
    pub min_samples: usize,
    pub lease_ttl: Duration,
    /// How long a published manifest stays valid.
    pub valid_for: time::Duration,
    /// Stop after this many published models (tests, benchmarks); 0 = run until stopped.
    pub max_publications: u64,
}

/// What the learner has seen, for its log lines and `fleet models`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LearnerCounters {
    /// Messages received (including redeliveries).
    pub received: u64,
    /// Distinct messages kept.
    pub unique: u64,
    /// Messages recognised by their id as already kept.
    pub duplicates: u64,
    /// Messages the server marked as redelivered.
    pub redelivered: u64,
    /// Malformed messages (acknowledged, skipped).
    pub malformed: u64,
    /// Samples left out of a cycle by the per-sensor cap.
    pub capped: u64,
    /// Second reports of one flow (the strongest label kept).
    pub same_flow: u64,
}

/// The most each sensor may contribute: with `k` sensors, at most max(1/k, 20 %) of the
/// cycle's total, the total being what remains after the cap (found by iterating down).
pub fn cap_shares<K: Ord + Clone>(counts: &BTreeMap<K, usize>) -> BTreeMap<K, usize> {
    let k = counts.len().max(1);
    let f = (1.0 / k as f64).max(0.2);
    let mut n: usize = counts.values().sum();
    loop {
        let cap = ((f * n as f64).floor() as usize).max(1);
        let n2: usize = counts.values().map(|&c| c.min(cap)).sum();
        if n2 >= n {
            return counts
                .iter()
                .map(|(s, &c)| (s.clone(), c.min(cap)))
                .collect();
        }
        n = n2;
    }
}

fn label_rank(s: &TrainingSample) -> u8 {
    match s.source {
        // An operator's verdict outranks every automatic label.
        LabelSource::Operator => 4,
        LabelSource::Manual => 3,
        LabelSource::Dfa => 2,
        LabelSource::AnnHigh | LabelSource::AnnLow | LabelSource::Baseline => 1,
    }
}

type FlowKey = (u64, std::net::IpAddr, u16, std::net::IpAddr, u16, u8);

fn flow_key(s: &TrainingSample) -> FlowKey {
    (s.ts_ns, s.src_ip, s.src_port, s.dst_ip, s.dst_port, s.proto)
}

/// Picks a cycle's samples from what each sensor sent (module doc, step 3), leaving out the
/// samples of sensor `without` when given (a refused cycle's retry) as if it had sent none.
/// Borrows `pending` and clones only the samples it keeps, in `pending`'s order. Returns the
/// samples and how many the cap and the same-flow rule left out.
pub fn select(
    pending: &[(String, TrainingSample)],
    without: Option<&str>,
) -> (Vec<TrainingSample>, u64, u64) {
    let considered = |sensor: &str| without != Some(sensor);
    let n_in = pending.iter().filter(|(s, _)| considered(s)).count();
    // One flow seen by two sensors (or reported twice): the strongest label wins.
    let mut best: HashMap<FlowKey, usize> = HashMap::new();
    let mut keep: Vec<bool> = pending.iter().map(|(s, _)| considered(s)).collect();
    for (i, (_, s)) in pending.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        match best.get(&flow_key(s)) {
            Some(&j) if label_rank(&pending[j].1) >= label_rank(s) => keep[i] = false,
            Some(&j) => {
                keep[j] = false;
                best.insert(flow_key(s), i);
            }
            None => {
                best.insert(flow_key(s), i);
            }
        }
    }
    let same_flow = (n_in - keep.iter().filter(|k| **k).count()) as u64;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ((sensor, _), k) in pending.iter().zip(&keep) {
        if *k {
            *counts.entry(sensor.as_str()).or_default() += 1;
        }
    }
    let caps = cap_shares(&counts);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for ((sensor, s), k) in pending.iter().zip(keep) {
        if !k {
            continue;
        }
        let t = taken.entry(sensor.as_str()).or_default();
        if *t < caps[sensor.as_str()] {
            *t += 1;
            out.push(s.clone());
        }
    }
    let capped = (n_in as u64) - same_flow - out.len() as u64;
    (out, capped, same_flow)
}

/// How many of the largest contributors a refused cycle is retried without, one at a time.
pub const RETRY_WITHOUT: usize = 3;

/// The `n` sensors that sent most of `pending`, most first (ties by name).
fn largest_contributors(pending: &[(String, TrainingSample)], n: usize) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (s, _) in pending {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().take(n).map(|(s, _)| s.to_string()).collect()
}

/// Runs the single-host cycle on what the store holds; `None` (logged) when it could not run.
async fn fleet_cycle(
    learner: &Learner,
    n_pending: usize,
) -> anyhow::Result<Option<crate::learn::CycleRecord>> {
    let l2 = learner.clone();
    match tokio::task::spawn_blocking(move || l2.run_cycle_here("fleet")).await? {
        Ok(r) => Ok(Some(r.record)),
        Err(e) => {
            warn!(error = %e, "fleet cycle not run");
            emit(
                serde_json::json!({"event": "cycle", "error": e.to_string(), "pending": n_pending}),
            );
            Ok(None)
        }
    }
}

/// The learner's own bookkeeping (sled, `<data_dir>/fleet-learner`): ids seen, samples
/// waiting for a cycle, counters.
struct Inbox {
    seen: sled::Tree,
    pending: sled::Tree,
    meta: sled::Tree,
    db: sled::Db,
}

impl Inbox {
    fn open(dir: &std::path::Path) -> Result<Inbox, sled::Error> {
        let db = sled::open(dir)?;
        Ok(Inbox {
            seen: db.open_tree("seen")?,
            pending: db.open_tree("pending")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    fn counters(&self) -> LearnerCounters {
        self.meta
            .get("counters")
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .map(|c: CountersDisk| c.0)
            .unwrap_or_default()
    }

    fn save_counters(&self, c: &LearnerCounters) -> Result<(), sled::Error> {
        self.meta.insert(
            "counters",
            serde_json::to_vec(&CountersDisk(c.clone())).expect("json"),
        )?;
        Ok(())
    }
}

#[derive(Serialize, serde::Deserialize)]
struct CountersDisk(#[serde(with = "counters_serde")] LearnerCounters);

mod counters_serde {
    use super::LearnerCounters;
    pub fn serialize<S: serde::Serializer>(c: &LearnerCounters, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(
            &[
                c.received,
                c.unique,
                c.duplicates,
                c.redelivered,
                c.malformed,
                c.capped,
                c.same_flow,
            ],
            s,
        )
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<LearnerCounters, D::Error> {
        let v: [u64; 7] = serde::Deserialize::deserialize(d)?;
        Ok(LearnerCounters {
            received: v[0],
            unique: v[1],
            duplicates: v[2],
            redelivered: v[3],
            malformed: v[4],
            capped: v[5],
            same_flow: v[6],
        })
    }
}

/// One line on stdout per event (tests and operators read them; the log has the same).
fn emit(v: serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Takes the next free version number: `v<N>` keys are created only if absent.
pub async fn claim_version(
    layout: &Layout,
    bundle_for: impl Fn(u64) -> Vec<u8>,
) -> Result<u64, FleetError> {
    let mut v = latest_version(layout).await? + 1;
    loop {
        match layout
            .models
            .create(names::version_key(v), bundle_for(v).into())
            .await
        {
            Ok(_) => return Ok(v),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => v += 1,
            Err(e) => return Err(FleetError::nats(e)),
        }
    }
}

/// The highest published version (0: none).
pub async fn latest_version(layout: &Layout) -> Result<u64, FleetError> {
    let mut max = 0;
    for k in connect::bucket_keys(&layout.models).await? {
        if let Some(n) = k.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// Puts a bundle on a channel.
pub async fn put_channel(layout: &Layout, ch: Channel, bundle: &[u8]) -> Result<(), FleetError> {
    layout
        .models
        .put(ch.as_str(), bundle.to_vec().into())
        .await
        .map_err(FleetError::nats)?;
    Ok(())
}

/// Who signs, for which fleet, for how long.
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    pub fleet_id: &'a str,
    pub key: &'a SigningKey,
    /// How long a manifest stays valid.
    pub valid_for: time::Duration,
}

/// Signs `model` as a new version and publishes it (module doc, step 4). `fill` completes the
/// manifest (parent, metrics, ...). Returns the version.
pub async fn publish_model(
    layout: &Layout,
    signer: Signer<'_>,
    model: &[u8],
    lease_revision: u64,
    channels: &[Channel],
    fill: impl Fn(&mut Manifest),
) -> Result<(u64, Manifest), FleetError> {
    let Signer {
        fleet_id,
        key,
        valid_for,
    } = signer;
    let make = |v: u64| {
        let mut m = Manifest::for_model(fleet_id, v, model, &key.verifying_key(), valid_for);
        m.parent_version = v.checked_sub(1).filter(|p| *p > 0);
        m.lease_revision = lease_revision;
        fill(&mut m);
        m
    };
    let version = claim_version(layout, |v| Bundle::sign(make(v), model, key).to_bytes()).await?;
    let m = make(version);
    // The claimed key holds the bundle signed when it was claimed; the channels get the same.
    let stored = layout
        .models
        .get(names::version_key(version))
        .await
        .map_err(FleetError::nats)?
        .ok_or_else(|| FleetError::Nats(format!("v{version} vanished")))?;
    match connect::model_files(&layout.js).await {
        Ok(files) => {
            let mut r: &[u8] = model;
            if let Err(e) = files.put(format!("v{version}.onnx").as_str(), &mut r).await {
                warn!(error = %e, "model file not kept in the object store");
            }
        }
        Err(e) => warn!(error = %e, "no object store for model files"),
    }
    for ch in channels {
        put_channel(layout, *ch, &stored).await?;
    }
    Ok((version, m))
}

/// Runs the learner until stopped (Ctrl-C) or `max_publications`.
pub async fn run(
    opts: LearnerOptions,
    key: SigningKey,
    learner: Learner,
    store: Store,
) -> anyhow::Result<LearnerCounters> {
    let client = connect::connect_now(
        &opts.url,
        &opts.fleet,
        &format!("safelink-learner-{}", opts.learner_id),
    )
    .await?;
    let layout = connect::ensure_layout(&client).await?;
    // 1. The lease.
    let mut lease = loop {
        match Lease::acquire(layout.lease.clone(), &opts.learner_id, opts.lease_ttl).await {
            Ok(l) => break l,
            Err(LeaseError::Held { holder, expires }) => {
                info!(holder, expires, "another learner holds the lease; waiting");
                emit(serde_json::json!({"event": "waiting", "holder": holder}));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    info!(revision = lease.revision(), "learner lease held");
    emit(
        serde_json::json!({"event": "lease", "revision": lease.revision(), "holder": lease.holder()}),
    );
    // 2. The durable consumer.
    let stream = layout
        .js
        .get_stream(names::SAMPLES_STREAM)
        .await
        .map_err(FleetError::nats)?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            names::LEARNER_CONSUMER,
            pull::Config {
                durable_name: Some(names::LEARNER_CONSUMER.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(FleetError::nats)?;
    let inbox = Inbox::open(&opts.data_dir.join("fleet-learner"))?;
    let mut c = inbox.counters();
    let mut last_cycle = Instant::now();
    let mut last_renew = Instant::now();
    let mut published = 0u64;
    loop {
        // Keep the lease while reading.
        if last_renew.elapsed() >= opts.lease_ttl / 3 {
            lease.renew().await?;
            last_renew = Instant::now();
        }
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(FleetError::nats)?;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "fetching samples");
                    break;
                }
            };
            c.received += 1;
            if m.info().is_ok_and(|i| i.delivered > 1) {
                c.redelivered += 1;
            }
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| format!("seq.{}", m.info().map_or(0, |i| i.stream_sequence)));
            let sensor = m
                .subject
                .as_str()
                .strip_prefix("safelink.samples.")
                .unwrap_or("?")
                .to_string();
            if inbox.seen.contains_key(id.as_bytes())? {
                c.duplicates += 1;
            } else {
                match serde_json::from_slice::<TrainingSample>(&m.payload) {
                    Ok(s) if s.valid() => {
                        let key = format!("{sensor}\u{0}{id}");
                        let mut b = sled::Batch::default();
                        b.insert(key.as_bytes(), serde_json::to_vec(&s).expect("json"));
                        inbox.pending.apply_batch(b)?;
                        inbox.seen.insert(id.as_bytes(), &[])?;
                        c.unique += 1;
                    }
                    _ => {
                        inbox.seen.insert(id.as_bytes(), &[])?;
                        c.malformed += 1;
                    }
                }
            }
            inbox.save_counters(&c)?;
            inbox.db.flush_async().await?;
            if let Err(e) = m.ack().await {
                warn!(error = %e, "ack failed (the message will come again, recognised by its id)");
            }
        }
        // 3. A cycle when due.
        if last_cycle.elapsed() < opts.cycle_every || inbox.pending.len() < opts.min_samples {
            continue;
        }
        last_cycle = Instant::now();
        let mut pending = Vec::new();
        for kv in inbox.pending.iter() {
            let (k, v) = kv?;
            let sensor = String::from_utf8_lossy(&k)
                .split('\u{0}')
                .next()
                .unwrap_or("?")
                .to_string();
            if let Ok(s) = serde_json::from_slice::<TrainingSample>(&v) {
                pending.push((sensor, s));
            }
        }
        let n_pending = pending.len();
        let sensors: std::collections::BTreeSet<String> = pending
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let suspects = largest_contributors(&pending, RETRY_WITHOUT);
        let (samples, capped, same_flow) = select(&pending, None);
        // Kept (not copied) for the retries only when several sensors contributed.
        let retry_pool = (sensors.len() > 1).then_some(pending);
        c.capped += capped;
        c.same_flow += same_flow;
        store.insert_samples(&samples)?;
        inbox.pending.clear()?;
        inbox.save_counters(&c)?;
        inbox.db.flush_async().await?;
        let Some(mut rec) = fleet_cycle(&learner, n_pending).await? else {
            continue;
        };
        emit(serde_json::json!({
            "event": "cycle", "outcome": rec.outcome.as_str(), "reason": rec.reason,
            "pending": n_pending, "trained_on": samples.len(), "capped": capped,
            "same_flow": same_flow, "sensors": sensors, "counters": c,
        }));
        // A refused cycle of several sensors: once more without each of the largest
        // contributors in turn (module doc, step 3).
        if rec.outcome != Outcome::Deployed
            && let Some(pool) = &retry_pool
        {
            for suspect in &suspects {
                let (samples, _, _) = select(pool, Some(suspect));
                store.insert_samples(&samples)?;
                let Some(retry) = fleet_cycle(&learner, n_pending).await? else {
                    break;
                };
                emit(serde_json::json!({
                    "event": "cycle", "retry_without": suspect,
                    "outcome": retry.outcome.as_str(), "reason": retry.reason,
                    "trained_on": samples.len(),
                }));
                if retry.outcome == Outcome::Deployed {
                    warn!(sensor = %suspect, "a cycle refused with this sensor's samples deployed without them");
                    rec = retry;
                    break;
                }
            }
        }
        if rec.outcome != Outcome::Deployed {
            continue;
        }
        // 4. Publish.
        let Some(local) = rec.version.and_then(|v| store.version(v).ok().flatten()) else {
            continue;
        };
        let bytes = std::fs::read(opts.data_dir.join("models").join(&local.file))?;
        let revision = match lease.renew().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "lease lost: not publishing");
                emit(serde_json::json!({"event": "lease_lost", "error": e.to_string()}));
                return Err(e.into());
            }
        };
        last_renew = Instant::now();
        let metrics = rec.metrics.clone();
        let signer = Signer {
            fleet_id: &opts.fleet.fleet_id,
            key: &key,
            valid_for: opts.valid_for,
        };
        let (version, m) =
            publish_model(&layout, signer, &bytes, revision, &[Channel::Canary], |m| {
                m.metrics = metrics.as_ref().and_then(|x| serde_json::to_value(x).ok());
                m.golden = metrics.as_ref().and_then(|x| {
                    Some(GoldenResult {
                        before: x.golden_accuracy_before?,
                        after: x.golden_accuracy?,
                    })
                });
            })
            .await?;
        info!(version, sha256 = m.sha256, "model published on canary");
        emit(serde_json::json!({
            "event": "published", "version": version, "sha256": m.sha256,
            "lease_revision": revision, "channel": "canary",
            "at_unix_ms": (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64,
        }));
        published += 1;
        if opts.max_publications > 0 && published >= opts.max_publications {
            return Ok(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(v: &[(&str, usize)]) -> BTreeMap<String, usize> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn no_sensor_over_its_share() {
        // Three sensors: at most a third each.
        let c = cap_shares(&counts(&[("a", 100), ("b", 50), ("c", 10)]));
        assert_eq!(c, counts(&[("a", 10), ("b", 10), ("c", 10)]));
        // Ten sensors: at most 20 %; one noisy sensor cannot dominate.
        let mut v: Vec<(String, usize)> = (0..9).map(|i| (format!("s{i}"), 100)).collect();
        v.push(("noisy".into(), 100_000));
        let c = cap_shares(&v.iter().cloned().collect());
        let total: usize = c.values().sum();
        assert_eq!(c["s0"], 100);
        assert!(c["noisy"] as f64 <= 0.2 * total as f64, "{c:?}");
        assert_eq!(c["noisy"], 225);
        // One sensor alone keeps everything.
        assert_eq!(cap_shares(&counts(&[("a", 7)])), counts(&[("a", 7)]));
    }

    /// A sample of flow `port` (the flow's source port) from `sensor`, labelled by `source`.
    fn sample(sensor: &str, port: u16, source: LabelSource) -> (String, TrainingSample) {
        let s = TrainingSample {
            id: 0,
            ts_ns: 1_000,
            src_ip: "192.0.2.2".parse().unwrap(),
            src_port: port,
            dst_ip: "192.0.2.1".parse().unwrap(),
            dst_port: 22,
            proto: 6,
            label: 1.0,
            source,
            confidence: 1.0,
            score: 0.5,
            kind: None,
            features: vec![0.0; 4],
            baseline: false,
            alert_id: None,
        };
        (sensor.to_string(), s)
    }

    /// Grouped by sensor, as the inbox hands them out: a and b report flows 1 and 2 both
    /// (a's rule label beats b's ANN label on 1, b's operator verdict beats a's ANN label
    /// on 2), c one flow of its own.
    fn pending() -> Vec<(String, TrainingSample)> {
        vec![
            sample("a", 1, LabelSource::Dfa),
            sample("a", 2, LabelSource::AnnLow),
            sample("a", 3, LabelSource::AnnLow),
            sample("b", 1, LabelSource::AnnLow),
            sample("b", 4, LabelSource::Operator),
            sample("b", 2, LabelSource::Operator),
            sample("c", 5, LabelSource::AnnHigh),
        ]
    }

    fn flows(samples: &[TrainingSample]) -> Vec<(u16, LabelSource)> {
        samples.iter().map(|s| (s.src_port, s.source)).collect()
    }

    #[test]
    fn select_keeps_the_strongest_label_then_caps_each_sensor_in_order() {
        let pending = pending();
        let (out, capped, same_flow) = select(&pending, None);
        // Two second reports dropped; a, b and c keep 2, 2 and 1 flows, capped at 1 each
        // (a third of 5, then of 3), the first of each in pending's order.
        assert_eq!(same_flow, 2);
        assert_eq!(capped, 2);
        assert_eq!(
            flows(&out),
            [
                (1, LabelSource::Dfa),
                (4, LabelSource::Operator),
                (5, LabelSource::AnnHigh)
            ]
        );
        // Nothing in `pending` was taken or changed.
        assert_eq!(pending, self::pending());
    }

    #[test]
    fn select_without_a_sensor_is_select_of_the_others() {
        let pending = pending();
        for sensor in ["a", "b", "c", "nobody"] {
            let others: Vec<_> = pending
                .iter()
                .filter(|(s, _)| s != sensor)
                .cloned()
                .collect();
            assert_eq!(
                select(&pending, Some(sensor)),
                select(&others, None),
                "without {sensor}"
            );
        }
        // Without b its operator verdict no longer displaces a's label of flow 2, and no flow
        // is reported twice; a keeps 3 flows, c 1, capped at 1 each (half of 4, of 3, of 2).
        let (out, capped, same_flow) = select(&pending, Some("b"));
        assert_eq!((capped, same_flow), (2, 0));
        assert_eq!(
            flows(&out),
            [(1, LabelSource::Dfa), (5, LabelSource::AnnHigh)]
        );
    }
}
