//! The controller's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process
//! runs) and `/readyz` (ready once the current term's restore completed, or while standing by
//! as a follower).
//!
//! I/O edge: a small hyper 1 server; what it answers is decided by [`respond`], a pure
//! function over [`Health`] and the rendered metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    /// This replica holds the lease (or leader election is off).
    pub leader: AtomicBool,
    /// The current term restored every assignment from Service status.
    pub restored: AtomicBool,
}

impl Health {
    /// Ready: a follower standing by, or a leader whose restore is done.
    pub fn ready(&self) -> bool {
        !self.leader.load(Ordering::Acquire) || self.restored.load(Ordering::Acquire)
    }
}

/// The answer to one request: status, content type, body.
pub fn respond(
    path: &str,
    health: &Health,
    metrics: &Metrics,
) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" | "/livez" => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let leader = health.leader.load(Ordering::Acquire);
            if health.ready() {
                let role = if leader { "leader" } else { "standby" };
                (StatusCode::OK, TEXT, format!("ok ({role})\n"))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "restoring assignments from Service status\n".into(),
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Serves until `shutdown` turns true. Binding errors are returned; connection errors are
/// logged and dropped.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accepting an HTTP connection failed");
                continue;
            }
        };
        let health = Arc::clone(&health);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, content_type, body) = respond(request.uri().path(), &health, &metrics);
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                if let Ok(value) = content_type.parse() {
                    response
                        .headers_mut()
                        .insert(hyper::header::CONTENT_TYPE, value);
                }
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_not_ready_until_its_restore_completed() {
        let health = Health::default();
        let metrics = Metrics::new();
        health.leader.store(true, Ordering::Release);
        assert_eq!(
            respond("/readyz", &health, &metrics).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.restored.store(true, Ordering::Release);
        assert_eq!(respond("/readyz", &health, &metrics).0, StatusCode::OK);
    }

    #[test]
    fn a_standby_replica_is_ready_and_healthy() {
        let health = Health::default();
        let metrics = Metrics::new();
        let (status, _, body) = respond("/readyz", &health, &metrics);
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("standby"));
        assert_eq!(respond("/healthz", &health, &metrics).0, StatusCode::OK);
        assert_eq!(respond("/nope", &health, &metrics).0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn metrics_are_served_as_prometheus_text() {
        let health = Health::default();
        let metrics = Metrics::new();
        let (status, content_type, body) = respond("/metrics", &health, &metrics);
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.contains("herald_controller_leader 0"));
    }
}
