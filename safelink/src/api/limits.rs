//! What one client can take from the API: the connection cap ([`CappedListener`]: at most
//! `[api] max_connections` connections are served at once, a connection beyond it gets one
//! `503` JSON answer and is closed; a connection idle for [`IDLE_TIMEOUT`] is closed), and the
//! request body limit (`[api] max_body_bytes`: a declared `Content-Length` above it is refused
//! with `413` JSON before any handler runs, see [`body_limit`]; a chunked body is cut at the
//! limit by axum's `DefaultBodyLimit` with the same answer, see `router`).
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::{ApiError, ApiState};

/// A connection that neither reads nor writes for this long is closed (idle keep-alive
/// connections and stalled clients give their slot back).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Refusals answered at once; connections beyond this while over the cap are closed unanswered.
const MAX_REFUSING: usize = 64;
/// How long a refused connection may take to send its request head before the answer.
const REFUSE_READ: Duration = Duration::from_millis(500);

/// A TCP listener that serves at most `max` connections at once.
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    max: usize,
}

impl CappedListener {
    /// `max` is at least 1.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        let max = max.max(1);
        CappedListener {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            max,
        }
    }
}

/// An accepted connection holding one of the listener's slots until it is dropped.
pub struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Pin<Box<Sleep>>,
}

impl CappedStream {
    fn progressed(&mut self) {
        self.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
    }

    /// Pending I/O: fails once the connection has been idle for [`IDLE_TIMEOUT`].
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "API connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (reset before accept) are not worth a pause; the
                    // others (out of file descriptors) are: as axum's own listener does.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        CappedStream {
                            stream,
                            _permit: permit,
                            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                        },
                        addr,
                    );
                }
                Err(_) => {
                    tracing::debug!(client = %addr, max = self.max, "API connection refused: at the connection cap");
                    if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
                        tokio::spawn(refuse(stream, self.max, slot));
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The answer of a connection over the cap: `503` with a JSON body and `Retry-After: 1`,
/// written after the request head arrived (or [`REFUSE_READ`] passed), then the connection is
/// closed.
async fn refuse(stream: TcpStream, max: usize, _slot: OwnedSemaphorePermit) {
    let body = serde_json::json!({
        "error": format!(
            "too many connections: this sensor serves at most {max} at once ([api] \
             max_connections); retry shortly"
        )
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Read the request head first: closing a socket with unread data resets it, and the
    // client would see the reset instead of the answer.
    let mut head = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSE_READ, async {
        let mut seen = Vec::new();
        while stream.readable().await.is_ok() {
            match stream.try_read(&mut head) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&head[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            }
            if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 16 * 1024 {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(REFUSE_READ, async {
        let mut rest = answer.as_bytes();
        while !rest.is_empty() && stream.writable().await.is_ok() {
            match stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            }
        }
    })
    .await;
    // Dropping the stream closes it (FIN: the request head was read).
}

/// Refuses a request whose declared `Content-Length` exceeds `[api] max_body_bytes` (413
/// JSON), whatever the route.
pub async fn body_limit(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let max = state.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return too_large(max).into_response();
    }
    next.run(req).await
}

/// The 413 answer for a body over `max` bytes.
pub fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max} bytes ([api] max_body_bytes)"),
    )
}
