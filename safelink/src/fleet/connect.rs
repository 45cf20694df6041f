//! The connection to the fleet server and the streams and buckets on it.
//!
//! [`connect`] returns at once even when the server is down (the client keeps reconnecting in
//! the background), so a sensor starts and detects without its server. [`ensure_layout`]
//! creates what is missing: the samples and alerts streams (with a deduplication window for
//! `Nats-Msg-Id`) and the `KV_*` streams of the buckets. The buckets' streams are created by
//! hand, with the settings async-nats' `create_key_value` would use, because that call fails
//! against nats-server 2.9 (it expects account-info fields 2.9 does not send); then
//! `get_key_value` opens them.
use std::time::Duration;

use async_nats::jetstream::{
    self,
    kv::Store as KvStore,
    stream::{Config as StreamConfig, DiscardPolicy, StorageType},
};
use tracing::info;

use super::{FleetError, FleetSection, names};

/// How long the server remembers a `Nats-Msg-Id` (replays inside it are not stored twice).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// The user and password of a `nats://USER:PASSWORD@HOST:PORT` URL (percent-decoded), which
/// async-nats 0.51 parses but does not send: [`connect`] and [`connect_now`] pass them on
/// explicitly. With several comma-separated servers, the first that names a user.
pub fn url_credentials(url: &str) -> Option<(String, String)> {
    url.split(',').find_map(|one| {
        let addr: async_nats::ServerAddr = one.trim().parse().ok()?;
        Some((
            percent_decode(addr.username()?),
            percent_decode(addr.password().unwrap_or_default()),
        ))
    })
}

/// `url` with the password of each server replaced by `<redacted>` (the user stays): what
/// the status, the heartbeat and the log show.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match one.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
                    None => one.to_string(),
                },
                None => one.to_string(),
            },
            None => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn with_url_credentials(o: async_nats::ConnectOptions, url: &str) -> async_nats::ConnectOptions {
    match url_credentials(url) {
        Some((user, pass)) => o.user_and_password(user, pass),
        None => o,
    }
}

/// Connects as `name` with `[fleet]`'s credentials and TLS settings.
pub async fn connect(
    url: &str,
    f: &FleetSection,
    name: &str,
    on_event: impl Fn(bool) + Send + Sync + 'static,
) -> Result<async_nats::Client, FleetError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)));
    o = with_url_credentials(o, url);
    if let Some(c) = &f.credentials {
        o = o
            .credentials_file(c)
            .await
            .map_err(|e| FleetError::Io(c.display().to_string(), e))?;
    }
    if let Some(ca) = &f.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    let on_event = std::sync::Arc::new(on_event);
    o = o.event_callback(move |ev| {
        let on_event = on_event.clone();
        async move {
            match ev {
                async_nats::Event::Connected => on_event(true),
                async_nats::Event::Disconnected | async_nats::Event::Closed => on_event(false),
                _ => {}
            }
        }
    });
    o.connect(url).await.map_err(FleetError::nats)
}

/// Connects for a one-shot command (operator, learner): fails if the server is not there.
pub async fn connect_now(
    url: &str,
    f: &FleetSection,
    name: &str,
) -> Result<async_nats::Client, FleetError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5));
    o = with_url_credentials(o, url);
    if let Some(c) = &f.credentials {
        o = o
            .credentials_file(c)
            .await
            .map_err(|e| FleetError::Io(c.display().to_string(), e))?;
    }
    if let Some(ca) = &f.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    o.connect(url).await.map_err(FleetError::nats)
}

fn stream(name: &str, subjects: &str) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![subjects.into()],
        storage: StorageType::File,
        duplicate_window: DEDUP_WINDOW,
        ..Default::default()
    }
}

