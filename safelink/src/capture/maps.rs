//! Typed access to the XDP program's maps: per-CPU counters and per-CPU flow slots, merged into
//! one value each (exact counts whichever CPUs a flow's packets landed on).
use std::path::Path;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
};
use safelink_common::{FlowKey, FlowStats, MAP_FLOWS, MAP_STATS, Stats, flow::merge};

use crate::table::Counters;

pub struct SensorMaps {
    flows: PerCpuHashMap<MapData, FlowKey, FlowStats>,
    stats: PerCpuArray<MapData, Stats>,
}

impl SensorMaps {
    /// Takes `FLOWS` and `STATS` out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let flows = ebpf.take_map(MAP_FLOWS).context("map FLOWS missing")?;
        let stats = ebpf.take_map(MAP_STATS).context("map STATS missing")?;
        Ok(Self {
            flows: PerCpuHashMap::try_from(flows)?,
            stats: PerCpuArray::try_from(stats)?,
        })
    }

    /// Opens the maps pinned by a running (or stopped) sensor.
    pub fn open_pinned(dir: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| {
            let p = dir.join(name);
            MapData::from_pin(&p).with_context(|| {
                format!(
                    "cannot open pinned map {} (has `safelink run` been started?)",
                    p.display()
                )
            })
        };
        Ok(Self {
            flows: PerCpuHashMap::try_from(Map::PerCpuLruHashMap(open(MAP_FLOWS)?))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(MAP_STATS)?))?,
        })
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut c = Counters::default();
        for cpu in self.stats.get(&0, 0)?.iter() {
            for (sum, v) in c.0.iter_mut().zip(cpu.as_array()) {
                *sum += v;
            }
        }
        Ok(c)
    }

    /// Every flow in the map with its per-CPU slots merged.
    pub fn flows(&self) -> anyhow::Result<Vec<(FlowKey, FlowStats)>> {
        let mut out = Vec::new();
        for item in self.flows.iter() {
            // A flow evicted while iterating is simply skipped.
            let Ok((k, per_cpu)) = item else { continue };
            let mut s = FlowStats::default();
            for slot in per_cpu.iter() {
                merge(&mut s, slot);
            }
            out.push((k, s));
        }
        Ok(out)
    }

    /// The raw per-CPU slots of one flow (index = CPU).
    pub fn flow_slots(&self, key: &FlowKey) -> anyhow::Result<Vec<FlowStats>> {
        Ok(self.flows.get(key, 0)?.iter().copied().collect())
    }

    pub fn remove(&mut self, key: &FlowKey) {
        // Already gone (LRU eviction) is fine.
        let _ = self.flows.remove(key);
    }
}
