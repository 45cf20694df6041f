//! Typed access to the XDP program's maps: per-CPU counters, the flows of `EMBRYOS` (young,
//! one shared value) and `FLOWS` (established, per-CPU slots), merged into one value each
//! (exact counts whichever CPUs a flow's packets landed on), and the outer flows of tunnels in
//! `OUTER_FLOWS` (per-CPU slots, merged the same way).
//!
//! Walking an LRU map while the kernel evicts from it can restart the walk (the kernel's
//! next-key of an evicted key is the first key): [`SensorMaps::for_each_flow`] bounds the walk
//! and hands each flow over once, as it reads it, so a sweep holds no copy of the whole table
//! (only a set of the keys seen, reused from walk to walk).
use std::{collections::HashMap, path::Path};

use rustc_hash::FxHashSet;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuHashMap},
};
use safelink_common::{
    FlowKey, FlowStats, MAP_EMBRYOS, MAP_FLOWS, MAP_OUTER_FLOWS, MAP_STATS, MAX_EMBRYOS, MAX_FLOWS,
    MAX_OUTER_FLOWS, MapKey, OuterStats, Stats, TunnelKey,
    flow::{merge, outer_merge},
};

use crate::table::Counters;

pub struct SensorMaps {
    flows: PerCpuHashMap<MapData, MapKey, FlowStats>,
    embryos: BpfHashMap<MapData, MapKey, FlowStats>,
    stats: PerCpuArray<MapData, Stats>,
    outer: PerCpuHashMap<MapData, TunnelKey, OuterStats>,
    /// Keys handed over by the current walk (kept allocated between walks).
    seen: FxHashSet<MapKey>,
}

impl SensorMaps {
    /// Takes `FLOWS`, `EMBRYOS`, `STATS` and `OUTER_FLOWS` out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let flows = ebpf.take_map(MAP_FLOWS).context("map FLOWS missing")?;
        let embryos = ebpf.take_map(MAP_EMBRYOS).context("map EMBRYOS missing")?;
        let stats = ebpf.take_map(MAP_STATS).context("map STATS missing")?;
        let outer = ebpf
            .take_map(MAP_OUTER_FLOWS)
            .context("map OUTER_FLOWS missing")?;
        Ok(Self {
            flows: PerCpuHashMap::try_from(flows)?,
            embryos: BpfHashMap::try_from(embryos)?,
            stats: PerCpuArray::try_from(stats)?,
            outer: PerCpuHashMap::try_from(outer)?,
            seen: FxHashSet::default(),
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
            embryos: BpfHashMap::try_from(Map::LruHashMap(open(MAP_EMBRYOS)?))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(MAP_STATS)?))?,
            outer: PerCpuHashMap::try_from(Map::PerCpuLruHashMap(open(MAP_OUTER_FLOWS)?))?,
            seen: FxHashSet::default(),
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

    /// Every flow of both maps, once each, with its per-CPU slots merged.
    pub fn flows(&mut self) -> anyhow::Result<Vec<(FlowKey, FlowStats)>> {
        let mut out = Vec::new();
        self.for_each_flow(|k, s| out.push((*k, *s)))?;
        Ok(out)
    }

    /// [`Self::flows`] as a map.
    pub fn flows_map(&mut self) -> anyhow::Result<HashMap<FlowKey, FlowStats>> {
        let mut out = HashMap::new();
        self.for_each_flow(|k, s| {
            out.insert(*k, *s);
        })?;
        Ok(out)
    }

    /// Hands every flow of both maps to `f`, once each, as it is read: `FLOWS` first (per-CPU
    /// slots merged), then `EMBRYOS`. A key the walk meets again (a restarted walk) is skipped:
    /// its first reading counts. A young flow caught in `EMBRYOS` after its copy moved to
    /// `FLOWS` (the moment of its promotion) is skipped too: the copy holds its packets. Each
    /// walk stops after twice its map's capacity of steps, so churn cannot make it endless.
    /// Returns the number of flows handed over.
    pub fn for_each_flow(
        &mut self,
        mut f: impl FnMut(&FlowKey, &FlowStats),
    ) -> anyhow::Result<usize> {
        let seen = &mut self.seen;
        seen.clear();
        for item in self.flows.iter().take(2 * MAX_FLOWS as usize) {
            // A flow evicted while iterating is simply skipped.
            let Ok((k, per_cpu)) = item else { continue };
            if !seen.insert(k) {
                continue;
            }
            let mut s = FlowStats::default();
            for slot in per_cpu.iter() {
                merge(&mut s, slot);
            }
            f(&k.flow_key(&s.tunnel), &s);
        }
        for item in self.embryos.iter().take(2 * MAX_EMBRYOS as usize) {
            let Ok((k, e)) = item else { continue };
            if seen.insert(k) {
                f(&k.flow_key(&e.tunnel), &e);
            }
        }
        Ok(seen.len())
    }

