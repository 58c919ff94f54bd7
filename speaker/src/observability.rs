//! The speaker's metrics and its HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
//!
//! Owns the runtime's own metrics ([`RuntimeMetrics`]: reconciles, plans, executor applies,
//! watches, the API outage, membership), the [`Exposition`] seam through which the endpoint
//! reads the text of every metric, and the liveness/readiness flags ([`Health`]), including whether the speaker runs on stale
//! state (the API server unreachable, since when: `herald_speaker_api_stale_since_seconds`
//! and the `/readyz` body; issue 11). [`respond`] is the pure request router; [`serve`]
//! binds the endpoint and hands it to the server shared with the controller
//! (`herald_process::http`: one task per connection, each bounded in time).
//!
//! Depends on nothing above it: the executors' metric groups are registered beside these in
//! [`crate::metrics::Metrics`], which assembles the registry; this module never names them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use herald_process::http::Reply;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::membership::MembershipCounters;
use crate::planner::NodePlan;

/// Labels of a reconcile: `full` (start, periodic resync) or `incremental`, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

/// Labels of one executor's apply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApplyLabels {
    pub executor: &'static str,
    pub outcome: &'static str,
}

/// Label naming an executor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExecutorLabel {
    pub executor: &'static str,
}

/// Label naming a watched resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: &'static str,
}

/// Label naming a kind of membership event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

/// The text exposition of a set of metrics: what `/metrics` serves.
pub trait Exposition: Send + Sync {
    /// The Prometheus (OpenMetrics) text of every metric.
    fn encode(&self) -> String;
}

/// Encodes a registry as OpenMetrics text (empty if encoding fails).
pub fn encode_registry(registry: &Registry) -> String {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
    }
    text
}

/// The runtime's own metrics (prefix `herald_speaker_`, from the registry they are
/// registered in).
#[derive(Debug)]
pub struct RuntimeMetrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub plan_forwarding_keys: Gauge,
    pub plan_l2_addresses: Gauge,
    pub plan_bgp_sessions: Gauge,
    pub plan_bgp_routes: Gauge,
    pub plan_warnings: Gauge,
    pub convert_problems: Gauge,
    pub executor_applies: Family<ApplyLabels, Counter>,
    pub executor_errors: Family<ExecutorLabel, Counter>,
    pub executor_drift_repairs: Family<ExecutorLabel, Counter>,
    pub watch_errors: Family<ResourceLabel, Counter>,
    /// Unix time since which the API server has been unreachable; 0 while it answers.
    pub api_stale_since: Gauge,
    /// Times the API server became unreachable.
    pub api_outages: Counter,
    pub membership_running: Gauge,
    pub membership_live: Gauge,
    pub membership_events: Family<EventLabel, Counter>,
}

impl RuntimeMetrics {
    /// Creates the runtime's metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes (convert, plan, apply), by kind and result",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass, executors included",
            reconcile_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let plan_forwarding_keys = gauge(
            registry,
            "plan_forwarding_keys",
            "Address/protocol/port entries this node forwards",
        );
        let plan_l2_addresses = gauge(
            registry,
            "plan_l2_addresses",
            "Addresses with a layer-2 announcement decision",
        );
        let plan_bgp_sessions = gauge(
            registry,
            "plan_bgp_sessions",
            "BGP peers this node should have a session with",
        );
        let plan_bgp_routes = gauge(
            registry,
            "plan_bgp_routes",
            "Prefixes to announce, summed over peers",
        );
        let plan_warnings = gauge(
            registry,
            "plan_warnings",
            "Things the planner left out (address outside pools, port clash, ...)",
        );
        let convert_problems = gauge(
            registry,
            "convert_problems",
            "Objects or parts of objects left out of the model as invalid",
        );
        let executor_applies = Family::<ApplyLabels, Counter>::default();
        registry.register(
            "executor_applies",
            "Executor applies, by executor and outcome (unchanged, updated, rebuilt, repaired)",
            executor_applies.clone(),
        );
        let executor_errors = Family::<ExecutorLabel, Counter>::default();
        registry.register(
            "executor_errors",
            "Executor applies or resyncs that failed",
            executor_errors.clone(),
        );
        let executor_drift_repairs = Family::<ExecutorLabel, Counter>::default();
        registry.register(
            "executor_drift_repairs",
            "Resyncs that found the real state drifted from the applied one and repaired it",
            executor_drift_repairs.clone(),
        );
        let watch_errors = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors from the Kubernetes watches, by resource",
            watch_errors.clone(),
        );
        let api_stale_since = gauge(
            registry,
            "api_stale_since_seconds",
            "Unix time since which the speaker runs on stale state (the API server unreachable); 0 while it answers",
        );
        let api_outages = Counter::default();
        registry.register(
            "api_outages",
            "Times the API server became unreachable (the speaker kept its last-known state)",
            api_outages.clone(),
        );
        let membership_running = gauge(
            registry,
            "membership_running",
            "1 while the membership protocol runs (address and key known)",
        );
        let membership_live = gauge(
            registry,
            "membership_live_members",
            "Speakers membership currently sees alive, this one included",
        );
        let membership_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "membership_events",
            "Membership datagrams and protocol events (received, accepted, sent, rejected_*, rejoins, protocol_errors)",
            membership_events.clone(),
        );
        Self {
            reconciles,
            reconcile_seconds,
            plan_forwarding_keys,
            plan_l2_addresses,
            plan_bgp_sessions,
            plan_bgp_routes,
            plan_warnings,
            convert_problems,
            executor_applies,
            executor_errors,
            executor_drift_repairs,
            watch_errors,
            api_stale_since,
            api_outages,
            membership_running,
            membership_live,
            membership_events,
        }
    }

    /// The sizes of a plan.
    pub fn observe_plan(&self, plan: &NodePlan) {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.plan_forwarding_keys
            .set(as_gauge(plan.forwarding.len()));
        self.plan_l2_addresses.set(as_gauge(plan.l2.len()));
        self.plan_bgp_sessions
            .set(as_gauge(plan.bgp.sessions.len()));
        self.plan_bgp_routes
            .set(as_gauge(plan.bgp.routes.values().map(|r| r.len()).sum()));
        self.plan_warnings.set(as_gauge(plan.warnings.len()));
    }

    /// Adds what happened between two snapshots of a driver's counters (a restarted
    /// driver starts again from zero: pass `MembershipCounters::default()` as `before`).
    pub fn observe_membership_counters(
        &self,
        before: &MembershipCounters,
        after: &MembershipCounters,
    ) {
        for (event, old, new) in membership_counter_pairs(before, after) {
            self.membership_events
                .get_or_create(&EventLabel { event })
                .inc_by(new.saturating_sub(old));
        }
    }
}

