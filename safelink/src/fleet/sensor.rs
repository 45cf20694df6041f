//! A fleet sensor's running parts, started by the daemon with `--fleet URL`: the store tailer,
//! the sender, the heartbeat and the model watcher ([`FleetSensor::start`]), stopped in order
//! by [`FleetSensor::stop`] (what was not published stays on disk for the next start).
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::buffer::Buffer;
use super::manifest::Verifier;
use super::status::FleetHandle;
use super::watcher::Watcher;
use super::{FleetError, FleetSection, connect, publisher};
use crate::ann::ModelHandle;
use crate::store::Store;

/// How often the tailer reads the store.
pub const TAIL_EVERY: Duration = Duration::from_millis(500);

/// The running fleet side of a sensor.
pub struct FleetSensor {
    pub handle: FleetHandle,
    stop_tx: watch::Sender<bool>,
    stop_tail: Arc<AtomicBool>,
    tailer: Option<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FleetSensor {
    /// Starts everything (the server may be down: it connects in the background). The fleet's
    /// files live in `<data_dir>/fleet`; accepted models go to `model_dir`.
    pub async fn start(
        f: &FleetSection,
        store: Store,
        model: ModelHandle,
        data_dir: &Path,
        model_dir: &Path,
        max_model_bytes: u64,
    ) -> Result<FleetSensor, FleetError> {
        f.validate().map_err(FleetError::Invalid)?;
        let url = f.url.clone().unwrap_or_default();
        let sensor = f.sensor_id();
        // The status and the heartbeat (which every reader of the sensors bucket sees) carry
        // the URL without its password.
        let shown = connect::redact_url(&url);
        let handle = FleetHandle::new(&sensor, f.channel, &shown);
        super::status::describe();
        let dir = data_dir.join("fleet");
        std::fs::create_dir_all(&dir).map_err(|e| FleetError::Io(dir.display().to_string(), e))?;
        let buf = Arc::new(Mutex::new(Buffer::open(
            &dir.join("buffer"),
            f.buffer_max_messages,
        )?));
        publisher::refresh(&handle, &buf.lock().expect("lock"));
        let verifier = Verifier::from_config(f).map_err(FleetError::Invalid)?;
        let watcher = Watcher::open(
            verifier,
            f.channel,
            model,
            handle.clone(),
            &dir,
            model_dir,
            max_model_bytes,
        )?;
        let h2 = handle.clone();
        let client = connect::connect(&url, f, &format!("safelink-sensor-{sensor}"), move |up| {
            h2.set_connected(up)
        })
        .await?;
        if client.connection_state() == async_nats::connection::State::Connected {
            handle.set_connected(true);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tail = Arc::new(AtomicBool::new(false));
        let tailer = publisher::spawn_tailer(
            store,
            buf.clone(),
            handle.clone(),
            TAIL_EVERY,
            stop_tail.clone(),
        );
        let js = async_nats::jetstream::new(client.clone());
        let mut tasks = vec![tokio::spawn(publisher::run_sender(
            js,
            sensor.clone(),
            buf,
            handle.clone(),
            stop_rx.clone(),
        ))];
        // The buckets: once the server answers (it may be down at start).
        let (h3, every, mut stop) = (
            handle.clone(),
            Duration::from_secs(f.heartbeat_s.max(1)),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let layout = loop {
                match connect::ensure_layout(&client).await {
                    Ok(l) => break l,
                    Err(e) => tracing::debug!(error = %e, "fleet: buckets not reachable yet"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            };
            info!("fleet: connected to the model and sensor buckets");
            let hb = tokio::spawn(publisher::run_heartbeat(
                layout.sensors,
                h3,
                every,
                stop.clone(),
            ));
            watcher.run(layout.models, stop).await;
            let _ = hb.await;
        }));
        info!(
            sensor,
            channel = f.channel.as_str(),
            url = shown,
            "fleet mode"
        );
        Ok(FleetSensor {
            handle,
            stop_tx,
            stop_tail,
            tailer: Some(tailer),
            tasks,
        })
    }

    /// Stops the tasks and the tailer (after one last tail round, flushed to disk).
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        self.stop_tail
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for mut t in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(3), &mut t)
                .await
                .is_err()
            {
                // E.g. a publish waiting for an acknowledgement from a server that is gone:
                // what it was sending stays queued on disk (and is deduplicated if it did
                // arrive).
                warn!("fleet: a task did not stop in time; aborted");
                t.abort();
                let _ = t.await;
            }
        }
        if let Some(t) = self.tailer.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
