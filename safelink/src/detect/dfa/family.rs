//! The rule families: [`FAMILIES`] is the one list of them. Each family declares itself once,
//! in its own module, as a [`Family`]: its [`AlertKind`] (contract string, export number,
//! severity — see [`crate::alert::kind`]), the `[dfa.<section>]` of the configuration that
//! tunes it, and how to build its automaton. The engine, the exports, the API's kind list and
//! the configuration reference derive from this list.
//!
//! Adding a family (the recipe of `docs/architecture.md`, proved by the test below):
//! 1. a module with the automaton (a [`Detector`]), its `impl AlertKind { pub const ... }`
//!    and its `pub const FAMILY: Family`;
//! 2. its settings as a field of [`DfaConfig`] (named as `section`), when it has any;
//! 3. one line in [`FAMILIES`].
use super::{
    Detector, DfaConfig, amplification, arp_scan, arp_spoof, host_sweep, icmp_flood,
    login_brute_force, port_scan, ssh_brute_force, syn_flood, udp_flood,
};
use crate::alert::AlertKind;

/// One rule family.
pub struct Family {
    /// What its alerts are.
    pub kind: AlertKind,
    /// Its section of the configuration, `[dfa.<section>]`.
    pub section: &'static str,
    /// Builds its automaton from a validated configuration.
    pub(crate) build: fn(&DfaConfig) -> Box<dyn Detector>,
}

/// Every rule family, in the order the engine runs them and the exports number them.
pub static FAMILIES: [&Family; 10] = [
    &port_scan::FAMILY,
    &host_sweep::FAMILY,
    &arp_scan::FAMILY,
    &arp_spoof::FAMILY,
    &ssh_brute_force::FAMILY,
    &login_brute_force::FAMILY,
    &syn_flood::FAMILY,
    &udp_flood::FAMILY,
    &icmp_flood::FAMILY,
    &amplification::FAMILY,
];

/// The ports of the amplification services (several families treat their replies apart).
pub(crate) fn amp_ports(cfg: &DfaConfig) -> Vec<u16> {
    cfg.amplification.services.iter().map(|s| s.port).collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::alert::{AlertSource, KindInfo, Severity, build::base_alert};
    use crate::detect::dfa::{
        Cx, Engine, Verdict,
        automaton::Incident,
        testutil::{S, T0, failed_syn, new_alerts},
        window::KeyMap,
    };
    use crate::record::{FlowRecord, Record};

    /// A toy family: three flows to port 7 from one source within a minute. Everything it
    /// takes is in this module; nothing else in the crate names it.
    impl AlertKind {
        const ECHO_KNOCK: AlertKind = AlertKind::declare(&KindInfo {
            name: "echo_knock",
            number: 99,
            severity: Severity::Low,
            source: AlertSource::Dfa,
            summary: "three flows to the echo port",
        });
    }

    #[derive(Default)]
    struct EchoKnock {
        keys: KeyMap<IpAddr, (u64, Incident)>,
    }

    impl Detector for EchoKnock {
        fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
            if f.dst_port != 7 {
                return;
            }
            let Some((n, inc)) = cx.slot(&mut self.keys, f.src_ip, |e| &e.1, Default::default)
            else {
                return;
            };
            *n += 1;
            let verdict = Verdict::ladder(*n, 2, 3);
            let now = cx.now;
            let build = |_: &Incident| {
                let mut a =
                    base_alert(AlertKind::ECHO_KNOCK, now, f.first_ns, f.last_ns).with_flow(f);
                a.description = format!("{} knocked on port 7", f.src_ip);
                a
            };
            cx.drive(inc, f.last_ns, 1, verdict, build, |_, _| {});
        }

        fn tick(&mut self, cx: &mut Cx) {
            cx.tick_map(&mut self.keys, 60 * S, 60 * S, |e| &mut e.1, |_, _| 0);
        }
    }

    const TOY: Family = Family {
        kind: AlertKind::ECHO_KNOCK,
        section: "echo_knock",
        build: |_| Box::new(EchoKnock::default()),
    };

    #[test]
    fn a_toy_family_is_all_it_takes() {
        let families: Vec<&Family> = FAMILIES.iter().copied().chain([&TOY]).collect();
        let mut e = Engine::with_families(DfaConfig::default(), &families).unwrap();
        let mut ev = Vec::new();
        for i in 0..3u16 {
            let f = failed_syn("192.0.2.7", "192.0.2.1", 7, T0 + u64::from(i) * S);
            ev.extend(e.observe(&Record::Flow(f)));
        }
        ev.extend(e.finish());
        let toy = new_alerts(&ev, AlertKind::ECHO_KNOCK);
        assert_eq!(toy.len(), 1);
        assert_eq!(toy[0].kind.as_str(), "echo_knock");
        assert_eq!(toy[0].severity, Severity::Low);
        assert_eq!(toy[0].count, 3);
        assert_eq!(toy[0].dest_port, Some(7));
        assert_eq!(toy[0].features.len(), crate::ann::N_FEATURES);
        assert!(e.detector::<EchoKnock>().is_some());
    }

    #[test]
    fn every_family_has_a_config_section_and_a_unique_kind() {
        let cfg = toml::Value::try_from(DfaConfig::default()).unwrap();
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(
                cfg.get(f.section).is_some_and(toml::Value::is_table),
                "no [dfa.{}]",
                f.section
            );
            assert_eq!(f.kind.info().source, AlertSource::Dfa);
            assert!(FAMILIES[i + 1..].iter().all(|g| g.kind != f.kind));
        }
    }
}
