//! Store tests: ids, filters and paging through each index, index consistency after
//! update/archive, counts, and durability across a `kill -9` of the writing process.
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::keys::{IndexKeys, alert_ts, split_suffix, suffix};
use super::*;
use crate::alert::{AlertKind, AlertSource, Severity, Timestamp};

pub(crate) fn alert(ts: &str, kind: AlertKind, src: &str) -> Alert {
    Alert {
        id: 0,
        timestamp: Timestamp::parse(ts).unwrap(),
        source: AlertSource::Dfa,
        kind,
        severity: Severity::High,
        confidence: 1.0,
        src_ip: Some(src.parse().unwrap()),
        src_port: None,
        dest_ip: Some("192.0.2.10".parse().unwrap()),
        dest_port: Some(22),
        proto: "tcp".into(),
        src_mac: None,
        first_seen: Timestamp::parse(ts).unwrap(),
        last_seen: Timestamp::parse(ts).unwrap(),
        count: 1,
        description: format!("{} from {src}", kind.as_str()),
        community_id: Some("1:abc=".into()),
        tunnel: None,
        explanation: None,
        resembles: None,
        features: vec![0.5, 1.0],
    }
}

fn t(s: &str) -> time::OffsetDateTime {
    parse_rfc3339(s).unwrap()
}

fn ids(page: &Page) -> Vec<u64> {
    page.alerts.iter().map(|a| a.id).collect()
}

/// Every index entry points at an alert with that key, and every alert has its entries.
pub(super) fn assert_consistent(store: &Store) {
    let c = store.counts().unwrap();
    let store = store.trees().unwrap();
    let keys = |tree: &sled::Tree| -> BTreeSet<Vec<u8>> {
        tree.iter().keys().map(|k| k.unwrap().to_vec()).collect()
    };
    let (mut time, mut kind, mut src, mut archive_time) = Default::default();
    let (time, kind, src, archive_time): (
        &mut BTreeSet<_>,
        &mut BTreeSet<_>,
        &mut BTreeSet<_>,
        &mut BTreeSet<_>,
    ) = (&mut time, &mut kind, &mut src, &mut archive_time);
    for item in store.alerts.iter() {
        let (k, v) = item.unwrap();
        let a = decode(&v).unwrap();
        assert_eq!(k.as_ref(), a.id.to_be_bytes());
        let ik = IndexKeys::of(&a, alert_ts(&a), a.id);
        time.insert(ik.time);
        kind.insert(ik.kind);
        src.extend(ik.src);
        assert!(
            store.archive.get(&k).unwrap().is_none(),
            "alert {} in both trees",
            a.id
        );
    }
    for item in store.archive.iter() {
        let a = decode(&item.unwrap().1).unwrap();
        archive_time.insert(suffix(alert_ts(&a), a.id).to_vec());
    }
    assert_eq!(&keys(&store.idx_time), time, "idx_time");
    assert_eq!(&keys(&store.idx_kind), kind, "idx_kind");
    assert_eq!(&keys(&store.idx_src), src, "idx_src");
    assert_eq!(&keys(&store.archive_time), archive_time, "archive_time");
    assert_eq!(c.active, store.alerts.len() as u64);
    assert_eq!(c.archived, store.archive.len() as u64);
}

/// Ten alerts one minute apart: even ids port scans from .1, odd ids SSH brute force from .2.
pub(super) fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 1..=10u64 {
        let (kind, src) = if i % 2 == 0 {
            (AlertKind::PORT_SCAN, "198.51.100.1")
        } else {
            (AlertKind::SSH_BRUTE_FORCE, "198.51.100.2")
        };
        let id = store
            .insert(alert(&format!("2024-05-01T12:{i:02}:00Z"), kind, src))
            .unwrap();
        assert_eq!(id, i);
    }
    (dir, store)
}

