//! The operator's view and levers (`safelink fleet …`): the sensors' heartbeats, the
//! published models, `promote` (canary → stable) and `rollback --to V` (a new version whose
//! content is V's model, signed, on both channels).
use serde::Serialize;
use time::OffsetDateTime;

use super::connect::{Layout, bucket_keys};
use super::learner::{latest_version, publish_model};
use super::manifest::{Bundle, Manifest};
use super::status::FleetStatus;
use super::{Channel, FleetError, names};
use crate::store::parse_rfc3339;

/// One row of `safelink fleet sensors`.
#[derive(Clone, Debug, Serialize)]
pub struct SensorRow {
    pub sensor_id: String,
    pub last_heartbeat: Option<String>,
    /// `online` (heartbeat within `stale_after`), else `stale`.
    pub state: &'static str,
    pub channel: Channel,
    pub model_version: Option<u64>,
    pub model_sha256: Option<String>,
    pub published: u64,
    pub buffered: u64,
    pub dropped: u64,
    pub refused: u64,
    pub last_refusal: Option<String>,
    pub last_refused_version: Option<u64>,
    pub daemon_version: String,
}

/// Every sensor that ever sent a heartbeat.
pub async fn sensors(
    layout: &Layout,
    stale_after: time::Duration,
) -> Result<Vec<SensorRow>, FleetError> {
    let mut out = Vec::new();
    let now = OffsetDateTime::now_utc();
    for k in bucket_keys(&layout.sensors).await? {
        let Some(raw) = layout.sensors.get(&k).await.map_err(FleetError::nats)? else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            continue;
        };
        let at = v["at"].as_str().map(str::to_string);
        let Ok(s) = serde_json::from_value::<FleetStatus>(v) else {
            continue;
        };
        let fresh = at
            .as_deref()
            .and_then(|a| parse_rfc3339(a).ok())
            .is_some_and(|t| now - t <= stale_after);
        out.push(SensorRow {
            sensor_id: s.sensor_id,
            last_heartbeat: at,
            state: if fresh { "online" } else { "stale" },
            channel: s.channel,
            model_version: s.model.as_ref().map(|m| m.version),
            model_sha256: s.model.as_ref().map(|m| m.sha256.clone()),
            published: s.published,
            buffered: s.buffered,
            dropped: s.dropped,
            refused: s.refused.values().sum(),
            last_refused_version: s.last_refusal.as_ref().and_then(|r| r.version),
            last_refusal: s.last_refusal.map(|r| r.reason),
            daemon_version: s.daemon_version,
        });
    }
    out.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
    Ok(out)
}

/// One row of `safelink fleet models`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    pub version: u64,
    pub sha256: String,
    pub created: String,
    pub expires: String,
    pub key_id: String,
    pub content_of: Option<u64>,
    pub lease_revision: u64,
    /// Channels pointing at it.
    pub channels: Vec<Channel>,
    pub metrics: Option<serde_json::Value>,
}

async fn manifest_of(
    layout: &Layout,
    key: &str,
) -> Result<Option<(Manifest, Vec<u8>)>, FleetError> {
    let Some(raw) = layout.models.get(key).await.map_err(FleetError::nats)? else {
        return Ok(None);
    };
    let b = Bundle::from_bytes(&raw).map_err(|e| FleetError::Invalid(format!("{key}: {e}")))?;
    let m = b
        .unverified_manifest()
        .map_err(|e| FleetError::Invalid(format!("{key}: {e}")))?;
    Ok(Some((m, raw.to_vec())))
}

/// Every published version, newest first, with the channels on it.
pub async fn models(layout: &Layout) -> Result<Vec<ModelRow>, FleetError> {
    let latest = latest_version(layout).await?;
    let mut on: Vec<(Channel, u64)> = Vec::new();
    for ch in [Channel::Stable, Channel::Canary] {
        if let Some((m, _)) = manifest_of(layout, ch.as_str()).await? {
            on.push((ch, m.version));
        }
    }
    let mut out = Vec::new();
    for v in (1..=latest).rev() {
        let Some((m, _)) = manifest_of(layout, &names::version_key(v)).await? else {
            continue;
        };
        out.push(ModelRow {
            version: m.version,
            sha256: m.sha256,
            created: m.created,
            expires: m.expires,
            key_id: m.key_id,
            content_of: m.content_of,
            lease_revision: m.lease_revision,
            channels: on
                .iter()
                .filter(|(_, x)| *x == v)
                .map(|(c, _)| *c)
                .collect(),
            metrics: m.metrics,
        });
    }
    Ok(out)
}

/// Moves version `v` to the stable channel. Refused unless `v` is on canary and no canary
/// sensor refused it, unless `force`.
pub async fn promote(layout: &Layout, v: u64, force: bool) -> Result<Manifest, FleetError> {
    let (m, raw) = manifest_of(layout, &names::version_key(v))
        .await?
        .ok_or_else(|| FleetError::Invalid(format!("no published version {v}")))?;
    if !force {
        let canary = manifest_of(layout, Channel::Canary.as_str())
            .await?
            .map(|x| x.0.version);
        if canary != Some(v) {
            return Err(FleetError::Invalid(format!(
                "version {v} is not on the canary channel (canary: {canary:?}); --force to promote anyway"
            )));
        }
        let rows = sensors(layout, time::Duration::days(3650)).await?;
        let refused: Vec<String> = rows
            .iter()
            .filter(|r| r.channel == Channel::Canary)
            .filter(|r| r.last_refused_version == Some(v))
            .map(|r| r.sensor_id.clone())
            .collect();
        if !refused.is_empty() {
            return Err(FleetError::Invalid(format!(
                "canary sensors refused version {v}: {}",
                refused.join(", ")
            )));
        }
        let serving = rows
            .iter()
            .filter(|r| r.channel == Channel::Canary && r.model_version == Some(v))
            .count();
        if serving == 0 {
            return Err(FleetError::Invalid(format!(
                "no canary sensor serves version {v} yet; --force to promote anyway"
            )));
        }
    }
    super::learner::put_channel(layout, Channel::Stable, &raw).await?;
    Ok(m)
}

/// Publishes a new version whose content is version `to`'s model, on both channels.
pub async fn rollback(
    layout: &Layout,
    fleet_id: &str,
    key: &ed25519_dalek::SigningKey,
    to: u64,
    valid_for: time::Duration,
) -> Result<Manifest, FleetError> {
    let raw = layout
        .models
        .get(names::version_key(to))
        .await
        .map_err(FleetError::nats)?
        .ok_or_else(|| FleetError::Invalid(format!("no published version {to}")))?;
    let b = Bundle::from_bytes(&raw).map_err(|e| FleetError::Invalid(e.to_string()))?;
    let old = b
        .unverified_manifest()
        .map_err(|e| FleetError::Invalid(e.to_string()))?;
    let model = b
        .model_bytes()
        .map_err(|e| FleetError::Invalid(e.to_string()))?;
    if crate::learn::models::sha256_hex(&model) != old.sha256 {
        return Err(FleetError::Invalid(format!(
            "version {to}: stored model does not match its digest"
        )));
    }
    let parent = latest_version(layout).await?;
    let signer = super::learner::Signer {
        fleet_id,
        key,
        valid_for,
    };
    let (_, m) = publish_model(
        layout,
        signer,
        &model,
        old.lease_revision,
        &[Channel::Canary, Channel::Stable],
        |m| {
            m.parent_version = Some(parent);
            m.content_of = Some(to);
            m.metrics = old.metrics.clone();
            m.golden = old.golden;
        },
    )
    .await?;
    Ok(m)
}
