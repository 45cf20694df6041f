//! The host context of a finished flow ([`FlowContext`]): what the flow's two addresses did
//! around it, counted over the flows that started within [`WINDOW_NS`] of it. A flow alone
//! cannot tell one unanswered datagram from a reflection flood's, or one refused SYN from a
//! sweep's; its context can: how many hosts its initiator reached, how many ports of this
//! responder, how many hosts on this responder's port, how many hosts reached the responder,
//! how many flows the pair opened.
//!
//! [`ContextTracker`] is the one place the counts are made. It sees every record in stream
//! order (flow starts as they come, finished flows as they end) and annotates finished and
//! interim flows; the pipeline runs it before any detector, and `analyze --features` and the
//! training set read the records it annotated, so scoring and training see the same values.
//!
//! Only unicast responders are peers: a flow to a multicast address or to 255.255.255.255
//! (IGMP reports, mDNS, SSDP, DHCP: how LANs work; the rules' [`is_unicast`] too) counts in no
//! host's fan-out or fan-in, and its own `src_peers` and `dst_peers` are 1; a hundred hosts
//! reporting to one group are not a flood of it, a host in ten groups is not sweeping. A
//! subnet's directed broadcast (x.y.z.255) is not known here and counts as a host.
//!
//! Addresses are counted within their address space ([`Scope`]): inside a tunnel, per tunnel
//! kind and id (a VXLAN or Geneve VNI, a GRE key), so two tenants that both number their hosts
//! 10.0.0.x are not one busy host; inside a tunnel without an id (IP-in-IP, IPv6 in IP,
//! keyless GRE), per kind and pair of outer ends, as the flow table keys them.
//!
//! Memory is bounded whatever the traffic: entries older than [`RETAIN_NS`] are dropped,
//! every set keeps its newest [`MAX_PEERS`] members (a count saturates there, and stays there
//! while a flood or sweep lasts), the tracker keeps at most [`MAX_KEYS`] addresses or pairs
//! per table, and at most [`MAX_MEMBERS`] members in all its sets together, dropping the
//! stalest keys beyond either.
use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;

use serde::Serialize;

use safelink_common::{TUNNEL_GENEVE, TUNNEL_NAMES, TUNNEL_VXLAN};

use crate::record::{FlowRecord, FlowStartRecord, Record, is_unicast};
use crate::tunnel::Tunnel;

/// The tracker's maps: keyed by addresses and ports that traffic chooses (a spoofed flood
/// picks them all), so hashed with a per-process random key ([`Keyed`]): ahash, at a fraction
/// of the cost of the standard library's SipHash (which took about 4 % of a replay's time).
type HashMap<K, V> = std::collections::HashMap<K, V, Keyed>;
type LinkedHashMap<K, V> = hashlink::LinkedHashMap<K, V, Keyed>;

/// ahash with one random key per process, held once rather than in each of the tracker's
/// (up to hundreds of thousands of) sets.
#[derive(Clone, Copy, Debug, Default)]
struct Keyed;

impl std::hash::BuildHasher for Keyed {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static KEY: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        KEY.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// Flows that started within this long before a flow's first packet or after its last
/// packet are its context.
pub const WINDOW_NS: u64 = 60_000_000_000;

/// How long a start is kept: a flow ends up to an idle timeout (60 s by default) after its
/// last packet, and its context reaches [`WINDOW_NS`] before its first.
pub const RETAIN_NS: u64 = 4 * WINDOW_NS;

/// Members of one set (peers of an address, ports or starts of a pair); counts saturate here.
pub const MAX_PEERS: usize = 1024;

/// Addresses (or address pairs) per table; beyond it the stalest are dropped (down to three
/// quarters). Under a spoofed flood every table churns at this bound: std's map rehashes in
/// place only while at most half its capacity is live, so 24,576 keys (below half of the
/// 57,344 that 65,536 buckets hold) keep each table in those buckets. At 32,768 each table
/// doubled to 131,072 buckets, about 30 MB more for the four of them.
pub const MAX_KEYS: usize = 24_576;

/// Members of all sets together (peers, ports and starts of every table); beyond it the
/// stalest keys are dropped, down to three quarters. Without it a spoofed flood spread over
/// many victims (each key of a table holding its [`MAX_PEERS`]) could hold [`MAX_KEYS`] ×
/// [`MAX_PEERS`] members per table: 1,024 sources to each of 4,096 victims grew the process
/// by 381 MB, about 90 bytes a member. With it, the same to 32,768 victims (33.5 M flows)
/// grew it by 70 MB at most. An active key is the newest, so shedding forgets idle hosts,
/// not the flood.
pub const MAX_MEMBERS: usize = 1 << 19;

/// A start this close to a finished flow's first packet is that flow's own (the live
/// sensor's ring-buffer event and flow map may stamp it a little apart).
const SAME_START_NS: u64 = 1_000_000;

/// What a flow's addresses did around it (each count includes the flow itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowContext {
    /// Distinct responder addresses the initiator opened flows to.
    pub src_peers: u32,
    /// Distinct responder ports (TCP/UDP; 0 for others) the initiator opened flows to on
    /// this responder.
    pub src_ports: u32,
    /// Distinct responder addresses the initiator opened flows to on this flow's protocol and
    /// responder port (any port for protocols without one): a sweep walks many hosts on one
    /// service, a peer-to-peer client or a browser reaches its many hosts on many.
    pub src_port_peers: u32,
    /// Distinct initiator addresses that opened flows to the responder.
    pub dst_peers: u32,
    /// Flows the initiator opened to the responder.
    pub pair_flows: u32,
}