/// The `KV_<bucket>` stream as `create_key_value` would make it.
fn kv_stream(bucket: &str, history: i64) -> StreamConfig {
    StreamConfig {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_message_size: -1,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Creates `cfg` unless a stream of that name exists.
async fn ensure_stream(js: &jetstream::Context, cfg: StreamConfig) -> Result<(), FleetError> {
    if js.get_stream(&cfg.name).await.is_ok() {
        return Ok(());
    }
    let name = cfg.name.clone();
    match js.create_stream(cfg).await {
        Ok(_) => {
            info!(stream = name, "created");
            Ok(())
        }
        // Another process created it meanwhile.
        Err(e) if js.get_stream(&name).await.is_ok() => {
            tracing::debug!(error = %e, "stream created concurrently");
            Ok(())
        }
        Err(e) => Err(FleetError::Nats(format!("creating stream {name}: {e}"))),
    }
}

/// Opens bucket `bucket`, creating its stream first if needed.
pub async fn kv(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
) -> Result<KvStore, FleetError> {
    ensure_stream(js, kv_stream(bucket, history)).await?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| FleetError::Nats(format!("bucket {bucket}: {e}")))
}

/// The buckets every fleet process uses.
pub struct Layout {
    pub js: jetstream::Context,
    pub models: KvStore,
    pub sensors: KvStore,
    pub lease: KvStore,
}

/// The keys of a bucket, sorted, from its stream's subject list: finite requests, one per
/// page. async-nats' `Store::keys` reads them through an ordered consumer that can wait forever
/// while the bucket is being written (a sensor's heartbeat every second hung `fleet sensors`
/// in a test). A deleted key is listed too (its delete marker is the subject's last message;
/// `get` answers `None` for it).
pub async fn bucket_keys(kv: &KvStore) -> Result<Vec<String>, FleetError> {
    use futures_util::StreamExt as _;
    let mut subjects = kv
        .stream
        .info_with_subjects(format!("{}>", kv.prefix))
        .await
        .map_err(FleetError::nats)?;
    let mut keys = Vec::new();
    while let Some(s) = subjects.next().await {
        let (subject, _) = s.map_err(FleetError::nats)?;
        if let Some(k) = subject.strip_prefix(kv.prefix.as_str()) {
            keys.push(k.to_string());
        }
    }
    keys.sort();
    Ok(keys)
}

/// Creates the streams and buckets that are missing and opens the buckets.
pub async fn ensure_layout(client: &async_nats::Client) -> Result<Layout, FleetError> {
    let js = jetstream::new(client.clone());
    ensure_stream(&js, stream(names::SAMPLES_STREAM, names::SAMPLES_SUBJECTS)).await?;
    ensure_stream(&js, stream(names::ALERTS_STREAM, names::ALERTS_SUBJECTS)).await?;
    let models = kv(&js, names::MODELS_BUCKET, 1).await?;
    let sensors = kv(&js, names::SENSORS_BUCKET, 1).await?;
    let lease = kv(&js, names::LEASE_BUCKET, 1).await?;
    Ok(Layout {
        js,
        models,
        sensors,
        lease,
    })
}

/// The object store of model files (history), created if missing.
pub async fn model_files(
    js: &jetstream::Context,
) -> Result<jetstream::object_store::ObjectStore, FleetError> {
    if let Ok(s) = js.get_object_store(names::MODEL_FILES).await {
        return Ok(s);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: names::MODEL_FILES.into(),
        storage: StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| FleetError::Nats(format!("object store {}: {e}", names::MODEL_FILES)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_a_url() {
        assert_eq!(
            url_credentials("tls://edge1:p%40ss%3Aw0rd@fleet.example:4222"),
            Some(("edge1".into(), "p@ss:w0rd".into()))
        );
        assert_eq!(url_credentials("nats://127.0.0.1:4222"), None);
        assert_eq!(
            redact_url("tls://edge1:secret@fleet.example:4222"),
            "tls://edge1:<redacted>@fleet.example:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            url_credentials("nats://a:4222, nats://u:p@b:4222"),
            Some(("u".into(), "p".into()))
        );
    }
}