#[test]
fn insert_assigns_monotonic_ids_that_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut a = alert("2024-05-01T12:00:00Z", AlertKind::PORT_SCAN, "198.51.100.1");
        a.id = 77; // ignored
        assert_eq!(store.insert(a.clone()).unwrap(), 1);
        assert_eq!(store.insert(a.clone()).unwrap(), 2);
        let got = store.get(2).unwrap().unwrap();
        assert_eq!(got, Alert { id: 2, ..a });
        assert_eq!(store.get(3).unwrap(), None);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .insert(alert("2024-05-01T12:00:00Z", AlertKind::ARP_SCAN, "::1"))
            .unwrap(),
        3
    );
    assert_consistent(&store);
}

#[test]
fn an_alert_with_a_time_it_cannot_index_does_not_exist() {
    // The time is an integer (`Timestamp`): a text that is not RFC 3339 is refused where it
    // enters, as JSON, so no such alert can reach the store.
    let mut v = serde_json::to_value(alert(
        "2024-05-01T12:00:00Z",
        AlertKind::PORT_SCAN,
        "198.51.100.1",
    ))
    .unwrap();
    v["timestamp"] = "yesterday".into();
    let e = serde_json::from_value::<Alert>(v).unwrap_err().to_string();
    assert!(e.contains("RFC 3339"), "{e}");
}

#[test]
fn query_filters_newest_first_through_each_index() {
    let (_dir, store) = seeded();
    let all = store.query(&AlertFilter::default(), 100, None).unwrap();
    assert_eq!(ids(&all), (1..=10).rev().collect::<Vec<_>>());
    assert_eq!(all.next_cursor, None);

    let by_kind = AlertFilter {
        kind: Some(AlertKind::PORT_SCAN),
        ..Default::default()
    };
    assert_eq!(
        ids(&store.query(&by_kind, 100, None).unwrap()),
        [10, 8, 6, 4, 2]
    );

    let ip: IpAddr = "198.51.100.2".parse().unwrap();
    let by_ip = AlertFilter {
        src_ip: Some(ip),
        ..Default::default()
    };
    assert_eq!(
        ids(&store.query(&by_ip, 100, None).unwrap()),
        [9, 7, 5, 3, 1]
    );
    let mapped = AlertFilter {
        src_ip: Some("::ffff:198.51.100.2".parse().unwrap()),
        ..by_ip.clone()
    };
    assert_eq!(
        ids(&store.query(&mapped, 100, None).unwrap()),
        [9, 7, 5, 3, 1]
    );
    let both = AlertFilter {
        kind: Some(AlertKind::PORT_SCAN),
        ..by_ip
    };
    assert!(store.query(&both, 100, None).unwrap().alerts.is_empty());

    let window = AlertFilter {
        since: Some(t("2024-05-01T12:03:00Z")),
        until: Some(t("2024-05-01T12:07:00Z")),
        ..Default::default()
    };
    assert_eq!(ids(&store.query(&window, 100, None).unwrap()), [6, 5, 4, 3]);
    let ann = AlertFilter {
        source: Some(AlertSource::Ann),
        ..Default::default()
    };
    assert!(store.query(&ann, 100, None).unwrap().alerts.is_empty());
    let empty = AlertFilter {
        since: Some(t("2024-05-02T00:00:00Z")),
        until: Some(t("2024-05-01T00:00:00Z")),
        ..Default::default()
    };
    assert!(store.query(&empty, 100, None).unwrap().alerts.is_empty());
}

#[test]
fn cursors_page_through_without_gaps_or_repeats() {
    let (_dir, store) = seeded();
    let filter = AlertFilter {
        kind: Some(AlertKind::SSH_BRUTE_FORCE),
        ..Default::default()
    };
    let p1 = store.query(&filter, 2, None).unwrap();
    assert_eq!(ids(&p1), [9, 7]);
    let p2 = store.query(&filter, 2, p1.next_cursor).unwrap();
    assert_eq!(ids(&p2), [5, 3]);
    let p3 = store.query(&filter, 2, p2.next_cursor).unwrap();
    assert_eq!(ids(&p3), [1]);
    assert_eq!(p3.next_cursor, None);
    // Exactly full last page: no cursor to an empty page.
    let p = store.query(&AlertFilter::default(), 10, None).unwrap();
    assert_eq!((p.alerts.len(), p.next_cursor), (10, None));
    // A cursor round-trips through its string form.
    let c: Cursor = p1.next_cursor.unwrap().to_string().parse().unwrap();
    assert_eq!(ids(&store.query(&filter, 2, Some(c)).unwrap()), [5, 3]);
}

