//! `safelink stats` and `safelink flows`: read the pinned maps of a running sensor. `flows`
//! prints every flow, then every outer flow of a tunnel, as the records they are so far
//! (`end_reason` `open`).
use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::Args;
use safelink::{
    capture::{
        epoch_offset_ns,
        maps::{SensorMaps, map_memory},
    },
    expiry::EndReason,
    record::{FlowRecord, OuterFlowRecord, Record},
};

#[derive(Debug, Args)]
pub struct PinArgs {
    /// Directory where the sensor pinned its maps.
    #[arg(long, value_name = "DIR", default_value_os_t = super::default_pin_dir(), env = "SAFELINK_PIN_DIR")]
    pin_dir: PathBuf,
}

pub fn stats(a: PinArgs) -> anyhow::Result<ExitCode> {
    let maps = SensorMaps::open_pinned(&a.pin_dir)?;
    let c = maps.counters()?;
    let mut obj: serde_json::Map<String, serde_json::Value> =
        c.named().map(|(k, v)| (k.to_owned(), v.into())).collect();
    let (cpus, mem) = map_memory(&a.pin_dir)?;
    obj.insert(
        "kernel_maps".into(),
        serde_json::json!({
            "possible_cpus": cpus,
            "total_bytes": mem.iter().map(|m| m.bytes).sum::<u64>(),
            "maps": mem,
        }),
    );
    println!("{}", serde_json::Value::Object(obj));
    Ok(ExitCode::SUCCESS)
}

pub fn flows(a: PinArgs) -> anyhow::Result<ExitCode> {
    let mut maps = SensorMaps::open_pinned(&a.pin_dir)?;
    let off = epoch_offset_ns();
    let mut out = std::io::stdout().lock();
    for (k, s) in maps.flows()? {
        let r = FlowRecord::new(&k, &s, off, EndReason::Open);
        serde_json::to_writer(&mut out, &r)?;
        writeln!(out)?;
    }
    for (k, s) in maps.outer_flows()? {
        if let Some(r) = OuterFlowRecord::new(&k, &s, off, EndReason::Open) {
            serde_json::to_writer(&mut out, &Record::OuterFlow(r))?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
