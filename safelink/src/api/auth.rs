//! Bearer-token policy: a token is required for every state-changing call, and for every
//! call when the API listens on a non-loopback address; no token configured on a
//! non-loopback address refuses to start. Tokens are compared in constant time. The
//! dashboard's static page (`GET /`, `/assets/...`) holds no data and needs no token.
//!
//! DNS rebinding: while reads need no token (loopback), a web page whose own name an attacker
//! re-points at 127.0.0.1 could read every alert from the operator's browser. So on loopback
//! only requests whose `Host` is an IP address, `localhost` (or `*.localhost`) or one of
//! `[api] allowed_hosts` are answered; any other name gets 403.
use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// A configuration the API refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiConfigError {
    #[error(
        "refusing to serve the API on non-loopback address {0} without a token: set \
         SAFELINK_API_TOKEN (or api token in the config), or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
}

/// Who may call what. Built once from the listen address and the configured token.
#[derive(Clone)]
pub struct AuthPolicy {
    token: Option<Vec<u8>>,
    /// Listening on loopback: read-only calls need no token.
    loopback: bool,
    /// Host names answered besides IP literals and localhost (lower case).
    allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("loopback", &self.loopback)
            .finish()
    }
}

impl AuthPolicy {
    /// The policy for an API listening on `listen` (pass the address actually bound). An
    /// empty token counts as none. Errors if `listen` is not loopback and there is no token.
    pub fn new(listen: SocketAddr, token: Option<&str>) -> Result<Self, ApiConfigError> {
        let token = token
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec());
        let loopback = listen.ip().to_canonical().is_loopback();
        if !loopback && token.is_none() {
            return Err(ApiConfigError::TokenRequired(listen));
        }
        Ok(AuthPolicy {
            token,
            loopback,
            allowed_hosts: Vec::new(),
        })
    }

    /// Also answer to these host names (`[api] allowed_hosts`).
    pub fn with_allowed_hosts(mut self, names: &[String]) -> Self {
        self.allowed_hosts = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self
    }

    /// Refuses (403) a request whose `Host` names neither an IP address, `localhost` nor an
    /// allowed host, while reads are open (loopback). No `Host` (HTTP/1.0) is answered.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.loopback {
            return Ok(());
        }
        let Some(value) = headers.get(header::HOST) else {
            return Ok(());
        };
        let host = value
            .to_str()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        // Without the port: `[v6]:port`, `name:port`, `v4:port`.
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else {
            match host.rsplit_once(':') {
                Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => host.as_str(),
            }
        };
        let ok = name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.iter().any(|h| h == name);
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not allowed: on loopback the API answers only to IP \
                     addresses, localhost and [api] allowed_hosts (DNS rebinding protection)"
                ),
            ))
        }
    }

    /// Whether a call with this method needs the token.
    pub fn requires_token(&self, method: &Method) -> bool {
        let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        !read_only || !self.loopback
    }

    /// Admits or refuses a request (401 missing/wrong token, 403 no token configured).
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.requires_token(method) {
            return Ok(());
        }
        let Some(expected) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "state-changing calls are disabled: no API token is configured \
                 (set SAFELINK_API_TOKEN)",
            ));
        };
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("missing bearer token: send Authorization: Bearer <token>")
        })?;
        let presented = bearer(value).ok_or_else(|| {
            unauthorized("Authorization header is not of the form Bearer <token>")
        })?;
        // Constant time over the token bytes (only the length can leak).
        if bool::from(presented.ct_eq(expected)) {
            Ok(())
        } else {
            Err(unauthorized("wrong bearer token"))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The dashboard's static page and assets: no sensor data, readable without a token everywhere
/// (the page then asks for the token its API calls need).
fn is_static(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && (path == "/" || path.starts_with("/assets/"))
}

/// Middleware applying the policy to every request, unknown routes included (except the
/// dashboard's static files).
pub async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if let Err(e) = state.auth.check_host(req.headers()) {
        return e.into_response();
    }
    if is_static(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match state.auth.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let status = e.status;
            let mut resp = e.into_response();
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"safelink\""),
                );
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn non_loopback_needs_a_token_to_start() {
        for addr in ["0.0.0.0:8000", "192.0.2.1:8000", "[::]:8000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(
                AuthPolicy::new(addr, None).unwrap_err(),
                ApiConfigError::TokenRequired(addr)
            );
            assert!(AuthPolicy::new(addr, Some("")).is_err());
        }
        for addr in [
            "127.0.0.1:8000",
            "127.8.9.10:1",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(
                AuthPolicy::new(addr.parse().unwrap(), None).is_ok(),
                "{addr}"
            );
        }
    }

    #[test]
    fn loopback_reads_are_open_and_writes_need_the_token() {
        let p = AuthPolicy::new("127.0.0.1:8000".parse().unwrap(), Some("s3cret")).unwrap();
        assert!(p.check(&Method::GET, &headers(None)).is_ok());
        assert!(p.check(&Method::HEAD, &headers(None)).is_ok());
        assert!(
            p.check(&Method::POST, &headers(Some("Bearer s3cret")))
                .is_ok()
        );
        assert!(
            p.check(&Method::POST, &headers(Some("bearer  s3cret ")))
                .is_ok()
        );
        let status = |h| p.check(&Method::POST, &h).unwrap_err().status;
        assert_eq!(status(headers(None)), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(headers(Some("Bearer s3cre"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(headers(Some("Bearer s3cret2"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(headers(Some("Basic czNjcmV0"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(headers(Some("Bearer "))), StatusCode::UNAUTHORIZED);
        assert_eq!(status(headers(Some("s3cret"))), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn non_loopback_reads_need_the_token_too() {
        let p = AuthPolicy::new("0.0.0.0:8000".parse().unwrap(), Some("s3cret")).unwrap();
        let e = p.check(&Method::GET, &headers(None)).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            e.message,
            "missing bearer token: send Authorization: Bearer <token>"
        );
        assert_eq!(
            p.check(&Method::GET, &headers(Some("Bearer nope")))
                .unwrap_err()
                .message,
            "wrong bearer token"
        );
        assert!(
            p.check(&Method::GET, &headers(Some("Bearer s3cret")))
                .is_ok()
        );
    }

    #[test]
    fn on_loopback_only_ip_literals_localhost_and_allowed_names_are_answered() {
        let p = AuthPolicy::new("127.0.0.1:8000".parse().unwrap(), None)
            .unwrap()
            .with_allowed_hosts(&["Sensor.Example.ORG".into()]);
        let host = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            p.check_host(&m)
        };
        for ok in [
            "127.0.0.1:8000",
            "127.0.0.1",
            "[::1]:8000",
            "localhost:8000",
            "LOCALHOST",
            "app.localhost:8000",
            "sensor.example.org:8000",
            "192.0.2.7:8000",
        ] {
            assert!(host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8000",
            "attacker.example",
            "127.0.0.1.nip.io:8000",
            "",
        ] {
            let e = host(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{bad}");
            assert!(e.message.contains("DNS rebinding"), "{}", e.message);
        }
        assert!(p.check_host(&HeaderMap::new()).is_ok());
        // Off loopback every call needs the token: names are not checked.
        let p = AuthPolicy::new("0.0.0.0:8000".parse().unwrap(), Some("t")).unwrap();
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_static("sensor.corp:8000"));
        assert!(p.check_host(&m).is_ok());
    }

    #[test]
    fn without_a_token_writes_are_forbidden_on_loopback() {
        let p = AuthPolicy::new("127.0.0.1:8000".parse().unwrap(), None).unwrap();
        assert!(p.check(&Method::GET, &headers(None)).is_ok());
        let e = p
            .check(&Method::POST, &headers(Some("Bearer anything")))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }
}