/// Members of a set with the time each was last seen, kept in time order (oldest first): the
/// newest [`MAX_PEERS`]. A full set drops its oldest member for a newer one, so a flood or a
/// sweep that outlasts the window keeps counting its recent members (the cap), and a count
/// whose window holds the whole set is its size, without a scan: O(1) for a flood's flows.
///
/// A set of one member holds it inline and allocates nothing: under a spoofed flood nearly
/// every set (one per forged source in three tables) is such a set. A larger set lives behind a
/// pointer, so every entry of a table stays small (40 bytes for a set of addresses).
struct TimedSet<T: std::hash::Hash + Eq> {
    members: Members<T>,
    /// The latest time offered, kept or not.
    newest: u64,
}

/// What a [`TimedSet`] holds: nothing, one member inline, or a map.
#[derive(Default)]
enum Members<T: std::hash::Hash + Eq> {
    #[default]
    Empty,
    /// The only member and when it was seen.
    One(T, u64),
    /// Two or more (or what pruning left of them), oldest first.
    Many(Box<LinkedHashMap<T, u64>>),
}

// By hand: derived, it would need `T: Default`.
impl<T: std::hash::Hash + Eq> Default for TimedSet<T> {
    fn default() -> Self {
        Self {
            members: Members::Empty,
            newest: 0,
        }
    }
}

impl<T: std::hash::Hash + Eq> TimedSet<T> {
    /// Members held.
    fn len(&self) -> usize {
        match &self.members {
            Members::Empty => 0,
            Members::One(..) => 1,
            Members::Many(last) => last.len(),
        }
    }

    /// Counts member `m` as seen at `t`; whether the set grew.
    fn insert(&mut self, m: T, t: u64) -> bool {
        self.newest = self.newest.max(t);
        let mut last = match std::mem::take(&mut self.members) {
            Members::Empty => {
                self.members = Members::One(m, t);
                return true;
            }
            Members::One(x, seen) if x == m => {
                self.members = Members::One(x, seen.max(t));
                return false;
            }
            Members::One(x, seen) => {
                let mut last = Box::<LinkedHashMap<T, u64>>::default();
                last.insert(x, seen);
                last
            }
            Members::Many(last) => last,
        };
        let grew = Self::insert_into(&mut last, m, t);
        self.members = Members::Many(last);
        grew
    }

    /// [`Self::insert`] into a set held as a map.
    fn insert_into(last: &mut LinkedHashMap<T, u64>, m: T, t: u64) -> bool {
        let before = last.len();
        if let Some(&seen) = last.get(&m) {
            if seen >= t {
                return false;
            }
            last.remove(&m);
        } else if last.len() >= MAX_PEERS {
            if last.front().is_some_and(|(_, &oldest)| t < oldest) {
                return false; // older than every member kept
            }
            last.pop_front();
        }
        // In time order, searched from the newest end: members mostly come in time order (a
        // finished flow whose start was not seen comes late).
        let mut c = last.cursor_back_mut();
        while c.current().is_some_and(|(_, v)| *v > t) {
            c.move_prev();
        }
        c.insert_after(m, t);
        last.len() > before
    }

    fn count(&self, lo: u64, hi: u64) -> u32 {
        let last = match &self.members {
            Members::Empty => return 0,
            Members::One(_, t) => return u32::from((lo..=hi).contains(t)),
            Members::Many(last) => last,
        };
        let (Some((_, &oldest)), Some((_, &newest))) = (last.front(), last.back()) else {
            return 0;
        };
        if oldest >= lo && newest <= hi {
            return last.len() as u32;
        }
        last.values()
            .rev()
            .skip_while(|&&t| t > hi)
            .take_while(|&&t| t >= lo)
            .count() as u32
    }

    /// Drops members last seen before `floor`; whether any is left.
    fn prune(&mut self, floor: u64) -> bool {
        match &mut self.members {
            Members::Empty => {}
            Members::One(_, t) => {
                if *t < floor {
                    self.members = Members::Empty;
                }
            }
            Members::Many(last) => {
                while last.front().is_some_and(|(_, &t)| t < floor) {
                    last.pop_front();
                }
            }
        }
        self.len() > 0
    }
}

/// The starts of one initiator → responder pair.
#[derive(Default)]
struct Pair {
    ports: TimedSet<u16>,
    /// Sorted; the newest [`MAX_PEERS`].
    starts: VecDeque<u64>,
}

impl Pair {
    fn newest(&self) -> u64 {
        self.ports.newest
    }

    /// Whether a start within [`SAME_START_NS`] of `t` was counted, or `t` is older than
    /// every start a full pair keeps (it was counted and has been dropped since).
    fn started_near(&self, t: u64) -> bool {
        let (lo, hi) = (
            t.saturating_sub(SAME_START_NS - 1),
            t.saturating_add(SAME_START_NS - 1),
        );
        if self.dropped(t) {
            return true;
        }
        let i = self.starts.partition_point(|&x| x < lo);
        self.starts.get(i).is_some_and(|&x| x <= hi)
    }

