//! `login_brute_force`: a burst of short, similar, failed-looking sessions from one source to
//! one login service of one server (FTP, telnet, mail, SMB, RDP, VNC, databases, HTTP auth).
//!
//! Key: (source IP, server IP, server port). Evidence: a finished session to a configured login
//! port that [`session::looks_failed`]. Attempts of one tool against one service get the same
//! answer, so sessions are grouped by [`session::size_class`]; the alert rises when the largest
//! group of neighbouring classes reaches the service's threshold within the window (default 20
//! in 60 s; HTTP 40). Pollers and health checks that open a session every few seconds stay
//! under it. `count` = failed-looking sessions.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use super::family::Family;
use super::window::{KeyMap, shrunk_capacity};
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    config::{LoginBruteForceConfig, ns},
    session,
};
use crate::alert::build::base_alert;
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::FlowRecord,
};

pub struct Entry {
    /// (session start, session end, size class), within the slow window.
    recent: VecDeque<(u64, u64, u16)>,
    pub incident: Incident,
}

/// The largest group of similar sessions, per tier.
#[derive(Debug, Default, PartialEq)]
struct Groups {
    /// Sessions in the largest group within the fast window.
    fast: u64,
    /// Largest group within the slow window that kept the service busy enough.
    slow_busy: u64,
}

impl Entry {
    /// Drops the sessions that left the slow window (a key can outlive it: an alerted source
    /// through its cool-down), gives back the room of a queue pruned to a quarter, and returns
    /// the slots it holds (the automaton's memory budget, `[dfa] max_items`).
    fn expire(&mut self, now: u64, slow_ns: u64) -> usize {
        let cut = now.saturating_sub(slow_ns);
        // The queue is in arrival order, so its front is about its oldest: one look a tick.
        if self.recent.front().is_some_and(|&(t, _, _)| t < cut) {
            self.recent.retain(|&(t, _, _)| t >= cut);
            if let Some(c) = shrunk_capacity(self.recent.capacity(), self.recent.len()) {
                self.recent.shrink_to(c);
            }
        }
        self.recent.capacity()
    }

    /// Groups are three neighbouring size classes (attempts of one tool get the same answer).
    fn groups(&mut self, now: u64, fast_ns: u64, slow_ns: u64, busy_pct: u64) -> Groups {
        let slow_cut = now.saturating_sub(slow_ns);
        let fast_cut = now.saturating_sub(fast_ns);
        self.recent.retain(|&(t, _, _)| t >= slow_cut);
        let mut classes: Vec<u16> = self.recent.iter().map(|&(_, _, c)| c).collect();
        classes.sort_unstable();
        classes.dedup();
        let mut g = Groups::default();
        for c in classes {
            let near = |k: u16| k.abs_diff(c) <= 1;
            let (mut n_fast, mut n, mut busy, mut lo, mut hi) = (0u64, 0u64, 0u64, u64::MAX, 0u64);
            for &(t0, t1, k) in &self.recent {
                if !near(k) {
                    continue;
                }
                n += 1;
                n_fast += u64::from(t0 >= fast_cut);
                busy = busy.saturating_add(t1.saturating_sub(t0));
                lo = lo.min(t0);
                hi = hi.max(t1);
            }
            g.fast = g.fast.max(n_fast);
            let span = hi.saturating_sub(lo).max(1);
            if (busy as u128) * 100 >= (span as u128) * u128::from(busy_pct) {
                g.slow_busy = g.slow_busy.max(n);
            }
        }
        g
    }
}

pub struct LoginBruteForce {
    cfg: LoginBruteForceConfig,
    /// port → (service name, threshold, slow tier on)
    services: HashMap<u16, (String, u64, bool)>,
    window_ns: u64,
    slow_ns: u64,
    keys: KeyMap<(IpAddr, IpAddr, u16), Entry>,
}

impl LoginBruteForce {
    /// (keys, session slots held): what the memory budget counts.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let slots = self.keys.values().map(|e| e.recent.capacity()).sum();
        (self.keys.len(), slots)
    }

    pub fn new(cfg: LoginBruteForceConfig) -> Self {
        Self {
            services: cfg
                .services
                .iter()
                .map(|s| {
                    (
                        s.port,
                        (s.name.clone(), s.sessions.unwrap_or(cfg.sessions), s.slow),
                    )
                })
                .collect(),
            window_ns: ns(cfg.window_secs),
            slow_ns: ns(cfg.slow_window_secs.max(cfg.window_secs)),
            cfg,
            keys: KeyMap::new(),
        }
    }

    pub fn phase(&self, src: IpAddr, dst: IpAddr, port: u16) -> Phase {
        self.keys
            .get(&(src, dst, port))
            .map_or(Phase::Idle, |e| e.incident.phase())
    }
}

