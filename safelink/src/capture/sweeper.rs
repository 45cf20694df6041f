//! Periodic sweep of the kernel flow map: flows that are idle, too old or closed (per
//! [`crate::expiry`]) are removed and become [`FlowRecord`]s; running heavy flows become
//! interim updates ([`Record::FlowUpdate`], per [`Interim`]). Then the outer flows of tunnels
//! (`OUTER_FLOWS`) that are idle or too old are removed and become [`OuterFlowRecord`]s.
use safelink_common::{Counter, FlowStats};

use super::maps::SensorMaps;
use crate::{
    config::FlowTimeouts,
    expiry::{EndReason, Interim, expired, outer_expired},
    record::{FlowRecord, OuterFlowRecord, Record},
};

/// Running totals of the sweeper.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SweepStats {
    pub exported: u64,
    pub active: u64,
    /// Flows the kernel created that were neither exported nor are still in the map: evicted by
    /// the LRU map when full (an estimate: flows present at start-up are counted as exported).
    pub lru_evicted_estimate: u64,
    /// Interim updates of running heavy flows sent.
    pub interim_updates: u64,
    /// Outer flows of tunnels exported, and still in the map after the last sweep.
    pub outer_exported: u64,
    pub outer_active: u64,
}

/// One pass: removes finished flows and returns their records, then the interim updates of
/// running heavy flows.
pub fn sweep_once(
    maps: &mut SensorMaps,
    t: &FlowTimeouts,
    interim: &mut Interim,
    now_mono_ns: u64,
    epoch_offset_ns: i64,
    stats: &mut SweepStats,
) -> anyhow::Result<Vec<Record>> {
    // Only the flows that end or report are copied out of the walk.
    let mut done: Vec<(safelink_common::FlowKey, FlowStats, _)> = Vec::new();
    let mut running = Vec::new();
    interim.begin_sweep();
    let walked = maps.for_each_flow(|k, s| match expired(t, k, s, now_mono_ns) {
        Some(r) => done.push((*k, *s, r)),
        None if interim.due(t, k, s) => running.push((*k, *s)),
        None => {}
    })?;
    interim.end_sweep();
    done.sort_by_key(|(k, s, _)| (s.first_ns, *k));
    running.sort_by_key(|(k, s)| (s.first_ns, *k));
    let ended = done.len();
    let mut out = Vec::with_capacity(done.len() + running.len());
    for (k, s, reason) in done {
        maps.remove(&k);
        out.push(Record::Flow(FlowRecord::new(
            &k,
            &s,
            epoch_offset_ns,
            reason,
        )));
    }
    stats.interim_updates += running.len() as u64;
    out.extend(running.into_iter().map(|(k, s)| {
        Record::FlowUpdate(FlowRecord::new(&k, &s, epoch_offset_ns, EndReason::Open))
    }));
    stats.exported += ended as u64;
    stats.active = (walked - ended) as u64;
    let mut outer = Vec::new();
    let walked = maps.for_each_outer(|k, s| {
        if let Some(r) = outer_expired(t, s, now_mono_ns) {
            outer.push((*k, *s, r));
        }
    })?;
    outer.sort_by_key(|(k, s, _)| (s.first_ns, *k));
    stats.outer_active = (walked - outer.len()) as u64;
    for (k, s, reason) in outer {
        maps.remove_outer(&k);
        if let Some(r) = OuterFlowRecord::new(&k, &s, epoch_offset_ns, reason) {
            stats.outer_exported += 1;
            out.push(Record::OuterFlow(r));
        }
    }
    let created = maps.counters()?.get(Counter::FlowsCreated);
    stats.lru_evicted_estimate = created.saturating_sub(stats.exported + stats.active);
    Ok(out)
}
