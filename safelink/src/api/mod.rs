//! The HTTP API (axum): JSON status and sniffer control, alert listing with filters and
//! cursor paging, CSV and EVE-style exports, archiving, and the ANN model (`GET /model`,
//! `POST /model/load`, see `model.rs`), the continuous learner (`/learning/*`, `/models`,
//! see `learning.rs`), privacy (`DELETE /privacy/subject`, `GET /privacy/report`, see
//! `privacy.rs`), fleet mode (`GET /fleet/status`, `fleet.rs`), the dashboard page (`GET /`, `dashboard.rs`) and the Prometheus metrics
//! (`GET /metrics`, `metrics.rs`). Owns the routes and their OpenAPI document (`GET
//! /openapi.json`, generated from the handlers' `#[utoipa::path]` by the one route list), the bearer-token
//! policy ([`AuthPolicy`]), the limits (connections and body size, `limits.rs`) and the JSON
//! error shape (`{"error": "..."}` for every 4xx/5xx, unknown routes and axum's extractor
//! rejections included).
//!
//! The daemon provides a [`SensorControl`] and a [`crate::store::Store`], builds an
//! [`ApiState`], then `serve_with(listener, router(state), max_connections, shutdown)`.
mod alerts;
mod auth;
pub mod config;
mod control;
mod dashboard;
mod error;
mod export;
mod fleet;
mod kinds;
mod learning;
mod limits;
mod metrics;
mod model;
mod params;
mod privacy;
mod status;
mod verdict;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{ApiConfigError, AuthPolicy};
pub use control::{ControlError, ControlFuture, SensorControl, SensorStatus};
pub use error::ApiError;
pub use export::{CSV_HEADER, to_csv, to_eve_lines};
pub use limits::IDLE_TIMEOUT;
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use params::{DEFAULT_LIMIT, MAX_LIMIT};

use crate::store::{Store, StoreError};

/// Where the API listens unless configured otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000));

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    store: Store,
    sensor: Arc<dyn SensorControl>,
    auth: Arc<AuthPolicy>,
    /// The live ANN model, for `GET /model` and `POST /model/load` (404 when absent).
    model: Option<crate::ann::ModelHandle>,
    /// The continuous learner, for `/learning/*` and `/models` (404 when absent).
    learner: Option<crate::learn::Learner>,
    /// Fleet mode, for `GET /fleet/status` (404 when absent).
    fleet: Option<crate::fleet::FleetHandle>,
    /// The privacy policy of the stored data (forms matched by `DELETE /privacy/subject`).
    privacy: Arc<crate::privacy::Policy>,
    limits: Arc<Limits>,
}

/// The request and model-file limits of `[api]`.
#[derive(Clone, Debug)]
struct Limits {
    max_body_bytes: usize,
    /// `POST /model/load` reads only from here (none: it refuses every path).
    model_dir: Option<PathBuf>,
    max_model_bytes: u64,
}

impl ApiState {
    /// `auth` comes from [`AuthPolicy::new`] with the address the listener is bound to.
    pub fn new(store: Store, sensor: Arc<dyn SensorControl>, auth: AuthPolicy) -> Self {
        let defaults = config::ApiConfig::default();
        ApiState {
            store,
            sensor,
            auth: Arc::new(auth),
            model: None,
            learner: None,
            fleet: None,
            privacy: Arc::new(crate::privacy::Policy::default()),
            limits: Arc::new(Limits {
                max_body_bytes: defaults.max_body_bytes,
                model_dir: None,
                max_model_bytes: defaults.max_model_bytes,
            }),
        }
    }

    /// The limits of `[api]`: request body size, and where and how large the model files of
    /// `POST /model/load` may be (`model_dir`, already resolved by
    /// [`config::ApiConfig::model_dir`]).
    pub fn with_limits(mut self, cfg: &config::ApiConfig, model_dir: PathBuf) -> Self {
        self.limits = Arc::new(Limits {
            max_body_bytes: cfg.max_body_bytes,
            model_dir: Some(model_dir),
            max_model_bytes: cfg.max_model_bytes,
        });
        self
    }