    /// The raw per-CPU slots of one flow (index = CPU).
    pub fn flow_slots(&self, key: &FlowKey) -> anyhow::Result<Vec<FlowStats>> {
        Ok(self
            .flows
            .get(&MapKey::of(key), 0)?
            .iter()
            .copied()
            .collect())
    }

    pub fn remove(&mut self, key: &FlowKey) {
        // Already gone (LRU eviction) is fine.
        let key = MapKey::of(key);
        let _ = self.flows.remove(&key);
        let _ = self.embryos.remove(&key);
    }

    /// Hands every outer flow of `OUTER_FLOWS` to `f`, once each, its per-CPU slots merged
    /// (a restarted walk is handled as in [`Self::for_each_flow`]). Returns how many.
    pub fn for_each_outer(
        &mut self,
        mut f: impl FnMut(&TunnelKey, &OuterStats),
    ) -> anyhow::Result<usize> {
        let mut seen = FxHashSet::default();
        for item in self.outer.iter().take(2 * MAX_OUTER_FLOWS as usize) {
            let Ok((k, per_cpu)) = item else { continue };
            if !seen.insert(k) {
                continue;
            }
            let mut s = OuterStats::default();
            for slot in per_cpu.iter() {
                outer_merge(&mut s, slot);
            }
            f(&k, &s);
        }
        Ok(seen.len())
    }

    /// Every outer flow, its per-CPU slots merged.
    pub fn outer_flows(&mut self) -> anyhow::Result<Vec<(TunnelKey, OuterStats)>> {
        let mut out = Vec::new();
        self.for_each_outer(|k, s| out.push((*k, *s)))?;
        Ok(out)
    }

    pub fn remove_outer(&mut self, key: &TunnelKey) {
        // Already gone (LRU eviction) is fine.
        let _ = self.outer.remove(key);
    }
}

/// Kernel memory of one pinned map's keys and values (the kernel adds its own per-element
/// bookkeeping, some 50 bytes per hash element, not counted here).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MapMemory {
    pub name: &'static str,
    pub entries: u32,
    pub key_size: u32,
    pub value_size: u32,
    /// One value per possible CPU.
    pub per_cpu: bool,
    /// Per-CPU maps: entries × value size (rounded up to 8) × possible CPUs; shared hash maps:
    /// entries × (key + value); the ring buffer: its size.
    pub bytes: u64,
}

/// [`MapMemory`] of every map the sensor pins under `dir`, and the possible CPU count used.
pub fn map_memory(dir: &Path) -> anyhow::Result<(u32, Vec<MapMemory>)> {
    use aya::maps::MapType;
    use safelink_common::{MAP_EVENTS, MAP_FRAGS};
    let maps = [
        MAP_FLOWS,
        MAP_EMBRYOS,
        MAP_OUTER_FLOWS,
        MAP_FRAGS,
        MAP_STATS,
        MAP_EVENTS,
    ];
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))? as u64;
    let mut out = Vec::new();
    for name in maps {
        let p = dir.join(name);
        let Ok(m) = MapData::from_pin(&p) else {
            continue;
        };
        let info = m.info()?;
        let (entries, key, value) = (info.max_entries(), info.key_size(), info.value_size());
        let per_cpu = matches!(
            info.map_type()?,
            MapType::PerCpuHash | MapType::LruPerCpuHash | MapType::PerCpuArray
        );
        let bytes = match info.map_type()? {
            MapType::RingBuf => u64::from(entries),
            _ if per_cpu => u64::from(entries) * u64::from(value).next_multiple_of(8) * cpus,
            MapType::Array => u64::from(entries) * u64::from(value),
            _ => u64::from(entries) * u64::from(key + value),
        };
        out.push(MapMemory {
            name,
            entries,
            key_size: key,
            value_size: value,
            per_cpu,
            bytes,
        });
    }
    Ok((cpus as u32, out))
}
