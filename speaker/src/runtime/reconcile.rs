//! The reconcile loop: watched objects + live speakers -> model -> plan -> executors.
//!
//! Owns the speaker's control flow. [`compute_pass`] and [`membership_settings`] are pure
//! (snapshot in, plan and membership settings out); [`run`] is the I/O shell around them:
//! it waits for the first complete lists, then reconciles on every (debounced) change, on
//! every membership change, on retries after failures and on the periodic full resync, and
//! on shutdown stops the watches, withdraws what attracts traffic (BGP, then layer 2), leaves
//! the membership cluster so others take over at once, and removes forwarding last.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::{mpsc, watch};

use super::RuntimeConfig;
use super::debounce::{Debouncer, RetryBackoff};
use super::eviction::EvictionTracker;
use super::executor::Executors;
use super::membership::{
    INSECURE_SHARED_KEY, KeySource, MembershipSettings, MembershipSupervisor, SyncOutcome,
    key_from_secret, membership_address, seeds,
};
use super::report::{DEFAULT_REPEAT_AFTER, RepeatLimiter};
use super::watches::{Snapshot, WatchScope, Watches};
use crate::checkpoint;
use crate::convert::{ConvertProblem, convert};
use crate::membership::MembershipCounters;
use crate::metrics::Metrics;
use crate::observability::{ApplyLabels, ExecutorLabel, Health, ReconcileLabels};
use crate::planner::{NodePlan, PlanWarning, plan_evicting};

/// First retry after a failed pass, and the cap of the doubling.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often membership counters are copied into the metrics.
const COUNTER_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the wait for the first lists reports that it is still waiting.
const INITIAL_LIST_REMINDER: Duration = Duration::from_secs(10);

/// The result of the pure part of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub plan: NodePlan,
    pub problems: Vec<ConvertProblem>,
}

/// Converts the snapshot and plans for this node with the live speakers, evicting the
/// endpoints of `dead_nodes` from forwarding.
pub fn compute_pass(
    snapshot: &Snapshot,
    config: &RuntimeConfig,
    live_speakers: &BTreeSet<String>,
    dead_nodes: &BTreeSet<String>,
) -> Pass {
    let conversion = convert(&snapshot.objects(), &config.convert);
    let plan = plan_evicting(
        &conversion.model,
        &config.node_name,
        live_speakers,
        dead_nodes,
    );
    Pass {
        plan,
        problems: conversion.problems,
    }
}

/// Why membership cannot run yet, for a log line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MembershipBlocker {
    /// No `--memberlist-bind` and this node's Node object has no InternalIP (or is absent).
    NoBindAddress,
    /// The memberlist Secret is absent or has no usable key.
    NoKey(String),
}

/// What membership should run with, from the snapshot and the configuration.
pub fn membership_settings(
    snapshot: &Snapshot,
    config: &RuntimeConfig,
) -> (MembershipSettings, Vec<MembershipBlocker>) {
    let mut blockers = Vec::new();
    let bind = config.memberlist_bind.or_else(|| {
        snapshot
            .node(&config.node_name)
            .and_then(membership_address)
            .map(|ip| SocketAddr::new(ip, config.memberlist_port))
    });
    if bind.is_none() {
        blockers.push(MembershipBlocker::NoBindAddress);
    }
    let key = match &config.key_source {
        KeySource::Insecure => Some(INSECURE_SHARED_KEY.to_vec()),
        KeySource::Secret(name) => match &snapshot.memberlist_secret {
            None => {
                blockers.push(MembershipBlocker::NoKey(format!(
                    "Secret {}/{name} not found",
                    config.install_namespace
                )));
                None
            }
            Some(secret) => match key_from_secret(secret) {
                Ok(key) => Some(key),
                Err(error) => {
                    blockers.push(MembershipBlocker::NoKey(format!(
                        "Secret {}/{name}: {error}",
                        config.install_namespace
                    )));
                    None
                }
            },
        },
    };
    let seeds = seeds(&snapshot.nodes, &config.node_name, config.memberlist_port);
    (MembershipSettings { bind, key, seeds }, blockers)
}

