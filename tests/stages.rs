//! Dead stages (root): when any long-running stage of `safelink run` stops on its own (the
//! ring reader, the sweeper, the detection thread, the alert sink, the API, retention),
//! `GET /status` shows `health: degraded` naming it, then the daemon detaches the XDP program,
//! drains, and exits non-zero naming the stage, so systemd's `Restart=on-failure` restarts
//! it. The stage is made to die by the daemon's test hook `SAFELINK_FAULT_STAGE`.
mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{ATTACH_WITHIN, Lab, kernel_test_can_run, run, spawn_attached};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

fn xdp_attached(lab: &Lab) -> bool {
    let out = run(Command::new("ip").args(["-n", &lab.ns_a, "link", "show", &lab.if_a]));
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn status(lab: &Lab, api: &str) -> Option<Value> {
    let out = lab
        .cmd_in_a("curl")
        .args(["-sS", "--max-time", "2", &format!("http://{api}/status")])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// `safelink run` on the lab's interface (skb mode), API on `listen`, the fault hook set to
/// `fault` when given; returns once it printed ATTACHED.
fn start(lab: &Lab, data: &std::path::Path, listen: &str, fault: Option<&str>) -> Child {
    let mut cmd = lab.sensor_cmd(BIN, data);
    cmd.args(["--xdp-mode", "skb"])
        .args(["--listen", listen, "--status-interval", "0"])
        .stderr(if fault.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(stage) = fault {
        cmd.env("SAFELINK_FAULT_STAGE", stage);
    }
    spawn_attached(cmd, ATTACH_WITHIN, None)
}

#[test]
fn a_dead_stage_degrades_status_then_ends_the_daemon_non_zero() {
    if !kernel_test_can_run("stages", &["curl"]) {
        return;
    }
    let lab = Lab::new("stg");
    for (i, stage) in ["ring_reader", "sweeper", "detection", "sink", "retention"]
        .iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let api = format!("127.0.0.1:{}", 18100 + i);
        let t0 = Instant::now();
        let child = start(&lab, dir.path(), &api, Some(stage));
        assert!(xdp_attached(&lab), "{stage}: attached");
        // The stage dies after 1 s; /status must say so before the daemon goes.
        let mut degraded = None;
        while degraded.is_none() && t0.elapsed() < Duration::from_secs(8) {
            if let Some(v) = status(&lab, &api)
                && v["health"] == "degraded"
            {
                degraded = Some(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let v = degraded.unwrap_or_else(|| panic!("{stage}: /status never said degraded"));
        let named = v["degraded_stages"][0]["stage"]
            .as_str()
            .unwrap()
            .to_owned();
        // The sink's death ends the detection thread, which is what the daemon sees first.
        let expect = if *stage == "sink" { "detection" } else { stage };
        assert_eq!(named, expect, "{stage}: {v}");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stage}: exit status {}", out.status);
        assert!(
            err.contains(&format!("the {expect} stage stopped")),
            "{stage}: stderr does not name the stage:\n{err}"
        );
        if *stage == "sink" {
            assert!(err.contains("the alert sink thread stopped"), "{err}");
        }
        assert!(!xdp_attached(&lab), "{stage}: the program was detached");
        eprintln!(
            "stages: {stage}: degraded in /status, exit {} after {:?}",
            out.status,
            t0.elapsed()
        );
    }
}

#[test]
fn sigterm_right_after_attach_still_detaches() {
    if !kernel_test_can_run("stages/sigterm", &[]) {
        return;
    }
    let lab = Lab::new("sgt");
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(&lab, dir.path(), "127.0.0.1:0", None);
    // SAFETY: plain signal to our own child, the moment it reports the attachment.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "exit {st}");
    assert!(!xdp_attached(&lab), "detached after an immediate SIGTERM");
}
