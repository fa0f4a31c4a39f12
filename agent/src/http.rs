//! The HTTP endpoint (`--http-listen`): Prometheus metrics and health checks.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics`, `/api/v1/metrics/prometheus` | [`METRICS`] in Prometheus text format |
//! | `/api/v1/health`, `/healthz` | `200 ok` while the process serves (liveness) |
//! | `/readyz` | `200 ready` once inputs and outputs run, `503` before and while draining |
//!
//! The paths under `/api/v1/` are Fluent Bit's, so probes and scrapers written for Fluent Bit
//! work unchanged. HTTP/1.1 only (hyper), no TLS: bind it to localhost or a pod IP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::METRICS;

/// Readiness, flipped by the agent as it starts and drains.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// The running server; stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {addr} (--http-listen; `off` disables it): {source}")]
pub struct HttpError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `addr` and serves until the returned server is dropped.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<HttpServer, HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HttpError { addr, source })?;
    tracing::info!(%addr, "HTTP metrics and health listening");
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let health = Arc::clone(&health);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let health = Arc::clone(&health);
                    async move { Ok::<_, Infallible>(respond(&req, &health)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(HttpServer { addr, task })
}

fn respond(req: &Request<Incoming>, health: &Health) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics" | "/api/v1/metrics/prometheus") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            METRICS.render(),
        ),
        (&Method::GET | &Method::HEAD, "/api/v1/health" | "/healthz") => {
            (StatusCode::OK, TEXT, "ok\n".to_owned())
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if health.ready.load(Ordering::Relaxed) {
                (StatusCode::OK, TEXT, "ready\n".to_owned())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "not ready\n".to_owned(),
                )
            }
        }
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /healthz, /readyz\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}