/// Why the runtime stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The watch tasks ended (they only do when aborted): nothing would wake the loop.
    #[error("the Kubernetes watches stopped")]
    WatchesStopped,
}

/// Everything one pass needs besides the snapshot.
struct Reconciler {
    config: RuntimeConfig,
    executors: Executors,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    membership: MembershipSupervisor,
    problems: RepeatLimiter<ConvertProblem>,
    warnings: RepeatLimiter<PlanWarning>,
    blockers: RepeatLimiter<MembershipBlocker>,
    membership_errors: RepeatLimiter<String>,
    /// The plan every executor last applied without error.
    applied: Option<NodePlan>,
    counters_seen: MembershipCounters,
    eviction: EvictionTracker,
    /// Running from the checkpoint: membership stays stopped (see `checkpoint::format::for_resume`).
    hold_membership: bool,
}

impl Reconciler {
    /// One pass; returns whether every executor succeeded.
    async fn pass(&mut self, snapshot: &Arc<Snapshot>, full: bool) -> bool {
        let started = Instant::now();
        self.sync_membership(snapshot).await;
        let live = self.live_speakers();
        let dead = self.dead_nodes(&live);
        let Pass { plan, problems } = compute_pass(snapshot, &self.config, &live, &dead);
        self.report_problems(&problems, &plan);
        self.report_eviction(&plan);
        self.metrics.observe_plan(&plan);

        let ok = if !full && self.applied.as_ref() == Some(&plan) {
            true
        } else {
            self.apply(&plan, full).await
        };
        let kind = if full { "full" } else { "incremental" };
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        if ok && full && !self.health.is_ready() {
            tracing::info!(
                executors = ?self.executors.names(),
                forwarding_keys = plan.forwarding.len(),
                "first full apply done; ready"
            );
            self.health.set_ready(true);
        }
        ok
    }

    async fn apply(&mut self, plan: &NodePlan, full: bool) -> bool {
        let results = self.executors.apply(plan, full).await;
        let mut ok = true;
        for outcome in results {
            let executor = outcome.executor;
            match outcome.result {
                Ok(report) => {
                    self.metrics
                        .executor_applies
                        .get_or_create(&ApplyLabels {
                            executor,
                            outcome: report.outcome,
                        })
                        .inc();
                    if !report.repaired_drift.is_empty() {
                        self.metrics
                            .executor_drift_repairs
                            .get_or_create(&ExecutorLabel { executor })
                            .inc();
                        tracing::warn!(executor, drift = ?report.repaired_drift, "drift repaired");
                    }
                    if report.changed {
                        tracing::info!(executor, outcome = report.outcome, detail = %report.detail, "applied");
                    } else {
                        tracing::debug!(executor, "unchanged");
                    }
                }
                Err(error) => {
                    ok = false;
                    self.metrics
                        .executor_errors
                        .get_or_create(&ExecutorLabel { executor })
                        .inc();
                    tracing::error!(executor, %error, "apply failed; will retry");
                }
            }
        }
        self.applied = ok.then(|| plan.clone());
        ok
    }

    /// Nodes whose endpoints are evicted from forwarding (empty when eviction is off or
    /// membership is not running); logs and counts every transition.
    fn dead_nodes(&mut self, live: &BTreeSet<String>) -> BTreeSet<String> {
        if !self.config.endpoint_eviction || !self.membership.is_running() {
            return BTreeSet::new();
        }
        let change = self.eviction.observe(live, &self.config.node_name);
        let metrics = &self.metrics.forwarding;
        for node in &change.evicted {
            metrics.node_evictions.inc();
            tracing::warn!(%node, "membership declared the node dead: its endpoints get no new connections");
        }
        for node in &change.restored {
            metrics.node_restorations.inc();
            tracing::info!(%node, "the node is alive again: its endpoints get new connections again");
        }
        metrics
            .evicted_nodes
            .set(i64::try_from(change.dead.len()).unwrap_or(i64::MAX));
        change.dead
    }