    /// Counts a start: in order (a flow whose start was not seen is counted when it ends, out
    /// of stream order), the newest [`MAX_PEERS`] kept: a pair that opens more (a flood from
    /// one source) keeps counting its recent flows, not the first ones.
    /// Whether the pair grew.
    fn push_start(&mut self, t: u64) -> bool {
        if self.dropped(t) {
            return false;
        }
        let full = self.starts.len() >= MAX_PEERS;
        if full {
            self.starts.pop_front();
        }
        let i = self.starts.partition_point(|&x| x <= t);
        self.starts.insert(i, t);
        !full
    }

    /// Members held: ports and starts.
    fn members(&self) -> usize {
        self.ports.len() + self.starts.len()
    }

    /// Whether a start at `t` is older than every start a full pair keeps.
    fn dropped(&self, t: u64) -> bool {
        self.starts.len() >= MAX_PEERS && self.starts.front().is_some_and(|&f| t < f)
    }

    /// Starts in `[lo, hi]` (binary search).
    fn flows_between(&self, lo: u64, hi: u64) -> u32 {
        let below = self.starts.partition_point(|&t| t < lo);
        let upto = self.starts.partition_point(|&t| t <= hi);
        upto.saturating_sub(below) as u32
    }
}

/// The address space of a flow's addresses: outside any tunnel (0); inside a tunnel with an
/// id (a VXLAN or Geneve VNI, a GRE key), its kind and id (`kind index + 1 << 32 | id`); inside
/// one without (IP-in-IP, IPv6 in IP, keyless GRE), its kind and its two outer ends in either
/// order (both directions of one tunnel are one space), as a 63-bit digest with the top bit
/// set. Eight bytes in every key of every table: under a spoofed flood each table holds
/// [`MAX_KEYS`] of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Scope(u64);

impl Scope {
    /// Outside any tunnel.
    const PLAIN: Self = Self(0);

    fn of(t: Option<&Tunnel>) -> Self {
        use std::hash::{Hash as _, Hasher as _};
        let Some(t) = t else {
            return Self::PLAIN;
        };
        let kind = TUNNEL_NAMES
            .iter()
            .position(|&n| n == t.kind)
            .unwrap_or(TUNNEL_NAMES.len());
        if t.id != 0 || kind == usize::from(TUNNEL_VXLAN) || kind == usize::from(TUNNEL_GENEVE) {
            Self(((kind as u64 + 1) << 32) | u64::from(t.id))
        } else {
            // A fixed-key hash: the same tunnel is the same space in every run.
            let mut h = std::hash::DefaultHasher::new();
            (
                kind,
                t.outer_src.min(t.outer_dst),
                t.outer_src.max(t.outer_dst),
            )
                .hash(&mut h);
            Self((1 << 63) | (h.finish() >> 1))
        }
    }
}

/// A flow's two ends in their address space.
#[derive(Clone, Copy)]
struct Ends {
    scope: Scope,
    src: IpAddr,
    dst: IpAddr,
}

impl Ends {
    fn of_start(s: &FlowStartRecord) -> Self {
        Self {
            scope: Scope::of(s.tunnel.as_ref()),
            src: s.src_ip,
            dst: s.dst_ip,
        }
    }

    fn of_flow(f: &FlowRecord) -> Self {
        Self {
            scope: Scope::of(f.tunnel.as_ref()),
            src: f.src_ip,
            dst: f.dst_ip,
        }
    }

    fn initiator(self) -> (Scope, IpAddr) {
        (self.scope, self.src)
    }

    fn responder(self) -> (Scope, IpAddr) {
        (self.scope, self.dst)
    }

    fn pair(self) -> (Scope, IpAddr, IpAddr) {
        (self.scope, self.src, self.dst)
    }

    fn service(self, proto: u8, port: u16) -> Service {
        (self.scope, self.src, proto, port)
    }

    /// Whether the ends are peers of each other: the responder is a unicast host.
    fn peers(self) -> bool {
        is_unicast(&self.dst)
    }
}

/// Counts flow starts per address and pair and annotates finished flows with their
/// [`FlowContext`].
pub struct ContextTracker {
    fan_out: HashMap<(Scope, IpAddr), TimedSet<IpAddr>>,
    /// Responders per initiator and service (protocol, responder port).
    fan_out_port: HashMap<Service, TimedSet<IpAddr>>,
    fan_in: HashMap<(Scope, IpAddr), TimedSet<IpAddr>>,
    pairs: HashMap<(Scope, IpAddr, IpAddr), Pair>,
    /// Members of all sets together (see [`MAX_MEMBERS`]).
    members: usize,
    /// [`MAX_MEMBERS`], smaller in tests.
    max_members: usize,
    /// Latest time seen.
    now: u64,
    /// When the tables were last pruned.
    pruned: u64,
}

/// An initiator and one service it used: (space, initiator, protocol, responder port).
type Service = (Scope, IpAddr, u8, u16);

fn port_of(proto: u8, port: u16) -> u16 {
    if matches!(
        proto,
        safelink_common::IPPROTO_TCP | safelink_common::IPPROTO_UDP
    ) {
        port
    } else {
        0
    }
}

impl Default for ContextTracker {
    fn default() -> Self {
        Self::with_budget(MAX_MEMBERS)
    }
}