impl Detector for LoginBruteForce {
    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        let Some((name, threshold, slow_tier)) = self.services.get(&f.dst_port) else {
            return;
        };
        if !session::looks_failed(f, &self.cfg.session) {
            return;
        }
        let (window_ns, slow_ns, cap, now) = (self.window_ns, self.slow_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let Some(e) = cx.slot(
            &mut self.keys,
            (f.src_ip, f.dst_ip, f.dst_port),
            |e| &e.incident,
            || Entry {
                recent: VecDeque::new(),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        if e.recent.len() < cap {
            e.recent.push_back((
                f.first_ns,
                f.last_ns.max(f.first_ns),
                session::size_class(f),
            ));
        }
        let mut slow = false;
        let verdict = match e.incident.phase() {
            Phase::Alerting | Phase::CoolDown => {
                e.recent
                    .retain(|&(t, _, _)| t >= now.saturating_sub(slow_ns));
                Verdict::Noise
            }
            _ => {
                let g = e.groups(now, window_ns, slow_ns, cfg.slow_min_busy_percent);
                if g.fast >= *threshold {
                    Verdict::Alert
                } else if *slow_tier && g.slow_busy >= cfg.slow_sessions {
                    slow = true;
                    Verdict::Alert
                } else if g.fast >= cfg.suspicious_sessions
                    || g.slow_busy >= cfg.suspicious_sessions
                {
                    Verdict::Suspicious
                } else {
                    Verdict::Noise
                }
            }
        };
        let macs = cx.macs;
        let build = |inc: &Incident| {
            let mut a =
                base_alert(AlertKind::LOGIN_BRUTE_FORCE, now, f.first_ns, f.last_ns).with_flow(f);
            a.src_mac = macs.get(&f.src_ip);
            let why = if slow {
                format!(
                    "{}+ similar short failed-looking sessions back to back within {}s",
                    cfg.slow_sessions, cfg.slow_window_secs
                )
            } else {
                format!(
                    "{threshold}+ similar short failed-looking sessions within {}s",
                    cfg.window_secs
                )
            };
            a.description = format!(
                "{name} login brute force from {} against {}:{}: {why} ({} sessions); count = sessions",
                f.src_ip, f.dst_ip, f.dst_port, inc.count
            );
            a
        };
        cx.drive(&mut e.incident, f.last_ns, 1, verdict, build, |_, _| {});
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        let slow = self.slow_ns;
        cx.tick_map(
            &mut self.keys,
            w,
            slow,
            |e| &mut e.incident,
            |e, now| e.expire(now, slow),
        );
    }
}

impl AlertKind {
    /// Password guessing against FTP, Telnet, HTTP, mail and database logins.
    pub const LOGIN_BRUTE_FORCE: AlertKind = AlertKind::declare(&KindInfo {
        name: "login_brute_force",
        number: 6,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "password guessing against FTP, Telnet, HTTP, mail and database logins",
    });
}

/// The `login_brute_force` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::LOGIN_BRUTE_FORCE,
    section: "login_brute_force",
    build: |c| Box::new(LoginBruteForce::new(c.login_brute_force.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    #[test]
    fn ftp_burst_of_refusals() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let (a, b) = (ip("192.168.56.1"), ip("192.168.56.101"));
        let mut ev = Vec::new();
        for i in 0..30u64 {
            let bytes = if i % 2 == 0 { 739 } else { 871 };
            let f = session(
                "192.168.56.1",
                54000 + i as u16,
                "192.168.56.101",
                21,
                T0 + i * 2 * S,
                2,
                bytes,
            );
            ev.extend(e.observe(&Record::Flow(f)));
            let want = match i {
                0..=3 => Phase::Idle,
                4..=8 => Phase::Suspicious,
                // Back to back: the slow tier fires at 10, before the fast tier's 20.
                _ => Phase::Alerting,
            };
            assert_eq!(
                e.detector::<LoginBruteForce>().unwrap().phase(a, b, 21),
                want,
                "after session {}",
                i + 1
            );
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::LOGIN_BRUTE_FORCE);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 10);
        assert!(news[0].description.starts_with("ftp login brute force"));
        assert_eq!(finals(&ev)[0].count, 30);
    }

    /// 300 sessions alert, then the source goes quiet: its key stays through the cool-down,
    /// its sessions do not outlive the slow window.
    #[test]
    fn a_quiet_source_keeps_its_alert_but_not_its_sessions() {
        let mut cfg = DfaConfig::default();
        cfg.login_brute_force.slow_window_secs = 120;
        let mut e = crate::detect::dfa::Engine::new(cfg).unwrap();
        let (a, b) = (ip("192.0.2.1"), ip("198.51.100.21"));
        let mut ev = Vec::new();
        for i in 0..300u64 {
            let f = session(
                "192.0.2.1",
                20000 + i as u16,
                "198.51.100.21",
                21,
                T0 + i * S,
                1,
                800,
            );
            ev.extend(e.observe(&Record::Flow(f)));
        }
        assert_eq!(new_alerts(&ev, AlertKind::LOGIN_BRUTE_FORCE).len(), 1);
        let held = |e: &crate::detect::dfa::Engine| e.detector::<LoginBruteForce>().unwrap().held();
        let (keys, busy) = held(&e);
        assert_eq!(keys, 1);
        assert!(busy >= 120, "{busy} session slots");
        // 200 s without evidence: past the 120 s slow window, within the 600 s cool-down.
        for t in 0..=200 {
            ev.extend(e.tick(T0 + 300 * S + t * S));
        }
        let login = e.detector::<LoginBruteForce>().unwrap();
        assert_eq!(login.phase(a, b, 21), Phase::CoolDown);
        let (keys, quiet) = held(&e);
        assert_eq!(keys, 1);
        assert!(quiet <= 32, "{quiet} of {busy} session slots still held");
    }

    #[test]
    fn fast_parallel_burst() {
        // 4 parallel tasks, 1 s sessions with long pauses between rounds: 24 in 50 s but the
        // service is busy only ~40 % of the time in 4 overlapping lanes.
        let mut cfg = DfaConfig::default();
        cfg.login_brute_force.slow_sessions = 1000;
        let recs = (0..24u64).map(|i| {
            Record::Flow(session(
                "192.0.2.67",
                42000 + i as u16,
                "192.0.2.25",
                3389,
                T0 + (i / 4) * 10 * S,
                1,
                4000,
            ))
        });
        let (_, ev) = run(cfg, recs);
        let news = new_alerts(&ev, AlertKind::LOGIN_BRUTE_FORCE);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 20);
        assert!(news[0].description.starts_with("rdp login brute force"));
    }

