//! The controller's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process
//! runs) and `/readyz` (ready once the current term's restore completed, or while standing by
//! as a follower).
//!
//! What each path answers is decided by [`respond`], a pure function over [`Health`] and the
//! rendered metrics; the server is `herald_process::http`, shared with the speaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herald_process::http::{self, Reply};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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

/// The answer to one request (`GET` or `HEAD`; other methods get 405).
pub fn respond(method: &str, path: &str, health: &Health, metrics: &Metrics) -> Reply {
    if let Some(refused) = http::refuse_method(method) {
        return refused;
    }
    match path {
        "/metrics" => Reply::metrics(metrics.render()),
        "/healthz" | "/livez" => Reply::text(200, "ok\n"),
        "/readyz" => {
            let leader = health.leader.load(Ordering::Acquire);
            if health.ready() {
                let role = if leader { "leader" } else { "standby" };
                Reply::text(200, &format!("ok ({role})\n"))
            } else {
                Reply::text(503, "restoring assignments from Service status\n")
            }
        }
        _ => Reply::text(404, "not found\n"),
    }
}

/// Serves `listener` until the returned task is aborted.
pub fn serve(listener: TcpListener, health: Arc<Health>, metrics: Arc<Metrics>) -> JoinHandle<()> {
    http::spawn(listener, move |method, path| {
        respond(method, path, &health, &metrics)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_not_ready_until_its_restore_completed() {
        let health = Health::default();
        let metrics = Metrics::new();
        health.leader.store(true, Ordering::Release);
        assert_eq!(respond("GET", "/readyz", &health, &metrics).status, 503);
        health.restored.store(true, Ordering::Release);
        assert_eq!(respond("GET", "/readyz", &health, &metrics).status, 200);
    }

    #[test]
    fn a_standby_replica_is_ready_and_healthy() {
        let health = Health::default();
        let metrics = Metrics::new();
        let reply = respond("GET", "/readyz", &health, &metrics);
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("standby"));
        assert_eq!(respond("GET", "/healthz", &health, &metrics).status, 200);
        assert_eq!(respond("GET", "/nope", &health, &metrics).status, 404);
        assert_eq!(respond("POST", "/healthz", &health, &metrics).status, 405);
    }

    #[test]
    fn metrics_are_served_as_prometheus_text() {
        let health = Health::default();
        let metrics = Metrics::new();
        let reply = respond("GET", "/metrics", &health, &metrics);
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .content_type
                .starts_with("application/openmetrics-text")
        );
        assert!(reply.body.contains("herald_controller_leader 0"));
    }
}
