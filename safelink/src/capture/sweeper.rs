//! Periodic sweep of the kernel flow map: flows that are idle, too old or closed (per
//! [`crate::expiry`]) are removed and become [`FlowRecord`]s.
use safelink_common::{Counter, FlowStats};

use super::maps::SensorMaps;
use crate::{config::FlowTimeouts, expiry::expired, record::FlowRecord};

/// Running totals of the sweeper.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SweepStats {
    pub exported: u64,
    pub active: u64,
    /// Flows the kernel created that were neither exported nor are still in the map: evicted by
    /// the LRU map when full (an estimate: flows present at start-up are counted as exported).
    pub lru_evicted_estimate: u64,
}

/// One pass: removes finished flows and returns their records.
pub fn sweep_once(
    maps: &mut SensorMaps,
    t: &FlowTimeouts,
    now_mono_ns: u64,
    epoch_offset_ns: i64,
    stats: &mut SweepStats,
) -> anyhow::Result<Vec<FlowRecord>> {
    let flows = maps.flows()?;
    let mut done: Vec<(safelink_common::FlowKey, FlowStats, _)> = flows
        .iter()
        .filter_map(|(k, s)| expired(t, k, s, now_mono_ns).map(|r| (*k, *s, r)))
        .collect();
    done.sort_by_key(|(_, s, _)| s.first_ns);
    let mut out = Vec::with_capacity(done.len());
    for (k, s, reason) in done {
        maps.remove(&k);
        out.push(FlowRecord::new(&k, &s, epoch_offset_ns, reason));
    }
    stats.exported += out.len() as u64;
    stats.active = (flows.len() - out.len()) as u64;
    let created = maps.counters()?.get(Counter::FlowsCreated);
    stats.lru_evicted_estimate = created.saturating_sub(stats.exported + stats.active);
    Ok(out)
}