    /// The privacy policy the store was written with (default: addresses as seen).
    pub fn with_privacy(mut self, policy: crate::privacy::Policy) -> Self {
        self.privacy = Arc::new(policy);
        self
    }

    /// Serves `GET /model` and `POST /model/load` from this handle (the detector's).
    pub fn with_model(mut self, model: crate::ann::ModelHandle) -> Self {
        self.model = Some(model);
        self
    }

    /// Serves `/learning/*` and `/models` from this learner.
    pub fn with_learner(mut self, learner: crate::learn::Learner) -> Self {
        self.learner = Some(learner);
        self
    }

    /// Serves `GET /fleet/status` from this sensor's fleet side.
    pub fn with_fleet(mut self, fleet: crate::fleet::FleetHandle) -> Self {
        self.fleet = Some(fleet);
        self
    }
}

/// The OpenAPI document's fixed parts; the paths come from the handlers' `#[utoipa::path]`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "SafeLink sensor API",
        description = "Status and sniffer control, alerts and exports, the ANN model, continuous \
                       learning, privacy. Errors are JSON `{\"error\": \"...\"}` with a 4xx \
                       status naming the problem. State-changing calls need `Authorization: \
                       Bearer <token>`; off loopback every call does."
    ),
    modifiers(&BearerToken),
    tags(
        (name = "sensor", description = "status and sniffer control"),
        (name = "alerts", description = "alerts, exports, archive, kinds and features"),
        (name = "model", description = "the ANN model"),
        (name = "learning", description = "the continuous learner and its model versions"),
        (name = "privacy", description = "deletion by subject, what is stored"),
        (name = "fleet", description = "this sensor in a fleet (safelink run --fleet)"),
        (name = "dashboard", description = "the web page (no data, no token)"),
        (name = "meta", description = "metrics and this document")
    )
)]
struct ApiDoc;

/// The `bearer` security scheme named by the handlers.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// Every documented route with its handler: the router and the OpenAPI document are built
/// from this one list, so they cannot disagree.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::asset))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(status::status))
        .routes(routes!(status::start))
        .routes(routes!(status::stop))
        .routes(routes!(alerts::list))
        .routes(routes!(export::csv))
        .routes(routes!(export::eve))
        .routes(routes!(alerts::list_archive, alerts::archive))
        .routes(routes!(alerts::get_one))
        .routes(routes!(verdict::verdict))
        .routes(routes!(kinds::kinds))
        .routes(routes!(kinds::features))
        .routes(routes!(model::get))
        .routes(routes!(model::load))
        .routes(routes!(learning::status))
        .routes(routes!(learning::train_now))
        .routes(routes!(learning::start))
        .routes(routes!(learning::stop))
        .routes(routes!(learning::history))
        .routes(routes!(learning::models))
        .routes(routes!(learning::activate))
        .routes(routes!(privacy::forget))
        .routes(routes!(privacy::report))
        .routes(routes!(fleet::status))
}

/// The OpenAPI 3.1 document of every route (`GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The document as served, built once.
static OPENAPI_JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This API's OpenAPI 3.1 document",
    security((), ("bearer" = [])),
    responses((status = 200, description = "the document", body = Object))
)]
async fn openapi_json() -> impl axum::response::IntoResponse {
    let doc = OPENAPI_JSON.get_or_init(|| {
        openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.as_str(),
    )
}

/// All routes, with the token policy applied to every request (unknown routes included).
pub fn router(state: ApiState) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::body_limit,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight; at most the default `[api] max_connections` at once.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let max = config::ApiConfig::default().max_connections;
    serve_with(listener, router, max, shutdown).await
}

/// [`serve`] with at most `max_connections` connections at once: one more gets a `503` JSON
/// answer and is closed (see `limits.rs`).
pub async fn serve_with<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        limits::CappedListener::new(listener, max_connections),
        router,
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Runs a store call on the blocking pool (writes fsync; scans can be long).
async fn blocking<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
        .map_err(ApiError::from)
}
