//! `safelink analyze` on every shared capture (tests/pcaps, copied from shared/data/pcaps):
//! completes, reads every packet (checked against capinfos), and its TCP/UDP flow counts equal
//! tshark's conversation counts (`tshark -q -z conv,tcp|udp`), an independent implementation.
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use support::run;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

fn pcaps() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 29,
        "expected the shared captures in {}",
        dir.display()
    );
    v
}

fn tool_available(t: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {t}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Captures where tshark's conversation table differs for a known reason of its own:
/// tshark opens a second UDP "conversation" for a reply whose timestamp precedes its request
/// (out-of-order capture timestamps); SafeLink keys flows canonically and keeps one.
const TSHARK_QUIRKS: &[&str] = &[
    "benign__snmpwalk.pcap",
    "amplification__snmp-reflection-src161.pcapng",
];

fn tshark_convs(p: &Path, proto: &str) -> usize {
    let out = run(Command::new("tshark")
        .args(["-n", "-q", "-z", &format!("conv,{proto}"), "-r"])
        .arg(p));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("<->"))
        .count()
}

#[test]
fn every_capture_replays_and_flow_counts_match_tshark() {
    let have_tshark = tool_available("tshark") && tool_available("capinfos");
    if !have_tshark {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark/capinfos missing in CI: run ./setup.sh --test"
        );
        eprintln!("SKIP tshark comparison: tshark not installed (./setup.sh --test installs it)");
    }
    let mut compared = 0;
    for p in pcaps() {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let out = run(Command::new(BIN)
            .args([
                "analyze",
                "--flows",
                "--summary",
                "--idle-timeout",
                "100000000",
                "--active-timeout",
                "100000000",
                "--closed-linger",
                "100000000",
                "--embryonic-timeout",
                "100000000",
            ])
            .arg(&p));
        let summary: serde_json::Value = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or_else(|| panic!("{name}: no summary"));
        let (mut tcp, mut udp) = (0usize, 0usize);
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["type"] == "flow" {
                match v["proto"].as_u64() {
                    Some(6) => tcp += 1,
                    Some(17) => udp += 1,
                    _ => {}
                }
            }
        }
        if !have_tshark {
            continue;
        }
        let cap = run(Command::new("capinfos").args(["-M", "-c", "-T"]).arg(&p));
        let packets: u64 = String::from_utf8_lossy(&cap.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.split('\t').nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        assert_eq!(
            summary["packets"].as_u64(),
            Some(packets),
            "{name}: packets read"
        );
        // Malformed = IP length beyond the frame; tshark flags exactly those frames too.
        let flagged = run(Command::new("tshark")
            .args([
                "-n",
                "-Y",
                "_ws.expert.message contains \"length exceeds packet length\"",
                "-r",
            ])
            .arg(&p));
        let flagged = String::from_utf8_lossy(&flagged.stdout).lines().count() as u64;
        assert_eq!(
            summary["malformed"].as_u64(),
            Some(flagged),
            "{name}: malformed"
        );
        let (t_tcp, t_udp) = (tshark_convs(&p, "tcp"), tshark_convs(&p, "udp"));
        if TSHARK_QUIRKS.contains(&name.as_str()) {
            assert_eq!(tcp, t_tcp, "{name}: tcp flows");
            assert!(
                udp + 1 == t_udp,
                "{name}: udp flows {udp} vs tshark {t_udp} (quirk: +1)"
            );
            continue;
        }
        assert_eq!(
            (tcp, udp),
            (t_tcp, t_udp),
            "{name}: tcp/udp flows vs tshark"
        );
        compared += 1;
    }
    if have_tshark {
        assert!(compared >= 25, "compared only {compared} captures");
    }
}

/// `path` rewritten as `tcpdump -s SNAP` would have captured it: header snaplen `SNAP`, every
/// record cut to its first `SNAP` bytes, `orig_len` kept (classic pcap only).
/// Returns the file and how many records were cut.
fn cut_to_snaplen(path: &Path, snap: u32) -> (Vec<u8>, usize) {
    let data = std::fs::read(path).unwrap();
    let big = match data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => panic!("{} is not a classic pcap", path.display()),
    };
    let u32_at = |b: &[u8], o: usize| {
        let v: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let put = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = data[..24].to_vec();
    out[16..20].copy_from_slice(&put(snap));
    let (mut at, mut cut) = (24, 0);
    while at + 16 <= data.len() {
        let incl = u32_at(&data, at + 8) as usize;
        let body = &data[at + 16..at + 16 + incl];
        let keep = incl.min(snap as usize);
        cut += usize::from(keep < incl);
        out.extend_from_slice(&data[at..at + 8]);
        out.extend_from_slice(&put(keep as u32));
        out.extend_from_slice(&data[at + 12..at + 16]);
        out.extend_from_slice(&body[..keep]);
        at += 16 + incl;
    }
    (out, cut)
}

fn replay(
    path: &Path,
) -> (
    safelink::replay::ReplaySummary,
    Vec<safelink::record::Record>,
) {
    let mut records = Vec::new();
    let s = safelink::replay::replay_file(
        path,
        &safelink::config::FlowTimeouts::default(),
        |_, _| {},
        |r| records.push(r),
    )
    .unwrap();
    (s, records)
}

#[test]
fn a_snaplen_cut_capture_is_analysed_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pcaps");
    for name in [
        "benign__ftp-session.pcap",
        "benign__https-firefox-browsing.pcap",
        "sshbrute__password-guessing-11conns.pcap",
        "loginbrute__ftp-bruteforce-30attempts.pcap",
    ] {
        let full = root.join(name);
        let cut = dir.path().join(name);
        let (bytes, n_cut) = cut_to_snaplen(&full, 96);
        assert!(n_cut > 0, "{name}: no frame longer than 96 bytes");
        std::fs::write(&cut, bytes).unwrap();
        let (fs, frec) = replay(&full);
        let (cs, crec) = replay(&cut);
        assert_eq!(
            cs.truncated, None,
            "{name}: the cut capture reads to its end"
        );
        assert_eq!(fs.truncated, None);
        assert_eq!(
            (cs.frames, cs.flows, cs.arp),
            (fs.frames, fs.flows, fs.arp),
            "{name}"
        );
        // Lengths come from the wire length and the headers within the first 96 bytes:
        // every record is the same, not only the counts.
        assert_eq!(crec, frec, "{name}");
        println!(
            "{name}: snaplen 96, {} frames ({n_cut} cut), {} flows, {} records, same as uncut",
            cs.frames,
            cs.flows,
            crec.len()
        );
    }
    // And through the CLI: exit 0, no "truncated" complaint.
    let cut = dir.path().join("benign__ftp-session.pcap");
    let out = run(Command::new(BIN).args(["analyze", "--summary"]).arg(&cut));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("truncated"), "{err}");
}