#[test]
fn update_keeps_indexes_consistent() {
    let (_dir, store) = seeded();
    let updated = store
        .update(4, |a| {
            a.count = 42;
            a.last_seen = Timestamp::parse("2024-05-01T13:00:00Z").unwrap();
        })
        .unwrap();
    assert_eq!((updated.id, updated.count), (4, 42));
    assert_eq!(store.get(4).unwrap().unwrap(), updated);
    assert_consistent(&store);

    // Changing indexed fields moves the index entries.
    store
        .update(4, |a| {
            a.id = 999; // ignored
            a.kind = AlertKind::ARP_SPOOF;
            a.src_ip = Some("203.0.113.9".parse().unwrap());
            a.timestamp = Timestamp::parse("2024-05-01T12:30:00Z").unwrap();
        })
        .unwrap();
    assert_consistent(&store);
    let spoof = AlertFilter {
        kind: Some(AlertKind::ARP_SPOOF),
        ..Default::default()
    };
    assert_eq!(ids(&store.query(&spoof, 10, None).unwrap()), [4]);
    let scans = AlertFilter {
        kind: Some(AlertKind::PORT_SCAN),
        ..Default::default()
    };
    assert_eq!(ids(&store.query(&scans, 10, None).unwrap()), [10, 8, 6, 2]);
    assert_eq!(
        store
            .query(&AlertFilter::default(), 1, None)
            .unwrap()
            .alerts[0]
            .id,
        4
    );
    assert_eq!(store.get(999).unwrap(), None);

    assert!(matches!(
        store.update(11, |a| a.count = 1),
        Err(StoreError::NotFound(11))
    ));
    assert_eq!(
        store.get(5).unwrap().unwrap().timestamp.to_string(),
        "2024-05-01T12:05:00.000000Z"
    );
    assert_consistent(&store);
}

#[test]
fn archive_by_ids_and_age_moves_alerts_and_index_entries() {
    let (_dir, store) = seeded();
    assert_eq!(store.archive_ids(&[2, 3, 3, 99]).unwrap(), 2);
    assert_eq!(store.archive_ids(&[2]).unwrap(), 0);
    assert_consistent(&store);
    assert_eq!(store.get(2).unwrap(), None);
    assert_eq!(store.get_archived(2).unwrap().unwrap().id, 2);

    // Strictly before 12:06 → 1, 4, 5 (2 and 3 are already archived).
    assert_eq!(
        store.archive_older_than(t("2024-05-01T12:06:00Z")).unwrap(),
        3
    );
    assert_consistent(&store);
    let active = store.query(&AlertFilter::default(), 100, None).unwrap();
    assert_eq!(ids(&active), [10, 9, 8, 7, 6]);
    let archived = store
        .list_archive(&AlertFilter::default(), 2, None)
        .unwrap();
    assert_eq!(ids(&archived), [5, 4]);
    let rest = store
        .list_archive(&AlertFilter::default(), 10, archived.next_cursor)
        .unwrap();
    assert_eq!((ids(&rest), rest.next_cursor), (vec![3, 2, 1], None));
    let ssh = AlertFilter {
        kind: Some(AlertKind::SSH_BRUTE_FORCE),
        ..Default::default()
    };
    assert_eq!(ids(&store.list_archive(&ssh, 10, None).unwrap()), [5, 3, 1]);

    // Archived alerts can still be updated (the detector may still be counting).
    let a = store.update(3, |a| a.count = 7).unwrap();
    assert_eq!(store.get_archived(3).unwrap().unwrap(), a);
    assert_consistent(&store);

    let c = store.counts().unwrap();
    assert_eq!((c.active, c.archived), (5, 5));
    assert_eq!(
        c.latest_alert,
        Some(Timestamp::parse("2024-05-01T12:10:00Z").unwrap())
    );
    assert_eq!(
        store.archive_older_than(t("2030-01-01T00:00:00Z")).unwrap(),
        5
    );
    let c = store.counts().unwrap();
    assert_eq!((c.active, c.archived), (0, 10));
    assert_eq!(
        c.latest_alert,
        Some(Timestamp::parse("2024-05-01T12:10:00Z").unwrap())
    );
    assert_consistent(&store);
}

