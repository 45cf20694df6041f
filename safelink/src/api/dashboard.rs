//! The operator dashboard: `GET /` (the page) and `GET /assets/{file}` (its script and style
//! sheet), embedded in the binary from `safelink/assets/` with `include_str!`. The page is
//! plain HTML + vanilla JS + inline SVG charts; it reads the JSON API by polling and sends the
//! token (asked once, kept in `sessionStorage`) only on state-changing calls. Reads on a
//! loopback listener need no token, so the page is readable there without one.
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::error::ErrorBody;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");

/// The assets under `/assets/`, with their content types.
const ASSETS: [(&str, &str, &str); 2] = [
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
];

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Assets change with the binary: always revalidate (they are small).
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    summary = "The dashboard page",
    security(()),
    responses(
        (status = 200, description = "HTML page", body = String, content_type = "text/html")
    )
)]
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "dashboard",
    summary = "A static asset of the dashboard",
    params(("file" = String, Path, description = "asset file name")),
    security(()),
    responses(
        (status = 200, description = "the asset", body = String),
        (status = 404, description = "no such asset", body = ErrorBody)
    )
)]
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| page(ct, body))
        .ok_or_else(|| ApiError::not_found(format!("no such asset: {name}")))
}