impl ContextTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that holds at most `max_members` members (tests).
    fn with_budget(max_members: usize) -> Self {
        Self {
            fan_out: HashMap::default(),
            fan_out_port: HashMap::default(),
            fan_in: HashMap::default(),
            pairs: HashMap::default(),
            members: 0,
            max_members,
            now: 0,
            pruned: 0,
        }
    }

    /// A flow started (or ended without its start seen): `first_ns` is its first packet.
    fn start(&mut self, e: Ends, proto: u8, port: u16, first_ns: u64, new: bool) {
        let mut grew = 0;
        if e.peers() {
            grew += usize::from(
                self.fan_out
                    .entry(e.initiator())
                    .or_default()
                    .insert(e.dst, first_ns),
            );
            grew += usize::from(
                self.fan_out_port
                    .entry(e.service(proto, port))
                    .or_default()
                    .insert(e.dst, first_ns),
            );
            grew += usize::from(
                self.fan_in
                    .entry(e.responder())
                    .or_default()
                    .insert(e.src, first_ns),
            );
        }
        let p = self.pairs.entry(e.pair()).or_default();
        grew += usize::from(p.ports.insert(port, first_ns));
        if new {
            grew += usize::from(p.push_start(first_ns));
        }
        self.members += grew;
        self.now = self.now.max(first_ns);
        if self.now.saturating_sub(self.pruned) >= RETAIN_NS
            || self.fan_out.len() > MAX_KEYS
            || self.fan_out_port.len() > MAX_KEYS
            || self.fan_in.len() > MAX_KEYS
            || self.pairs.len() > MAX_KEYS
            || self.members > self.max_members
        {
            self.prune();
        }
    }

    fn prune(&mut self) {
        let floor = self.now.saturating_sub(RETAIN_NS);
        self.fan_out.retain(|_, s| s.prune(floor));
        self.fan_out_port.retain(|_, s| s.prune(floor));
        self.fan_in.retain(|_, s| s.prune(floor));
        self.pairs.retain(|_, p| {
            while p.starts.front().is_some_and(|&t| t < floor) {
                p.starts.pop_front();
            }
            p.ports.prune(floor)
        });
        shed(&mut self.fan_out, |s| s.newest);
        shed(&mut self.fan_out_port, |s| s.newest);
        shed(&mut self.fan_in, |s| s.newest);
        shed(&mut self.pairs, Pair::newest);
        self.members = self.count_members();
        if self.members > self.max_members * 3 / 4 {
            self.shed_members();
        }
        self.pruned = self.now;
    }

    /// Members of all sets, counted.
    fn count_members(&self) -> usize {
        fn sets<K>(m: &HashMap<K, TimedSet<IpAddr>>) -> usize {
            m.values().map(TimedSet::len).sum()
        }
        sets(&self.fan_out)
            + sets(&self.fan_out_port)
            + sets(&self.fan_in)
            + self.pairs.values().map(Pair::members).sum::<usize>()
    }

    /// Drops the stalest keys of all tables until their members are down to three quarters of
    /// the budget.
    fn shed_members(&mut self) {
        let mut keys: Vec<(u64, usize)> = self
            .fan_out
            .values()
            .chain(self.fan_out_port.values())
            .chain(self.fan_in.values())
            .map(|s| (s.newest, s.len()))
            .chain(self.pairs.values().map(|p| (p.newest(), p.members())))
            .collect();
        keys.sort_unstable();
        let mut excess = self.members.saturating_sub(self.max_members * 3 / 4);
        let mut cut = 0;
        for (t, n) in keys {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(n);
            cut = t;
        }
        self.fan_out.retain(|_, s| s.newest > cut);
        self.fan_out_port.retain(|_, s| s.newest > cut);
        self.fan_in.retain(|_, s| s.newest > cut);
        self.pairs.retain(|_, p| p.newest() > cut);
        self.members = self.count_members();
    }

    /// The counts of a flow's ends over the starts in `[lo, hi]`.
    fn counts(&self, e: Ends, proto: u8, port: u16, lo: u64, hi: u64) -> FlowContext {
        let pair = self.pairs.get(&e.pair());
        fn peers<K: std::hash::Hash + Eq>(
            e: Ends,
            m: &HashMap<K, TimedSet<IpAddr>>,
            k: K,
            lo: u64,
            hi: u64,
        ) -> u32 {
            if e.peers() {
                m.get(&k).map_or(0, |s| s.count(lo, hi))
            } else {
                0
            }
        }
        FlowContext {
            src_peers: peers(e, &self.fan_out, e.initiator(), lo, hi),
            src_ports: pair.map_or(0, |p| p.ports.count(lo, hi)),
            src_port_peers: peers(e, &self.fan_out_port, e.service(proto, port), lo, hi),
            dst_peers: peers(e, &self.fan_in, e.responder(), lo, hi),
            pair_flows: pair.map_or(0, |p| p.flows_between(lo, hi)),
        }
        .at_least_self()
    }

    /// A finished flow's context: the starts from [`WINDOW_NS`] before its first packet to
    /// [`WINDOW_NS`] after its last.
    fn context(&self, e: Ends, f: &FlowRecord) -> FlowContext {
        let lo = f.first_ns.saturating_sub(WINDOW_NS);
        let hi = f.last_ns.saturating_add(WINDOW_NS);
        self.counts(e, f.proto, port_of(f.proto, f.dst_port), lo, hi)
    }

    /// Counts a flow start and annotates it with its context so far (the starts of the
    /// [`WINDOW_NS`] before it, up to the latest time seen: a member re-seen since keeps
    /// counting); annotates a finished or interim flow with its context (a flow whose start was
    /// not seen counts as started at its first packet). Other records pass as they are.
    pub fn annotate<'r>(&mut self, r: &'r Record) -> Cow<'r, Record> {
        match r {
            Record::FlowStart(s) => {
                let ends = Ends::of_start(s);
                let port = port_of(s.proto, s.dst_port);
                self.start(ends, s.proto, port, s.ts_ns, true);
                let mut s = s.clone();
                s.ctx = self.counts(
                    ends,
                    s.proto,
                    port,
                    s.ts_ns.saturating_sub(WINDOW_NS),
                    self.now,
                );
                Cow::Owned(Record::FlowStart(s))
            }
            Record::Flow(f) | Record::FlowUpdate(f) => {
                let ends = Ends::of_flow(f);
                let seen = self
                    .pairs
                    .get(&ends.pair())
                    .is_some_and(|p| p.started_near(f.first_ns));
                self.start(
                    ends,
                    f.proto,
                    port_of(f.proto, f.dst_port),
                    f.first_ns,
                    !seen,
                );
                self.now = self.now.max(f.last_ns);
                let mut f = f.clone();
                f.ctx = self.context(ends, &f);
                Cow::Owned(match r {
                    Record::Flow(_) => Record::Flow(f),
                    _ => Record::FlowUpdate(f),
                })
            }
            _ => Cow::Borrowed(r),
        }
    }
}