#[test]
fn counts_of_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            active: 0,
            archived: 0,
            latest_alert: None
        }
    );
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .trees()
            .unwrap()
            .meta
            .insert(super::META_VERSION, &99u64.to_be_bytes())
            .unwrap();
        store.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );
}

const WRITER_ENV: &str = "SAFELINK_STORE_DURABILITY_WRITER";

/// Child half of `acknowledged_writes_survive_kill_9`: a no-op unless started by it.
/// Inserts and updates forever, printing `INS id` / `UPD id count` after each acknowledged
/// write, until the parent kills it with SIGKILL. Every other round is a group commit: four
/// deferred inserts and a deferred update, acknowledged together after one commit.
#[test]
fn durability_writer_child() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let store = Store::open(dir).unwrap();
    let mut out = std::io::stdout().lock();
    let a = || alert("2024-05-01T12:00:00Z", AlertKind::SYN_FLOOD, "198.51.100.7");
    for i in 0u64.. {
        if i % 2 == 1 {
            let ids: Vec<u64> = (0..4)
                .map(|_| store.insert_deferred(a()).unwrap())
                .collect();
            let count = ids[0] * 10;
            store.update_deferred(ids[0], |a| a.count = count).unwrap();
            store.commit().unwrap();
            for id in &ids {
                writeln!(out, "INS {id}").unwrap();
            }
            writeln!(out, "UPD {} {count}", ids[0]).unwrap();
            out.flush().unwrap();
            continue;
        }
        let id = store.insert(a()).unwrap();
        writeln!(out, "INS {id}").unwrap();
        out.flush().unwrap();
        if i % 3 == 0 {
            let count = id * 10;
            store.update(id, |a| a.count = count).unwrap();
            writeln!(out, "UPD {id} {count}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::durability_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut inserted, mut updated) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while inserted.len() < 80 && Instant::now() < deadline {
        let line = lines.next().expect("writer exited early").unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["INS", id] => inserted.push(id.parse::<u64>().unwrap()),
            ["UPD", id, count] => {
                updated.push((id.parse::<u64>().unwrap(), count.parse::<u64>().unwrap()))
            }
            _ => {} // libtest's own output
        }
    }
    // SIGKILL right after the last acknowledgement: no chance to flush on exit.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(inserted.len() >= 80, "writer too slow");

    let store = Store::open(dir.path()).unwrap();
    for &id in &inserted {
        assert!(
            store.get(id).unwrap().is_some(),
            "acknowledged insert {id} lost"
        );
    }
    for &(id, count) in &updated {
        assert_eq!(
            store.get(id).unwrap().unwrap().count,
            count,
            "acknowledged update {id} lost"
        );
    }
    assert_consistent(&store);
    let listed = store.query(&AlertFilter::default(), 10_000, None).unwrap();
    assert!(listed.alerts.len() >= inserted.len());
    // Index suffixes and ids agree after recovery.
    for item in store.trees().unwrap().idx_time.iter() {
        let (_, id) = split_suffix(&item.unwrap().0).unwrap();
        assert!(store.get(id).unwrap().is_some());
    }
}

