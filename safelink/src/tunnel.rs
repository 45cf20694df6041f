//! Tunnels in the configuration and in records: the `[flows] tunnels` list of kinds the
//! parser opens ([`TunnelKinds`], turned with the ports into the parser's
//! [`TunnelConfig`]), and the `tunnel` object of flow records, outer-flow records and alerts
//! ([`Tunnel`]), built from the tunnel identity a flow key carries ([`TunnelKey`], also the
//! key of an outer flow). The kinds and their names live in
//! `safelink_common::layout` (`TUNNEL_*`, `TUNNEL_NAMES`).
use std::{fmt, net::IpAddr};

use safelink_common::{
    FAMILY_IPV4, TUNNEL_GENEVE, TUNNEL_IP6, TUNNEL_IPIP, TUNNEL_NAMES, TUNNEL_NONE, TunnelKey,
    parse::TunnelConfig,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::record::key_addr;

/// The set of tunnel kinds decoded, written in the configuration as a list of names
/// (`["ipip", "ip6", "gre", "vxlan", "geneve"]`, the default; `[]` turns decoding off).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TunnelKinds(pub u32);

impl TunnelKinds {
    pub const ALL: Self = Self(TunnelConfig::DEFAULT.kinds);

    fn names(self) -> impl Iterator<Item = &'static str> {
        (TUNNEL_IPIP..=TUNNEL_GENEVE)
            .filter(move |k| self.0 & (1 << k) != 0)
            .map(|k| TUNNEL_NAMES[k as usize])
    }

    /// The parser's configuration: these kinds, VXLAN and Geneve on the given UDP ports.
    pub fn parser(self, vxlan_port: u16, geneve_port: u16) -> TunnelConfig {
        TunnelConfig {
            kinds: self.0,
            vxlan_port,
            geneve_port,
        }
    }
}

impl fmt::Debug for TunnelKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for TunnelKinds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for TunnelKinds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut kinds = 0u32;
        for n in &names {
            let k = (TUNNEL_IPIP..=TUNNEL_GENEVE)
                .find(|&k| TUNNEL_NAMES[k as usize] == n)
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "unknown tunnel kind `{n}` (expected one of {})",
                        TUNNEL_NAMES[1..].join(", ")
                    ))
                })?;
            kinds |= 1 << k;
        }
        Ok(Self(kinds))
    }
}

/// The tunnel a flow was found in: `tunnel: {type, id, outer_src, outer_dst}` in flow records
/// and alerts (absent for a plain flow). `outer_src` is the outer source of the flow's first
/// packet: the tunnel endpoint on the initiator's (`src_ip`) side, or for a mirroring tunnel
/// the mirror's source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// `ipip`, `6in4`, `6in6`, `gre`, `vxlan` or `geneve`.
    #[serde(rename = "type")]
    pub kind: String,
    /// VXLAN/Geneve VNI or GRE key (0 when the tunnel has none).
    pub id: u32,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

impl Tunnel {
    /// The tunnel of a key (a flow key's `tunnel`, or an outer flow's key), `outer_src` being
    /// `outer_a` when `outer_src_is_a` (the first packet's outer source:
    /// `FlowStats::outer_src_is_a`, `OuterStats::first_from_a`). `None` outside a tunnel.
    pub fn of_key(k: &TunnelKey, outer_src_is_a: bool) -> Option<Self> {
        if k.kind == TUNNEL_NONE {
            return None;
        }
        let kind = match (k.kind, k.family) {
            (TUNNEL_IP6, FAMILY_IPV4) => "6in4",
            (TUNNEL_IP6, _) => "6in6",
            (n, _) => TUNNEL_NAMES.get(n as usize).copied().unwrap_or("unknown"),
        };
        let a = key_addr(k.family, &k.outer_a);
        let b = key_addr(k.family, &k.outer_b);
        let (outer_src, outer_dst) = if outer_src_is_a { (a, b) } else { (b, a) };
        Some(Self {
            kind: kind.to_owned(),
            id: k.id,
            outer_src,
            outer_dst,
        })
    }
}
