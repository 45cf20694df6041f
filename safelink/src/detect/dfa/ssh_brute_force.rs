//! `ssh_brute_force`: many short, failed-looking SSH sessions from one source (hydra, ncrack,
//! medusa, patator; also paced "sneaky" runs).
//!
//! Key: source IP (a run spread over several servers still counts as one). Evidence: a finished
//! session to an SSH port that [`session::looks_failed`]. Alert at `sessions` such sessions
//! within the window (default 10 in 30 min; Zeek: 30 failed connections in 30 min, and a
//! session carries about 3 guesses). `count` = failed-looking sessions.
use std::{collections::HashSet, net::IpAddr};

use super::family::Family;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    config::{SshBruteForceConfig, ns},
    session,
    window::{DistinctWindow, RateWindow},
};
use crate::alert::build::base_alert;
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::FlowRecord,
};

pub struct Entry {
    sessions: RateWindow,
    servers: DistinctWindow<(IpAddr, u16)>,
    pub incident: Incident,
}

pub struct SshBruteForce {
    cfg: SshBruteForceConfig,
    ports: HashSet<u16>,
    window_ns: u64,
    keys: KeyMap<IpAddr, Entry>,
}

impl SshBruteForce {
    pub fn new(cfg: SshBruteForceConfig) -> Self {
        Self {
            ports: cfg.ports.iter().copied().collect(),
            window_ns: ns(cfg.window_secs),
            cfg,
            keys: KeyMap::new(),
        }
    }

    pub fn phase(&self, src: IpAddr) -> Phase {
        self.keys
            .get(&src)
            .map_or(Phase::Idle, |e| e.incident.phase())
    }
}

impl Detector for SshBruteForce {
    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        if !self.ports.contains(&f.dst_port) || !session::looks_failed(f, &self.cfg.session) {
            return;
        }
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let Some(e) = cx.slot(
            &mut self.keys,
            f.src_ip,
            |e| &e.incident,
            || Entry {
                sessions: RateWindow::new(window_ns),
                servers: DistinctWindow::new(window_ns, cap.min(256)),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        e.sessions.add(f.first_ns, 1, now);
        e.servers.insert((f.dst_ip, f.dst_port), f.first_ns, now);
        let n = e.sessions.sum(now);
        let verdict = Verdict::ladder(n, cfg.suspicious_sessions, cfg.sessions);
        let macs = cx.macs;
        let servers = e.servers.len(now);
        let build = |inc: &Incident| {
            let mut a =
                base_alert(AlertKind::SSH_BRUTE_FORCE, now, f.first_ns, f.last_ns).with_flow(f);
            a.src_mac = macs.get(&f.src_ip);
            a.description = format!(
                "SSH brute force from {} against {}:{}{}: {n} short failed-looking sessions within {}s ({} sessions); count = sessions",
                f.src_ip,
                f.dst_ip,
                f.dst_port,
                if servers > 1 {
                    format!(" and {} other servers", servers - 1)
                } else {
                    String::new()
                },
                cfg.window_secs,
                inc.count
            );
            a
        };
        cx.drive(&mut e.incident, f.last_ns, 1, verdict, build, |_, _| {});
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(
            &mut self.keys,
            w,
            w,
            |e| &mut e.incident,
            |e, now| e.servers.expire(now),
        );
    }
}

impl AlertKind {
    /// Many short failed-looking SSH sessions from one source.
    pub const SSH_BRUTE_FORCE: AlertKind = AlertKind::declare(&KindInfo {
        name: "ssh_brute_force",
        number: 5,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "many short failed-looking SSH sessions from one source",
    });
}

/// The `ssh_brute_force` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::SSH_BRUTE_FORCE,
    section: "ssh_brute_force",
    build: |c| Box::new(SshBruteForce::new(c.ssh_brute_force.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    #[test]
    fn paced_guessing_over_twenty_minutes() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let src = ip("240.0.1.2");
        let mut ev = Vec::new();
        for i in 0..60u64 {
            let f = session(
                "240.0.1.2",
                34000 + i as u16,
                "240.125.0.2",
                22,
                T0 + i * 20 * S,
                12,
                3521,
            );
            ev.extend(e.observe(&Record::Flow(f)));
            let want = match i {
                0..=1 => Phase::Idle,
                2..=8 => Phase::Suspicious,
                _ => Phase::Alerting,
            };
            assert_eq!(
                e.detector::<SshBruteForce>().unwrap().phase(src),
                want,
                "after session {}",
                i + 1
            );
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::SSH_BRUTE_FORCE);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 10);
        assert_eq!(news[0].dest_port, Some(22));
        assert_eq!(finals(&ev)[0].count, 60);
        // One update per new session (20 s apart, above the 1 s interval), the last at finish.
        assert_eq!(updates(&ev, 1), 50);
    }

    #[test]
    fn interactive_and_bulk_sessions_are_not_attempts() {
        let mut recs = Vec::new();
        for i in 0..30u64 {
            // Long interactive sessions and scp transfers.
            recs.push(Record::Flow(session(
                "192.0.2.9",
                50000 + i as u16,
                "192.0.2.2",
                22,
                T0 + i * 60 * S,
                900,
                40_000,
            )));
            recs.push(Record::Flow(session(
                "192.0.2.9",
                51000 + i as u16,
                "192.0.2.2",
                22,
                T0 + i * 60 * S,
                5,
                2_000_000,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn configured_ports() {
        let mut cfg = DfaConfig::default();
        cfg.ssh_brute_force.ports = vec![2200];
        let recs = (0..10u64).map(|i| {
            Record::Flow(session(
                "192.0.2.8",
                40000 + i as u16,
                "192.0.2.2",
                2200,
                T0 + i * S,
                3,
                2400,
            ))
        });
        let (_, ev) = run(cfg, recs);
        assert_eq!(new_alerts(&ev, AlertKind::SSH_BRUTE_FORCE).len(), 1);
    }
}