#[test]
fn reopen_swaps_the_database_under_every_clone() {
    let (_d, store) = seeded();
    let clone = store.clone();
    // A call in flight on another thread holds the database: reopen waits for it.
    let held = store.trees().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let t0 = Instant::now();
    store.reopen().unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t0.elapsed()
    );
    releaser.join().unwrap();
    assert_eq!(clone.counts().unwrap().active, 10);
    assert_eq!(
        clone
            .insert_deferred(alert(
                "2024-05-01T13:00:00Z",
                AlertKind::PORT_SCAN,
                "198.51.100.3"
            ))
            .unwrap(),
        11
    );
    store.commit().unwrap();
    assert_consistent(&clone);
    let h = store.health();
    assert_eq!((h.state, h.recoveries), (HealthState::Ok, 0));
}

#[test]
fn a_failed_write_marks_the_store_degraded_until_it_recovers() {
    let (_d, store) = seeded();
    let e = StoreError::Sled(sled::Error::Io(std::io::Error::other(
        "No space left on device",
    )));
    assert!(store.note_error(&e));
    assert!(!store.note_error(&StoreError::NotFound(3)));
    let h = store.health();
    assert_eq!(h.state, HealthState::Degraded);
    assert_eq!(
        h.last_error.as_deref(),
        Some("alert store (sled): IO error: No space left on device")
    );
    assert!(h.degraded_since.is_some() && h.bytes > 0);
    assert!(store.note_recovered().is_some());
    let h = store.health();
    assert_eq!((h.state, h.recoveries), (HealthState::Ok, 1));
    assert!(h.degraded_since.is_none() && h.last_error.is_some());
    assert!(store.note_recovered().is_none());
}

#[test]
fn pruning_deletes_the_oldest_alerts_of_both_trees() {
    let (_d, store) = seeded();
    assert_eq!(store.archive_ids(&[1, 3, 6]).unwrap(), 3);
    assert_eq!(store.prune_oldest(4).unwrap(), 4);
    assert_consistent(&store);
    let left: Vec<u64> = (1..=10)
        .filter(|&i| store.get(i).unwrap().is_some() || store.get_archived(i).unwrap().is_some())
        .collect();
    assert_eq!(left, [5, 6, 7, 8, 9, 10]);
    assert_eq!(store.prune_oldest(100).unwrap(), 6);
    assert_eq!(store.prune_oldest(1).unwrap(), 0);
    assert_consistent(&store);
}

#[test]
fn the_size_cap_keeps_the_newest_alerts_and_never_empties_the_store() {
    const CAP: u64 = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.set_max_bytes(CAP);
    let (mut pruned, mut max_size) = (0, 0);
    let mut last = 0;
    for round in 0..300u64 {
        for i in 0..50u64 {
            let ts = format!(
                "2024-05-{:02}T{:02}:{:02}:{:02}Z",
                1 + round / 60 / 24,
                round / 60 % 24,
                round % 60,
                i
            );
            last = store
                .insert_deferred(alert(&ts, AlertKind::PORT_SCAN, "198.51.100.1"))
                .unwrap();
        }
        store.commit().unwrap();
        pruned += store.enforce_cap().unwrap();
        max_size = max_size.max(store.size_on_disk().unwrap());
    }
    let c = store.counts().unwrap();
    eprintln!(
        "15000 alerts, cap {CAP}: kept {}, pruned {pruned}, largest size {max_size}",
        c.active
    );
    assert_eq!(c.active + pruned, 15000);
    // The count that first filled the cap (~1000 here), minus at most a tenth.
    assert!(pruned > 0 && c.active >= 500, "{} kept", c.active);
    assert_eq!(store.health().alerts_pruned, pruned);
    // Oldest first: what is left are the newest ids, without gaps.
    let page = store.query(&AlertFilter::default(), 10_000, None).unwrap();
    let mut kept = ids(&page);
    kept.sort_unstable();
    assert_eq!(kept, ((last - c.active + 1)..=last).collect::<Vec<_>>());
    // sled's files overshoot by its segment slack (512 KiB segments), not without bound.
    assert!(max_size <= 2 * CAP, "{max_size}");
    assert_consistent(&store);
}
