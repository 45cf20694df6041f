//! The live sniffer: owns the loaded XDP object and its attachment, attaches/detaches on
//! request (API start/stop, shutdown), and keeps the status snapshot that `GET /status` reads.
use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use aya::Ebpf;
use tracing::info;

use crate::{
    alert::AlertSource,
    api::{ControlError, ControlFuture, SensorControl, SensorStatus},
    capture::loader::{self, AttachMode, Attachment},
};

/// Counters the sweeper refreshes once per sweep (cheap to read).
#[derive(Clone, Copy, Debug, Default)]
pub struct Live {
    pub packets: u64,
    pub flows: u64,
    pub ringbuf_events: u64,
    pub ringbuf_drops: u64,
}

pub struct Sensor {
    ebpf: Mutex<Ebpf>,
    attachment: Mutex<Option<Attachment>>,
    pub iface: String,
    mode: AttachMode,
    egress: bool,
    started: Instant,
    pub live: Mutex<Live>,
    sources: Vec<AlertSource>,
    /// Stages that stopped on their own (shown by `GET /status`).
    pub stages: super::stages::StageBoard,
}

impl Sensor {
    pub fn new(
        ebpf: Ebpf,
        iface: String,
        mode: AttachMode,
        egress: bool,
        sources: Vec<AlertSource>,
    ) -> Self {
        Self {
            ebpf: Mutex::new(ebpf),
            attachment: Mutex::new(None),
            iface,
            mode,
            egress,
            started: Instant::now(),
            live: Mutex::new(Live::default()),
            sources,
            stages: super::stages::StageBoard::default(),
        }
    }

    /// Attaches the program; `Ok(None)` when it already was.
    pub fn attach(&self) -> anyhow::Result<Option<String>> {
        let mut att = self.attachment.lock().expect("attachment lock");
        if att.is_some() {
            return Ok(None);
        }
        let mut ebpf = self.ebpf.lock().expect("ebpf lock");
        let a = loader::attach(&mut ebpf, &self.iface, self.mode, self.egress)?;
        let mode = a.mode_name().to_owned();
        *att = Some(a);
        Ok(Some(mode))
    }

    /// Detaches the program; `false` when it was not attached. Maps and flow state stay.
    pub fn detach(&self) -> anyhow::Result<bool> {
        let mut att = self.attachment.lock().expect("attachment lock");
        let Some(a) = att.take() else {
            return Ok(false);
        };
        let mut ebpf = self.ebpf.lock().expect("ebpf lock");
        loader::detach(&mut ebpf, a)?;
        Ok(true)
    }

    pub fn attached_mode(&self) -> Option<String> {
        self.attachment
            .lock()
            .expect("attachment lock")
            .as_ref()
            .map(|a| a.mode_name().to_owned())
    }
}

/// [`SensorControl`] for the API.
/// The API's view of the sensor; starting the sniffer also starts the learner (if any).
pub struct Control(pub Arc<Sensor>, pub Option<crate::learn::Learner>);

impl SensorControl for Control {
    fn status(&self) -> SensorStatus {
        let live = *self.0.live.lock().expect("live lock");
        let mode = self.0.attached_mode();
        SensorStatus {
            running: mode.is_some(),
            interface: Some(self.0.iface.clone()),
            xdp_mode: mode,
            uptime_secs: self.0.started.elapsed().as_secs(),
            packets: live.packets,
            flows: live.flows,
            ringbuf_events: live.ringbuf_events,
            ringbuf_drops: live.ringbuf_drops,
            detection_sources: self.0.sources.clone(),
            degraded: self.0.stages.degraded(),
        }
    }

    fn start(&self) -> ControlFuture<'_> {
        let s = self.0.clone();
        let learner = self.1.clone();
        Box::pin(async move {
            let r = tokio::task::spawn_blocking(move || s.attach())
                .await
                .map_err(|e| ControlError::Failed(e.to_string()))?;
            match r {
                Ok(Some(mode)) => {
                    info!(mode, "sniffer started through the API");
                    if let Some(l) = learner {
                        l.start();
                    }
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(ControlError::Failed(format!("{e:#}"))),
            }
        })
    }

    fn stop(&self) -> ControlFuture<'_> {
        let s = self.0.clone();
        Box::pin(async move {
            let r = tokio::task::spawn_blocking(move || s.detach())
                .await
                .map_err(|e| ControlError::Failed(e.to_string()))?;
            match r {
                Ok(changed) => {
                    if changed {
                        info!("sniffer stopped through the API");
                    }
                    Ok(changed)
                }
                Err(e) => Err(ControlError::Failed(format!("{e:#}"))),
            }
        })
    }
}