fn membership_counter_pairs(
    before: &MembershipCounters,
    after: &MembershipCounters,
) -> [(&'static str, u64, u64); 11] {
    [
        (
            "received",
            before.datagrams_received,
            after.datagrams_received,
        ),
        (
            "accepted",
            before.datagrams_accepted,
            after.datagrams_accepted,
        ),
        ("sent", before.datagrams_sent, after.datagrams_sent),
        (
            "rejected_too_short",
            before.rejected_too_short,
            after.rejected_too_short,
        ),
        (
            "rejected_too_long",
            before.rejected_too_long,
            after.rejected_too_long,
        ),
        (
            "rejected_not_membership",
            before.rejected_not_membership,
            after.rejected_not_membership,
        ),
        (
            "rejected_unsupported_version",
            before.rejected_unsupported_version,
            after.rejected_unsupported_version,
        ),
        (
            "rejected_bad_authentication",
            before.rejected_bad_authentication,
            after.rejected_bad_authentication,
        ),
        (
            "rejected_malformed",
            before.rejected_malformed,
            after.rejected_malformed,
        ),
        (
            "protocol_errors",
            before.protocol_errors,
            after.protocol_errors,
        ),
        ("rejoins", before.rejoins, after.rejoins),
    ]
}

/// Liveness and readiness, shared between the runtime and the HTTP endpoint.
#[derive(Debug)]
pub struct Health {
    alive: AtomicBool,
    ready: AtomicBool,
    /// Unix time since which the API server has been unreachable; 0 while it answers.
    api_stale_since: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            alive: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            api_stale_since: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// Ready once the first full apply succeeded.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Not alive once the reconcile loop has stopped.
    pub fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// A request to the API server failed at `now` (Unix seconds); returns true if it was
    /// answering until now (the outage starts: the first failure's time is kept).
    pub fn api_unreachable(&self, now: u64) -> bool {
        self.api_stale_since
            .compare_exchange(0, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The API server answered; returns since when it had not, if it had not.
    pub fn api_reachable(&self) -> Option<u64> {
        Some(self.api_stale_since.swap(0, Ordering::Relaxed)).filter(|since| *since != 0)
    }

    /// Unix time since which the speaker runs on stale state, if it does.
    pub fn api_stale_since(&self) -> Option<u64> {
        Some(self.api_stale_since.load(Ordering::Relaxed)).filter(|since| *since != 0)
    }
}

/// A Unix time as RFC 3339 text.
fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Routes one request: `GET /metrics`, `/healthz`, `/readyz` (HEAD too); 404 otherwise.
pub fn respond(method: &str, path: &str, metrics: &dyn Exposition, health: &Health) -> Reply {
    if let Some(refused) = herald_process::http::refuse_method(method) {
        return refused;
    }
    match path {
        "/metrics" => Reply::metrics(metrics.encode()),
        "/healthz" | "/livez" if health.is_alive() => Reply::text(200, "ok\n"),
        "/healthz" | "/livez" => Reply::text(503, "reconcile loop stopped\n"),
        // Running on stale state is still ready: the data plane keeps the last-known state,
        // which is what the speaker is for while the API server is away.
        "/readyz" if health.is_ready() => match health.api_stale_since() {
            None => Reply::text(200, "ok\n"),
            Some(since) => Reply::text(
                200,
                &format!(
                    "ok: running on stale state since {} (the API server is unreachable; the last-known state is kept)\n",
                    rfc3339(since)
                ),
            ),
        },
        "/readyz" => Reply::text(503, "not ready: first full apply not done\n"),
        _ => Reply::text(404, "not found\n"),
    }
}

/// Binds `address` and serves until the returned task is aborted.
pub async fn serve<M: Exposition + 'static>(
    address: SocketAddr,
    metrics: Arc<M>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let task = herald_process::http::spawn(listener, move |method, path| {
        respond(method, path, metrics.as_ref(), &health)
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The runtime's metrics in a registry of their own, as the speaker assembles them.
    struct Metrics {
        registry: Registry,
        runtime: RuntimeMetrics,
    }

    impl Metrics {
        fn new() -> Self {
            let mut registry = Registry::with_prefix("herald_speaker");
            let runtime = RuntimeMetrics::register(&mut registry);
            Self { registry, runtime }
        }
    }

    impl std::ops::Deref for Metrics {
        type Target = RuntimeMetrics;
        fn deref(&self) -> &RuntimeMetrics {
            &self.runtime
        }
    }

    impl Exposition for Metrics {
        fn encode(&self) -> String {
            encode_registry(&self.registry)
        }
    }

    #[test]
    fn readyz_fails_until_the_first_full_apply_and_healthz_follows_the_loop() {
        let metrics = Metrics::new();
        let health = Health::default();
        assert_eq!(respond("GET", "/readyz", &metrics, &health).status, 503);
        assert_eq!(respond("GET", "/healthz", &metrics, &health).status, 200);
        health.set_ready(true);
        assert_eq!(respond("GET", "/readyz", &metrics, &health).status, 200);
        health.set_alive(false);
        assert_eq!(respond("GET", "/healthz", &metrics, &health).status, 503);
    }

    #[test]
    fn readyz_says_since_when_the_speaker_runs_on_stale_state() {
        let metrics = Metrics::new();
        let health = Health::default();
        health.set_ready(true);
        assert!(health.api_unreachable(1_800_000_000));
        assert!(
            !health.api_unreachable(1_800_000_100),
            "the outage began earlier"
        );
        let reply = respond("GET", "/readyz", &metrics, &health);
        assert_eq!(reply.status, 200, "stale state is still served");
        assert!(
            reply
                .body
                .contains("stale state since 2027-01-15T08:00:00Z"),
            "{}",
            reply.body
        );
        assert_eq!(health.api_reachable(), Some(1_800_000_000));
        assert_eq!(health.api_reachable(), None);
        assert_eq!(respond("GET", "/readyz", &metrics, &health).body, "ok\n");
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let metrics = Metrics::new();
        let health = Health::default();
        assert_eq!(respond("GET", "/", &metrics, &health).status, 404);
        assert_eq!(respond("POST", "/metrics", &metrics, &health).status, 405);
    }

    #[test]
    fn metrics_are_exposed_with_the_speaker_prefix_and_labels() {
        let metrics = Metrics::new();
        metrics
            .executor_applies
            .get_or_create(&ApplyLabels {
                executor: "forwarding",
                outcome: "rebuilt",
            })
            .inc();
        metrics.membership_live.set(3);
        let body = respond("GET", "/metrics", &metrics, &Health::default()).body;
        assert!(
            body.contains(
                "herald_speaker_executor_applies_total{executor=\"forwarding\",outcome=\"rebuilt\"} 1"
            ),
            "{body}"
        );
        assert!(
            body.contains("herald_speaker_membership_live_members 3"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn membership_counters_are_added_as_differences_between_snapshots() {
        let metrics = Metrics::new();
        let first = MembershipCounters {
            datagrams_sent: 10,
            rejected_bad_authentication: 2,
            ..Default::default()
        };
        metrics.observe_membership_counters(&MembershipCounters::default(), &first);
        let second = MembershipCounters {
            datagrams_sent: 15,
            rejected_bad_authentication: 2,
            ..Default::default()
        };
        metrics.observe_membership_counters(&first, &second);
        let sent = metrics
            .membership_events
            .get_or_create(&EventLabel { event: "sent" })
            .get();
        let bad = metrics
            .membership_events
            .get_or_create(&EventLabel {
                event: "rejected_bad_authentication",
            })
            .get();
        assert_eq!((sent, bad), (15, 2));
    }

    #[tokio::test]
    async fn the_endpoint_answers_over_tcp() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        health.set_ready(true);
        let (bound, task) = serve(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::clone(&metrics),
            Arc::clone(&health),
        )
        .await
        .expect("bind");
        let reply = tokio::time::timeout(Duration::from_secs(5), raw_get(bound, "/readyz"))
            .await
            .expect("in time")
            .expect("request");
        task.abort();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("ok\n"), "{reply}");
    }

    async fn raw_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok(reply)
    }
}
