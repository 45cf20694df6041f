//! `GET /kinds`: the alert kinds this sensor raises, from the one list
//! ([`crate::alert::AlertKind::known`]), and `GET /features`: the feature table every alert's
//! `features` row follows. The dashboard reads both instead of copies of its own.
use axum::Json;
use serde::Serialize;
use serde_json::{Value, json};

use crate::alert::{AlertKind, AlertSource, Severity};

#[derive(Serialize)]
struct KindBody {
    kind: &'static str,
    number: u16,
    severity: Severity,
    source: AlertSource,
    summary: &'static str,
}

#[utoipa::path(
    get,
    path = "/kinds",
    tag = "alerts",
    summary = "The alert kinds: export number, severity, detector",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the kinds", body = Object)
    )
)]
pub async fn kinds() -> Json<Value> {
    let kinds: Vec<KindBody> = AlertKind::known()
        .iter()
        .map(|k| {
            let i = k.info();
            KindBody {
                kind: i.name,
                number: i.number,
                severity: i.severity,
                source: i.source,
                summary: i.summary,
            }
        })
        .collect();
    Json(json!({ "kinds": kinds }))
}

#[utoipa::path(
    get,
    path = "/features",
    tag = "alerts",
    summary = "The feature table of alerts' `features`",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the features", body = Object)
    )
)]
pub async fn features() -> Json<Value> {
    let table: Vec<Value> = crate::ann::FEATURES
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"index": i, "name": f.name, "unit": f.unit, "description": f.description}))
        .collect();
    Json(json!({
        "version": crate::ann::FEATURE_VECTOR_VERSION,
        "features": table,
    }))
}