impl FlowContext {
    /// Every count includes the flow itself (a saturated set may not hold it).
    fn at_least_self(self) -> Self {
        Self {
            src_peers: self.src_peers.max(1),
            src_ports: self.src_ports.max(1),
            src_port_peers: self.src_port_peers.max(1),
            dst_peers: self.dst_peers.max(1),
            pair_flows: self.pair_flows.max(1),
        }
    }
}

/// Drops the stalest keys of a table over [`MAX_KEYS`] (down to three quarters of it).
fn shed<K: Copy + std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>, newest: impl Fn(&V) -> u64) {
    if m.len() <= MAX_KEYS {
        return;
    }
    let mut ages: Vec<u64> = m.values().map(&newest).collect();
    let drop = m.len() - MAX_KEYS * 3 / 4;
    let (_, cut, _) = ages.select_nth_unstable(drop);
    let cut = *cut;
    m.retain(|_, v| newest(v) > cut);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::ann::features::tests::sample_flow;

    const S: u64 = 1_000_000_000;

    fn flow(src: u8, dst: u8, port: u16, t: u64) -> Record {
        let mut f = sample_flow();
        f.src_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, src));
        f.dst_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, dst));
        f.dst_port = port;
        f.first_ns = t;
        f.last_ns = t + S;
        Record::Flow(f)
    }

    fn ctx(r: Cow<'_, Record>) -> FlowContext {
        match r.as_ref() {
            Record::Flow(f) => f.ctx,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_set_of_one_is_inline_and_grows_into_a_map_in_time_order() {
        let mut s = TimedSet::<u16>::default();
        assert!(s.insert(7, 50));
        assert!(!s.insert(7, 40), "seen again, earlier");
        assert!(!s.insert(7, 60), "seen again, later");
        assert!(matches!(s.members, Members::One(7, 60)));
        assert_eq!((s.count(55, 70), s.count(0, 55)), (1, 0));
        // A second member, older than the first: both kept, in time order.
        assert!(s.insert(8, 30));
        let Members::Many(last) = &s.members else {
            panic!("two members are a map")
        };
        assert_eq!(
            last.iter().map(|(&m, &t)| (m, t)).collect::<Vec<_>>(),
            [(8, 30), (7, 60)]
        );
        assert_eq!((s.len(), s.count(0, 100), s.count(31, 100)), (2, 2, 1));
        assert_eq!(s.newest, 60);
        // Pruned down to nothing, it is empty and can start over inline.
        assert!(!s.prune(61));
        assert_eq!(s.len(), 0);
        let mut one = TimedSet::<u16>::default();
        one.insert(1, 10);
        assert!(one.prune(10) && !one.prune(11));
        assert!(one.insert(2, 20) && matches!(one.members, Members::One(2, 20)));
        // An entry of a table of addresses stays small.
        assert_eq!(std::mem::size_of::<TimedSet<IpAddr>>(), 40);
    }

    #[test]
    fn sweep_scan_fan_in_and_pair_counts() {
        let mut t = ContextTracker::new();
        // A sweep: host 1 reaches 10 hosts on port 22.
        for d in 1..=10 {
            t.annotate(&flow(1, d, 22, 100 * S + u64::from(d) * S));
        }
        // A scan: host 2 reaches 30 ports of host 50.
        for p in 1..=30 {
            t.annotate(&flow(2, 50, p, 100 * S));
        }
        // Fan-in: 5 hosts reach host 60 once each; then host 3 twice on one port.
        for s in 10..15 {
            t.annotate(&flow(s, 60, 443, 100 * S));
        }
        t.annotate(&flow(3, 60, 443, 101 * S));
        let c = ctx(t.annotate(&flow(3, 60, 443, 102 * S)));
        assert_eq!(
            c,
            FlowContext {
                src_peers: 1,
                src_ports: 1,
                src_port_peers: 1,
                dst_peers: 6,
                pair_flows: 2
            }
        );
        let sweep = ctx(t.annotate(&flow(1, 11, 22, 111 * S)));
        assert_eq!(
            (
                sweep.src_peers,
                sweep.src_ports,
                sweep.src_port_peers,
                sweep.pair_flows
            ),
            (11, 1, 11, 1)
        );
        let scan = ctx(t.annotate(&flow(2, 50, 31, 100 * S)));
        assert_eq!(
            (
                scan.src_peers,
                scan.src_ports,
                scan.src_port_peers,
                scan.dst_peers
            ),
            (1, 31, 1, 1)
        );
        // A peer-to-peer client: host 4 reaches 12 hosts, each on a port of its own; then the
        // 13th on one of those ports.
        for d in 1..=12 {
            t.annotate(&flow(4, 100 + d, 6000 + u16::from(d), 100 * S));
        }
        let p2p = ctx(t.annotate(&flow(4, 113, 6001, 101 * S)));
        assert_eq!((p2p.src_peers, p2p.src_port_peers), (13, 2));
        // The same port over UDP is another service.
        let mut udp = flow(1, 12, 22, 112 * S);
        if let Record::Flow(f) = &mut udp {
            f.proto = safelink_common::IPPROTO_UDP;
        }
        let c = ctx(t.annotate(&udp));
        assert_eq!((c.src_peers, c.src_port_peers), (12, 1));
    }

    #[test]
    fn a_flow_start_carries_its_context_so_far() {
        let mut t = ContextTracker::new();
        let start = |port: u16, ts: u64| {
            let s = crate::detect::dfa::testutil::start(
                "192.0.2.1",
                40000,
                "198.51.100.1",
                port,
                6,
                ts,
            );
            Record::FlowStart(s)
        };
        let ctx_of = |r: Cow<'_, Record>| match r.as_ref() {
            Record::FlowStart(s) => s.ctx,
            _ => unreachable!(),
        };
        // A scan: the 20th port's start counts the 19 before it and itself.
        for p in 1..20 {
            t.annotate(&start(p, 100 * S + u64::from(p) * S / 10));
        }
        let c = ctx_of(t.annotate(&start(20, 102 * S)));
        assert_eq!(
            c,
            FlowContext {
                src_peers: 1,
                src_ports: 20,
                src_port_peers: 1,
                dst_peers: 1,
                pair_flows: 20
            }
        );
        // 60 s later only the starts of the last 60 s count (none but itself).
        let c = ctx_of(t.annotate(&start(21, 163 * S)));
        assert_eq!((c.src_ports, c.pair_flows), (1, 1));
        // A flow start's one-packet flow carries it into a feature row.
        let Record::FlowStart(s) = t.annotate(&start(22, 163 * S)).into_owned() else {
            unreachable!()
        };
        let row = crate::alert::build::start_features(&s);
        assert_eq!(
            &row[crate::ann::features::CONTEXT_FEATURES],
            &[1.0, 2.0, 1.0, 1.0, 2.0]
        );
    }

    #[test]
    fn tenants_of_two_tunnels_with_the_same_addresses_are_counted_apart() {
        let in_vni = |src: u8, vni: Option<u32>| {
            let Record::Flow(mut f) = flow(src, 1, 443, 100 * S) else {
                unreachable!()
            };
            f.tunnel = vni.map(|id| Tunnel {
                kind: "vxlan".into(),
                id,
                outer_src: "203.0.113.1".parse().unwrap(),
                outer_dst: "203.0.113.2".parse().unwrap(),
            });
            Record::Flow(f)
        };
        let mut t = ContextTracker::new();
        // Five hosts of VNI 1 reach 198.51.100.1 of VNI 1.
        for src in 1..=5 {
            t.annotate(&in_vni(src, Some(1)));
        }
        // Host 1 of VNI 2 reaches VNI 2's 198.51.100.1: its own, seen once.
        assert_eq!(ctx(t.annotate(&in_vni(1, Some(2)))).dst_peers, 1);
        // Outside a tunnel, the same addresses again are another host.
        assert_eq!(ctx(t.annotate(&in_vni(1, None))).dst_peers, 1);
        let c = ctx(t.annotate(&in_vni(6, Some(1))));
        assert_eq!((c.dst_peers, c.pair_flows), (6, 1));
        // The pair 1 → 1 of VNI 1 opened one flow; VNI 2's and the plain one are not its.
        let Record::Flow(mut again) = in_vni(1, Some(1)) else {
            unreachable!()
        };
        again.first_ns += S;
        again.last_ns += S;
        assert_eq!(ctx(t.annotate(&Record::Flow(again))).pair_flows, 2);
    }

    #[test]
    fn tunnels_without_an_id_are_spaces_per_pair_of_outer_ends() {
        let through = |src: u8, outer: (&str, &str)| {
            let Record::Flow(mut f) = flow(src, 1, 443, 100 * S) else {
                unreachable!()
            };
            f.tunnel = Some(Tunnel {
                kind: "ipip".into(),
                id: 0,
                outer_src: outer.0.parse().unwrap(),
                outer_dst: outer.1.parse().unwrap(),
            });
            Record::Flow(f)
        };
        let (a, b, c) = ("203.0.113.1", "203.0.113.2", "203.0.113.3");
        let mut t = ContextTracker::new();
        // Five hosts behind the tunnel a <-> b reach 198.51.100.1 behind it.
        for src in 1..=5 {
            t.annotate(&through(src, (a, b)));
        }
        // The tunnel a <-> c numbers its hosts alike: its 198.51.100.1 is another host.
        assert_eq!(ctx(t.annotate(&through(6, (a, c)))).dst_peers, 1);
        // The tunnel a <-> b seen the other way round is the same space.
        assert_eq!(ctx(t.annotate(&through(7, (b, a)))).dst_peers, 6);
    }

    #[test]
    fn group_addresses_are_no_hosts_peers() {
        let mut t = ContextTracker::new();
        let to = |src: u8, dst: &str| {
            let Record::Flow(mut f) = flow(src, 1, 5353, 100 * S) else {
                unreachable!()
            };
            f.dst_ip = dst.parse().unwrap();
            Record::Flow(f)
        };
        // 150 hosts report to one group; host 1 is in ten groups.
        for src in 1..=150 {
            t.annotate(&to(src, "224.0.0.22"));
        }
        for g in 1..=10 {
            t.annotate(&to(1, &format!("239.0.0.{g}")));
        }
        let c = ctx(t.annotate(&to(151, "224.0.0.22")));
        assert_eq!((c.src_peers, c.dst_peers), (1, 1));
        // Host 1's unicast flow: one peer, itself; the groups are not its peers.
        let c = ctx(t.annotate(&to(1, "198.51.100.7")));
        assert_eq!((c.src_peers, c.dst_peers), (1, 1));
        // Broadcast likewise; the pair's own flows are still counted.
        t.annotate(&to(2, "255.255.255.255"));
        let Record::Flow(mut again) = to(2, "255.255.255.255") else {
            unreachable!()
        };
        again.first_ns += S;
        again.last_ns += S;
        let c = ctx(t.annotate(&Record::Flow(again)));
        assert_eq!((c.src_peers, c.dst_peers, c.pair_flows), (1, 1, 2));
    }

    #[test]
    fn flows_out_of_the_window_do_not_count() {
        let mut t = ContextTracker::new();
        t.annotate(&flow(1, 1, 22, 100 * S));
        // 60 s after the first flow's last packet (101 s) is still its window; later is not.
        t.annotate(&flow(1, 2, 22, 161 * S));
        t.annotate(&flow(1, 3, 22, 162 * S));
        let c = ctx(t.annotate(&flow(1, 1, 22, 100 * S)));
        // The flow itself, 1 → 2 at 161 s; 1 → 3 at 162 s is outside [40 s, 161 s].
        assert_eq!(c.src_peers, 2);
    }

    #[test]
    fn a_flow_start_counts_once() {
        let mut t = ContextTracker::new();
        let Record::Flow(f) = flow(1, 1, 22, 100 * S) else {
            unreachable!()
        };
        let start = crate::detect::dfa::testutil::start(
            "192.0.2.1",
            f.src_port,
            "198.51.100.1",
            f.dst_port,
            f.proto,
            f.first_ns,
        );
        t.annotate(&Record::FlowStart(start));
        let c = ctx(t.annotate(&Record::Flow(f)));
        assert_eq!(c.pair_flows, 1);
    }

    #[test]
    fn a_pair_that_never_stops_keeps_counting_its_recent_flows() {
        let mut t = ContextTracker::new();
        // One source opens a flow to one port every 100 ms for 300 s: 3,000 flows.
        for i in 0..3000u64 {
            t.annotate(&flow(1, 1, 80, 100 * S + i * S / 10));
        }
        let c = ctx(t.annotate(&flow(1, 1, 80, 400 * S)));
        // Its window starts 60 s before: the starts of the last 60 s, and itself.
        assert_eq!(c.pair_flows, 601);
    }

    /// Host `n` of a sweep by 192.0.2.1: 10.x.y.z.
    fn sweep_flow(n: u32, t: u64) -> Record {
        let mut f = sample_flow();
        f.src_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        f.dst_ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        f.first_ns = t;
        f.last_ns = t;
        Record::Flow(f)
    }

    #[test]
    fn a_sweep_that_lasts_keeps_counting_its_recent_hosts() {
        // 10 hosts a second for 300 s: 600 a window, under the cap, but over MAX_PEERS
        // within the retention.
        let mut t = ContextTracker::new();
        for i in 0..3000u32 {
            t.annotate(&sweep_flow(i, 100 * S + u64::from(i) * S / 10));
        }
        let c = ctx(t.annotate(&sweep_flow(3000, 400 * S)));
        assert_eq!(c.src_peers, 601);
        // 100 hosts a second for 200 s: the count stays at its cap to the end.
        let mut t = ContextTracker::new();
        for i in 0..20_000u32 {
            let c = ctx(t.annotate(&sweep_flow(i, 100 * S + u64::from(i) * S / 100)));
            if i >= MAX_PEERS as u32 {
                assert_eq!(c.src_peers, MAX_PEERS as u32, "host {i}");
            }
        }
    }

    #[test]
    fn starts_stay_in_order_when_a_flow_ends_after_its_start_was_dropped() {
        let mut t = ContextTracker::new();
        let pair = (
            Scope::PLAIN,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        );
        // A long flow starts; then 2,000 short ones of the same pair push its start out.
        let Record::Flow(mut long) = flow(1, 1, 80, 100 * S) else {
            unreachable!()
        };
        t.annotate(&Record::FlowStart(crate::detect::dfa::testutil::start(
            "192.0.2.1",
            long.src_port,
            "198.51.100.1",
            80,
            long.proto,
            long.first_ns,
        )));
        for i in 1..=2000u64 {
            t.annotate(&flow(1, 1, 80, 100 * S + i * S / 100));
        }
        long.last_ns = 130 * S;
        t.annotate(&Record::Flow(long));
        let starts = &t.pairs[&pair].starts;
        assert_eq!(starts.len(), MAX_PEERS);
        assert!(starts.iter().is_sorted());
        // A flow whose start was not seen, out of stream order, lands in its place.
        t.annotate(&flow(1, 1, 80, 115 * S + S / 200));
        let starts = &t.pairs[&pair].starts;
        assert!(starts.iter().is_sorted());
        assert!(starts.contains(&(115 * S + S / 200)));
    }

    #[test]
    fn a_flood_spread_over_many_victims_stays_within_the_member_budget() {
        // Spoofed sources, 200 per victim, victim after victim: without the budget the tables
        // would hold 3 x 64 x 200 members.
        const BUDGET: usize = 4096;
        let mut t = ContextTracker::with_budget(BUDGET);
        let mut last = FlowContext::default();
        for v in 0..64u32 {
            for s in 0..200u32 {
                let mut f = sample_flow();
                f.src_ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + v * 256 + s));
                f.dst_ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + v));
                f.first_ns = 100 * S + u64::from(v * 200 + s) * 1000;
                f.last_ns = f.first_ns;
                last = ctx(t.annotate(&Record::Flow(f)));
                assert_eq!(t.members, t.count_members(), "victim {v} source {s}");
                assert!(t.members <= BUDGET, "victim {v}: {} members", t.members);
            }
        }
        // The victim under attack now is the newest key: its count is whole.
        assert_eq!(last.dst_peers, 200);
        // The first victims were forgotten.
        assert!(
            !t.fan_in
                .contains_key(&(Scope::PLAIN, IpAddr::V4(Ipv4Addr::from(0x0a00_0000))))
        );
    }

    #[test]
    fn the_member_count_stays_exact_through_full_sets_repeats_and_late_flows() {
        // Full sets popping their oldest, a full pair dropping starts, members seen again
        // later, flows whose start was not seen arriving out of order, and the budget shedding.
        let mut t = ContextTracker::with_budget(6_000);
        let check = |t: &ContextTracker, what: &str| {
            assert_eq!(t.members, t.count_members(), "{what}");
            assert!(t.members <= 6_000, "{what}: {}", t.members);
        };
        for i in 0..3_000u32 {
            // One victim from 3,000 sources (its fan-in set fills and pops).
            let mut f = sample_flow();
            f.src_ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            f.first_ns = 100 * S + u64::from(i) * S / 100;
            f.last_ns = f.first_ns;
            t.annotate(&Record::Flow(f));
            check(&t, "fan-in");
        }
        for i in 0..3_000u64 {
            // One pair, 3,000 flows (its starts fill and pop), every tenth port seen again.
            t.annotate(&flow(1, 1, (i % 10) as u16, 130 * S + i * S / 100));
            check(&t, "pair");
        }
        for i in (0..500u64).rev() {
            // Late flows of the same pair, newest first (older than the starts kept).
            t.annotate(&flow(1, 1, 80, 100 * S + i * S / 100));
            check(&t, "late");
        }
        for d in 0..200u8 {
            // A host sweeping, then sweeping the same hosts again.
            t.annotate(&flow(2, d, 22, 170 * S));
            t.annotate(&flow(2, d, 22, 171 * S));
            check(&t, "repeats");
        }
    }

    #[test]
    fn sets_saturate_and_tables_stay_bounded() {
        let mut t = ContextTracker::new();
        for i in 0..(MAX_PEERS as u32 + 500) {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let mut f = sample_flow();
            f.src_ip = src;
            f.first_ns = 100 * S;
            f.last_ns = 100 * S;
            t.annotate(&Record::Flow(f));
        }
        let mut f = sample_flow();
        f.first_ns = 100 * S;
        f.last_ns = 100 * S;
        let c = ctx(t.annotate(&Record::Flow(f)));
        assert_eq!(c.dst_peers, MAX_PEERS as u32);
        assert!(t.fan_out.len() <= MAX_KEYS + 1);
    }

    /// A spoofed flood (a new source per flow) churns every table's keys: shedding must keep
    /// each in the buckets its [`MAX_KEYS`] need, not let deleted keys double it (std's map
    /// rehashes in place only while at most half its capacity is live).
    #[test]
    fn a_spoofed_flood_does_not_grow_the_tables_past_their_bound() {
        let mut t = ContextTracker::new();
        for i in 0..(32 * MAX_KEYS as u32) {
            let mut f = sample_flow();
            f.src_ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            f.src_port = i as u16;
            f.first_ns = 100 * S + u64::from(i) * 20_000;
            f.last_ns = f.first_ns;
            t.annotate(&Record::Flow(f));
        }
        // Each table stays in 65,536 buckets (capacity at most 57,344, half of it live at
        // most). At 32,768 keys a table doubled to 131,072 buckets (capacity 114,688).
        for (name, cap) in [
            ("fan_out", t.fan_out.capacity()),
            ("fan_out_port", t.fan_out_port.capacity()),
            ("fan_in", t.fan_in.capacity()),
            ("pairs", t.pairs.capacity()),
        ] {
            assert!(cap < 3 * MAX_KEYS, "{name}: capacity {cap}");
        }
        assert!(t.fan_out.len() <= MAX_KEYS + 1);
    }
}