    fn report_eviction(&self, plan: &NodePlan) {
        let metrics = &self.metrics.forwarding;
        let evicted = plan.eviction.evicted_addresses().len();
        metrics
            .evicted_endpoints
            .set(i64::try_from(evicted).unwrap_or(i64::MAX));
        metrics
            .kept_whole_targets
            .set(i64::try_from(plan.eviction.kept_whole.len()).unwrap_or(i64::MAX));
    }

    fn live_speakers(&self) -> BTreeSet<String> {
        // Without membership this node knows only of itself; the planner counts this node
        // as alive anyway.
        self.membership
            .live_members()
            .map(|live| live.borrow().clone())
            .unwrap_or_else(|| [self.config.node_name.clone()].into())
    }

    async fn sync_membership(&mut self, snapshot: &Snapshot) {
        if self.hold_membership {
            return;
        }
        let (settings, blockers) = membership_settings(snapshot, &self.config);
        let now = Instant::now();
        let verdict = self.blockers.observe(now, &blockers);
        for blocker in verdict.log {
            tracing::warn!(?blocker, "membership cannot start yet");
        }
        match self.membership.sync(&settings).await {
            Ok(SyncOutcome::Started) => {
                self.counters_seen = MembershipCounters::default();
                for node in self.eviction.reset() {
                    self.metrics.forwarding.node_restorations.inc();
                    tracing::info!(%node, "membership restarted: the node's endpoints get new connections again");
                }
                tracing::info!(bind = ?settings.bind, seeds = settings.seeds.len(), "membership started");
                self.membership_errors.observe(now, &[]);
            }
            Ok(_) => {
                self.membership_errors.observe(now, &[]);
            }
            Err(error) => {
                let verdict = self.membership_errors.observe(now, &[error.to_string()]);
                for line in verdict.log {
                    tracing::error!(error = %line, "membership could not start; retrying on the next pass");
                }
            }
        }
        self.metrics
            .membership_running
            .set(i64::from(self.membership.is_running()));
    }