    #[test]
    fn slow_telnet_guessing_back_to_back() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let (a, b) = (ip("192.0.2.66"), ip("192.0.2.23"));
        let mut ev = Vec::new();
        // One attempt every 10 s, each session 9 s long: 6 a minute, under the fast tier.
        for i in 0..30u64 {
            let f = session(
                "192.0.2.66",
                41000 + i as u16,
                "192.0.2.23",
                23,
                T0 + i * 10 * S,
                9,
                2000,
            );
            ev.extend(e.observe(&Record::Flow(f)));
            let want = match i {
                0..=3 => Phase::Idle,
                4..=8 => Phase::Suspicious,
                _ => Phase::Alerting,
            };
            assert_eq!(
                e.detector::<LoginBruteForce>().unwrap().phase(a, b, 23),
                want,
                "after session {}",
                i + 1
            );
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::LOGIN_BRUTE_FORCE);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 10);
        assert!(
            news[0].description.contains("back to back"),
            "{}",
            news[0].description
        );
    }

    #[test]
    fn no_slow_tier_for_http() {
        // A script fetching 30 small pages one after another without keep-alive.
        let recs = (0..30u64).map(|i| {
            Record::Flow(session(
                "10.0.0.9",
                43000 + i as u16,
                "10.0.0.8",
                80,
                T0 + i * 2 * S,
                2,
                900,
            ))
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn health_checks_and_varied_pages_stay_quiet() {
        let mut recs = Vec::new();
        // A MySQL health check every 5 s for an hour: 12 per minute.
        for i in 0..720u64 {
            recs.push(Record::Flow(session(
                "10.0.0.5",
                30000 + (i % 20000) as u16,
                "10.0.0.6",
                3306,
                T0 + i * 5 * S,
                0,
                900,
            )));
        }
        // 30 HTTP connections to one server in 10 s, all different sizes.
        for i in 0..30u64 {
            recs.push(Record::Flow(session(
                "10.0.0.7",
                40000 + i as u16,
                "10.0.0.8",
                80,
                T0 + i * S / 3,
                1,
                600 + i * i * 15,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty(), "{:?}", finals(&ev));
    }
}