    fn sample_membership_counters(&mut self) {
        if let Some(counters) = self.membership.counters() {
            let now = counters.borrow().clone();
            self.metrics
                .observe_membership_counters(&self.counters_seen, &now);
            self.counters_seen = now;
        }
        if let Some(live) = self.membership.live_members() {
            let count = live.borrow().len();
            self.metrics
                .membership_live
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    fn report_problems(&mut self, problems: &[ConvertProblem], plan: &NodePlan) {
        let now = Instant::now();
        let verdict = self.problems.observe(now, problems);
        for problem in verdict.log {
            tracing::warn!(kind = problem.kind, name = %problem.name, reason = %problem.reason, "left out of the model");
        }
        for problem in verdict.resolved {
            tracing::info!(kind = problem.kind, name = %problem.name, "no longer a problem");
        }
        self.metrics
            .convert_problems
            .set(i64::try_from(self.problems.active()).unwrap_or(i64::MAX));
        let verdict = self.warnings.observe(now, &plan.warnings);
        for warning in verdict.log {
            tracing::warn!(?warning, "planner left something out");
        }
    }
}

/// Resolves when the receiver's value changes; pends forever when there is no receiver
/// (or its sender is gone, after which it is dropped).
async fn changed<T>(receiver: &mut Option<watch::Receiver<T>>) {
    match receiver {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *receiver = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

async fn sleep_until_or_pending(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending::<()>().await,
    }
}

/// Runs the speaker until `shutdown` resolves, then tears down in order.
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    executors: Executors,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let scope = WatchScope {
        install_namespace: config.install_namespace.clone(),
        memberlist_secret: match &config.key_source {
            KeySource::Secret(name) => Some(name.clone()),
            KeySource::Insecure => None,
        },
    };
    let probe = super::api_probe::spawn(client.clone(), Arc::clone(&health), Arc::clone(&metrics));
    // Stops the probe on every way out of this function.
    let _probe = probe;
    let mut watches = Watches::start(client, &scope, changed_tx, Arc::clone(&metrics));
    // The on-node checkpoint (issue 11): resumed from only if the first lists take longer
    // than RESUME_AFTER, and only until they complete.
    let mut checkpoint = config.checkpoint.as_ref().and_then(|c| {
        checkpoint::load(
            c,
            &config.node_name,
            checkpoint::unix_now(),
            &metrics.checkpoint,
        )
    });
    let mut checkpointer = config.checkpoint.clone().map(|c| {
        checkpoint::Checkpointer::new(c, config.node_name.clone(), metrics.checkpoint.clone())
    });
    let mut from_checkpoint: Option<Snapshot> = None;
    let resume_at = tokio::time::Instant::now() + checkpoint::RESUME_AFTER;
    tracing::info!(node = %config.node_name, namespace = %config.install_namespace, executors = ?executors.names(), "waiting for the first complete lists");
    let initial_wait = std::time::Instant::now();
    loop {
        tokio::select! {
            () = watches.wait_ready() => break,
            () = tokio::time::sleep_until(resume_at), if checkpoint.is_some() => {
                tracing::warn!("the API server has not answered: resuming from the checkpoint until it does");
                metrics.checkpoint.resumed.set(1);
                from_checkpoint = checkpoint.take();
                break;
            }
            () = &mut shutdown => {
                tracing::info!("shutdown before the first lists completed");
                watches.stop();
                return Ok(());
            }
            () = tokio::time::sleep(INITIAL_LIST_REMINDER) => {
                tracing::warn!(waited = ?initial_wait.elapsed(), "still waiting for the first complete lists (are the CRDs installed and RBAC granted?)");
            }
        }
    }

    let resync_interval = config.resync_interval.max(Duration::from_secs(1));
    let mut reconciler = Reconciler {
        membership: MembershipSupervisor::new(config.node_name.clone(), config.membership.clone()),
        config,
        executors,
        metrics,
        health: Arc::clone(&health),
        problems: RepeatLimiter::new(DEFAULT_REPEAT_AFTER),
        warnings: RepeatLimiter::new(DEFAULT_REPEAT_AFTER),
        blockers: RepeatLimiter::new(DEFAULT_REPEAT_AFTER),
        membership_errors: RepeatLimiter::new(DEFAULT_REPEAT_AFTER),
        applied: None,
        counters_seen: MembershipCounters::default(),
        eviction: EvictionTracker::default(),
        hold_membership: from_checkpoint.is_some(),
    };
    let mut debouncer = Debouncer::default();
    let mut retry = RetryBackoff::new(RETRY_INITIAL, RETRY_MAX);
    let mut live_rx: Option<watch::Receiver<BTreeSet<String>>> = None;
    let mut next_resync = Instant::now();
    let mut counter_sample = tokio::time::interval(COUNTER_SAMPLE_INTERVAL);

    loop {
        let full_due = Instant::now() >= next_resync;
        let retry_due = retry.take_if_due(Instant::now());
        let debounced = debouncer.take_if_due(Instant::now());
        if full_due || retry_due || debounced {
            // Changes that arrive during the pass are caught by the debouncer afterwards.
            let snapshot = Arc::new(
                from_checkpoint
                    .clone()
                    .unwrap_or_else(|| watches.snapshot()),
            );
            let ok = reconciler.pass(&snapshot, full_due).await;
            if let (true, None, Some(writer)) = (ok, &from_checkpoint, &mut checkpointer) {
                writer
                    .record(&snapshot, checkpoint::unix_now(), health.api_stale_since())
                    .await;
            }
            if full_due {
                next_resync = Instant::now() + resync_interval;
            }
            if ok {
                retry.succeeded();
            } else {
                let delay = retry.failed(Instant::now());
                tracing::debug!(?delay, "retrying after failure");
            }
            // The membership driver may have (re)started during the pass.
            match (reconciler.membership.live_members(), &live_rx) {
                (Some(current), Some(old)) if old.same_channel(&current) => {}
                (current, _) => live_rx = current,
            }
            continue;
        }
        let wake_at = [debouncer.deadline(), retry.retry_at(), Some(next_resync)]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            () = &mut shutdown => break,
            received = changed_rx.recv() => {
                if received.is_none() {
                    return Err(RuntimeError::WatchesStopped);
                }
                debouncer.note_change(Instant::now());
            }
            () = changed(&mut live_rx) => {
                if let Some(rx) = &live_rx {
                    tracing::info!(live = ?*rx.borrow(), "membership changed");
                }
                debouncer.note_change(Instant::now());
            }
            () = watches.wait_ready(), if from_checkpoint.is_some() => {
                tracing::info!("the first complete lists arrived: leaving the checkpoint for the live state");
                from_checkpoint = None;
                reconciler.hold_membership = false;
                reconciler.metrics.checkpoint.resumed.set(0);
                next_resync = Instant::now();
            }
            () = sleep_until_or_pending(wake_at) => {}
            _ = counter_sample.tick() => reconciler.sample_membership_counters(),
        }
    }

    tracing::info!(
        "shutting down: stopping watches, withdrawing BGP routes and layer-2 addresses, \
         leaving membership, then removing forwarding"
    );
    health.set_ready(false);
    watches.stop();
    let announcers = reconciler.executors.shutdown_announcers().await;
    // Leaving at once lets the other speakers take this node's layer-2 addresses over now,
    // not after the failure detector notices.
    reconciler.membership.leave().await;
    let forwarding = reconciler.executors.shutdown_forwarding().await;
    for result in announcers.into_iter().chain(forwarding) {
        if let Err(error) = result {
            tracing::error!(%error, "executor shutdown failed");
        }
    }
    health.set_alive(false);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_crds::api::{IPAddressPool, IPAddressPoolSpec};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeStatus, Secret, Service,
        ServicePort, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::convert::ConvertOptions;
    use crate::membership::MembershipConfig;

    fn config(key_source: KeySource) -> RuntimeConfig {
        RuntimeConfig {
            node_name: "n1".into(),
            install_namespace: "herald-system".into(),
            convert: ConvertOptions::default(),
            key_source,
            memberlist_bind: None,
            memberlist_port: 7946,
            membership: MembershipConfig::default(),
            resync_interval: Duration::from_secs(30),
            endpoint_eviction: true,
            checkpoint: None,
        }
    }

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: namespace.map(str::to_string),
            name: Some(name.to_string()),
            ..Default::default()
        }
    }

    fn node(name: &str, ip: &str) -> Node {
        Node {
            metadata: meta(None, name),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pool(name: &str, cidr: &str) -> IPAddressPool {
        let mut pool = IPAddressPool::new(
            name,
            serde_json::from_value::<IPAddressPoolSpec>(serde_json::json!({"addresses": [cidr]}))
                .expect("pool spec"),
        );
        pool.metadata.namespace = Some("herald-system".into());
        pool
    }

    fn load_balancer(name: &str, ip: &str, policy: &str) -> Service {
        Service {
            metadata: meta(Some("lab"), name),
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: Some(policy.into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some(ip.into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
        }
    }

    fn slice(service: &str, endpoints: &[(&str, &str)]) -> EndpointSlice {
        let mut metadata = meta(Some("lab"), &format!("{service}-abcde"));
        metadata.labels = Some(BTreeMap::from([(
            crate::convert::LABEL_SERVICE_NAME.to_string(),
            service.to_string(),
        )]));
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(ip, node)| Endpoint {
                        addresses: vec![ip.to_string()],
                        node_name: Some(node.to_string()),
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }
    }

    fn cluster() -> Snapshot {
        Snapshot {
            nodes: vec![node("n1", "192.0.2.11"), node("n2", "192.0.2.12")],
            pools: vec![pool("bgp", "203.0.113.0/24")],
            services: vec![
                load_balancer("spread", "203.0.113.10", "Cluster"),
                load_balancer("local", "203.0.113.11", "Local"),
            ],
            endpoint_slices: vec![
                slice("spread", &[("198.18.1.11", "n1"), ("198.18.2.11", "n2")]),
                slice("local", &[("198.18.2.12", "n2")]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_pass_forwards_cluster_services_everywhere_and_local_ones_only_with_local_endpoints() {
        let config = config(KeySource::Insecure);
        let live: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
        let pass = compute_pass(&cluster(), &config, &live, &BTreeSet::new());
        assert!(pass.problems.is_empty(), "{:?}", pass.problems);
        let addresses: Vec<String> = pass
            .plan
            .forwarding
            .keys()
            .map(|k| k.address.to_string())
            .collect();
        assert_eq!(addresses, ["203.0.113.10"]);
        let target = pass.plan.forwarding.values().next().expect("one target");
        assert_eq!(target.backends.len(), 2);
        let mut on_n2 = config.clone();
        on_n2.node_name = "n2".into();
        assert_eq!(
            compute_pass(&cluster(), &on_n2, &live, &BTreeSet::new())
                .plan
                .forwarding
                .len(),
            2
        );
    }

    #[test]
    fn a_bad_object_becomes_a_problem_and_the_rest_is_still_planned() {
        let mut snapshot = cluster();
        snapshot.pools.push(pool("broken", "203.0.113.300/24"));
        let pass = compute_pass(
            &snapshot,
            &config(KeySource::Insecure),
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert!(!pass.problems.is_empty());
        assert_eq!(pass.plan.forwarding.len(), 1);
    }

    #[test]
    fn membership_binds_this_nodes_internal_ip_and_seeds_the_others() {
        let (settings, blockers) = membership_settings(&cluster(), &config(KeySource::Insecure));
        assert!(blockers.is_empty(), "{blockers:?}");
        assert_eq!(
            settings.bind,
            Some("192.0.2.11:7946".parse().expect("addr"))
        );
        assert_eq!(
            settings.seeds,
            vec!["192.0.2.12:7946".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(settings.key.as_deref(), Some(INSECURE_SHARED_KEY));
    }

    #[test]
    fn an_explicit_bind_address_wins_over_the_node_object() {
        let mut config = config(KeySource::Insecure);
        config.memberlist_bind = Some("192.0.2.99:7000".parse().expect("addr"));
        let (settings, _) = membership_settings(&Snapshot::default(), &config);
        assert_eq!(settings.bind, config.memberlist_bind);
    }

    #[test]
    fn membership_waits_for_the_secret_and_for_this_nodes_address() {
        let config = config(KeySource::Secret("herald-memberlist".into()));
        let (settings, blockers) = membership_settings(&Snapshot::default(), &config);
        assert_eq!(settings.bind, None);
        assert_eq!(settings.key, None);
        assert_eq!(blockers.len(), 2);
        assert_eq!(blockers[0], MembershipBlocker::NoBindAddress);
        let mut snapshot = cluster();
        snapshot.memberlist_secret = Some(Secret {
            data: Some(BTreeMap::from([(
                "secretkey".to_string(),
                ByteString(b"0123456789abcdef0123".to_vec()),
            )])),
            ..Default::default()
        });
        let (settings, blockers) = membership_settings(&snapshot, &config);
        assert!(blockers.is_empty(), "{blockers:?}");
        assert_eq!(settings.key.as_deref(), Some(&b"0123456789abcdef0123"[..]));
    }
}
