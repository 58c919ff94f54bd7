//! The kube-runtime edge: watches, the work queue, and the writes. One call of [`run_term`]
//! is one leadership term.
//!
//! A term (1) starts reflectors for Services (all namespaces), IPAddressPools (the install
//! namespace), Namespaces (for `namespaceSelectors`) and Nodes (their InternalIP /
//! ExternalIP addresses are reserved: never allocated), (2) waits until all four are
//! listed, (3) restores every existing assignment from Service status **before** anything is
//! allocated, (4) then runs kube's `applier` over the Service queue (bounded concurrency, per
//! object exclusivity, back-off) and a pool pass (status, finalizer) that is debounced.
//!
//! Decisions are made by the pure planners ([`crate::service_plan`], [`crate::pool_plan`])
//! under the one `Mutex<ControllerState>`; only the writes here are I/O, and every write first
//! checks the [`WriteGate`], which the leader elector closes the moment the lease is lost.
//! Deleted Services never reach the applier (it only runs on objects in the store), so the
//! Service watch hands deletions, and objects that vanished across a re-list, straight to
//! [`Context::service_gone`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{StreamExt, future};
use herald_crds::api::IPAddressPool;
use herald_crds::names;
use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, ObjectReference, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::allocator::{Labels, PoolChangeReport, ServiceKey};
use crate::convert::{self, ClassFilter};
use crate::event_limit::{EventKey, EventLimiter};
use crate::http::Health;
use crate::metrics::Metrics;
use crate::pool_plan::{self, FinalizerChange};
use crate::service_plan::{self, EventType, IP_MODE_VIP, Outcome, PlannedEvent, ServicePlan};
use crate::state::{self, ControllerState};

/// First retry delay of a Service whose reconcile failed.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Pool passes wait this long for more changes before running.
const POOL_DEBOUNCE: Duration = Duration::from_millis(200);
/// A pool pass runs at least this often (status drift repair).
const POOL_RESYNC: Duration = Duration::from_secs(60);
/// How many distinct Events the rate limiter remembers.
const EVENT_MEMORY: usize = 50_000;

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The install namespace: where pools live.
    pub namespace: String,
    /// Which Services Herald serves.
    pub filter: ClassFilter,
    /// Read MetalLB's Service annotations as Herald's (see
    /// [`convert::adopt_metallb_annotations`]).
    pub metallb_annotations: bool,
    /// Reporting instance of Events (the pod name).
    pub identity: String,
    /// At most one identical Event per object per this window.
    pub event_window: Duration,
    /// Service reconciles running at once (writes in flight; decisions stay serialized).
    pub concurrency: u16,
}

/// Whether this replica may write. Closed by the leader elector the moment leadership is lost;
/// every write checks it first.
#[derive(Debug, Default)]
pub struct WriteGate(AtomicBool);

impl WriteGate {
    /// Allows writes.
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Stops writes at once.
    pub fn close(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether writes are allowed.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), Error> {
        if self.is_open() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
}

/// What can end a reconcile or a term.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Leadership was lost; nothing more is written.
    #[error("not the leader: writes are stopped")]
    NotLeader,
    /// A watch's store went away before it was listed.
    #[error("the {0} watch stopped before its first list completed")]
    StoreNotReady(&'static str),
    /// A background loop of the term ended.
    #[error("the {0} loop ended")]
    LoopEnded(&'static str),
    /// The state mutex was poisoned by a panic in another reconcile.
    #[error("the controller state lock is poisoned")]
    Poisoned,
    /// A patch could not be serialized.
    #[error("serializing a patch: {0}")]
    Json(#[from] serde_json::Error),
}

/// Everything a term's reconciles share.
pub struct Context {
    client: Client,
    settings: Settings,
    state: Mutex<ControllerState>,
    services: Store<Service>,
    pools: Store<IPAddressPool>,
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    recorder: Recorder,
    limiter: Mutex<EventLimiter>,
    metrics: Arc<Metrics>,
    gate: Arc<WriteGate>,
    queue: mpsc::UnboundedSender<ObjectRef<Service>>,
    pool_pass: Notify,
    backoff: Mutex<HashMap<ServiceKey, u32>>,
    namespace_labels_seen: Mutex<HashMap<String, Labels>>,
    pool_generations_seen: Mutex<HashMap<String, (Option<i64>, bool)>>,
    /// The resourceVersion of each Service's last write by this term (see [`is_stale`]).
    written: Mutex<HashMap<ServiceKey, u64>>,
}

/// Whether the cached object predates this term's last write to it. Its reconcile would
/// decide on old data and repeat the write; the watch event carrying the write triggers
/// another reconcile anyway. resourceVersions are compared as numbers (etcd revisions); one
/// that is not a number is never called stale.
pub fn is_stale(cached: Option<&str>, last_written: Option<u64>) -> bool {
    match (cached.and_then(|rv| rv.parse::<u64>().ok()), last_written) {
        (Some(cached), Some(written)) => cached < written,
        _ => false,
    }
}

/// Aborts the spawned watch drivers when the term ends (tasks live as long as their owner).
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs one leadership term until an error (or until the caller drops the future when
/// leadership is lost). `health.restored` turns true once every assignment was restored.
pub async fn run_term(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    gate: Arc<WriteGate>,
    health: Arc<Health>,
) -> Result<(), Error> {
    let service_api: Api<Service> = Api::all(client.clone());
    let pool_api: Api<IPAddressPool> = Api::namespaced(client.clone(), &settings.namespace);
    let namespace_api: Api<Namespace> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    let (services, service_writer) = reflector::store();
    let (pools, pool_writer) = reflector::store();
    let (namespaces, namespace_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let (queue, queue_rx) = mpsc::unbounded();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER_CONTROLLER.to_owned(),
            instance: Some(settings.identity.clone()),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        limiter: Mutex::new(EventLimiter::new(settings.event_window, EVENT_MEMORY)),
        settings,
        state: Mutex::new(ControllerState::default()),
        services: services.clone(),
        pools: pools.clone(),
        namespaces: namespaces.clone(),
        nodes: nodes.clone(),
        recorder,
        metrics,
        gate,
        queue,
        pool_pass: Notify::new(),
        backoff: Mutex::new(HashMap::new()),
        namespace_labels_seen: Mutex::new(HashMap::new()),
        pool_generations_seen: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
    });

    let mut tasks = Tasks(Vec::new());
    {
        let ctx = Arc::clone(&ctx);
        let metallb_annotations = ctx.settings.metallb_annotations;
        let stream = reflector::reflector(
            service_writer,
            watcher(service_api, watcher::Config::default())
                .default_backoff()
                .modify(move |service| {
                    if metallb_annotations {
                        convert::adopt_metallb_annotations(service);
                    }
                }),
        );
        tasks.0.push(tokio::spawn(stream.for_each(move |event| {
            ctx.on_service_event(event);
            future::ready(())
        })));
    }
    {
        let ctx = Arc::clone(&ctx);
        let stream = reflector::reflector(
            pool_writer,
            watcher(pool_api, watcher::Config::default()).default_backoff(),
        );
        tasks.0.push(tokio::spawn(stream.for_each(move |event| {
            ctx.on_pool_event(event);
            future::ready(())
        })));
    }
    {
        let ctx = Arc::clone(&ctx);
        let stream = reflector::reflector(
            namespace_writer,
            watcher(namespace_api, watcher::Config::default()).default_backoff(),
        );
        tasks.0.push(tokio::spawn(stream.for_each(move |event| {
            ctx.on_namespace_event(event);
            future::ready(())
        })));
    }

    {
        let ctx = Arc::clone(&ctx);
        // Only the name and the addresses are kept: Node objects are large and change often.
        let stream = reflector::reflector(
            node_writer,
            watcher(node_api, watcher::Config::default())
                .default_backoff()
                .modify(|node| {
                    node.metadata.managed_fields = None;
                    node.metadata.annotations = None;
                    node.metadata.labels = None;
                    node.spec = None;
                    let addresses = node.status.take().and_then(|s| s.addresses);
                    node.status = Some(NodeStatus {
                        addresses,
                        ..NodeStatus::default()
                    });
                }),
        );
        tasks.0.push(tokio::spawn(stream.for_each(move |event| {
            ctx.on_node_event(event);
            future::ready(())
        })));
    }

    namespaces
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady("Namespace"))?;
    nodes
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady("Node"))?;
    pools
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady("IPAddressPool"))?;
    services
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady("Service"))?;

    let started = Instant::now();
    let summary = {
        let mut state = ctx.lock()?;
        let pool_objects = state::convert_pools(&ctx.pools.state());
        state.sync_pools(&pool_objects);
        state.sync_nodes(&ctx.nodes.state());
        state.finalized_pools = pool_objects
            .iter()
            .filter(|(_, (pool, _))| pool_plan::has_finalizer(pool))
            .map(|(name, _)| name.clone())
            .collect();
        state.restore(
            &ctx.services.state(),
            |ns| ctx.namespace_labels(ns),
            &ctx.settings.filter,
        )
    };
    ctx.metrics
        .restored_addresses
        .set(i64::try_from(summary.addresses).unwrap_or(i64::MAX));
    tracing::info!(
        services = summary.services,
        addresses = summary.addresses,
        external_ips = summary.external_ips,
        problems = summary.events.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restored assignments from Service status; allocating from now on"
    );
    for (service, event) in &summary.events {
        ctx.publish(&service.object_ref(&()), service_identity(service), event)
            .await;
    }
    health.restored.store(true, Ordering::Release);
    ctx.pool_pass.notify_one();

    let applier = controller::applier(
        |service, ctx: Arc<Context>| Box::pin(reconcile_service(service, ctx)),
        error_policy,
        Arc::clone(&ctx),
        services,
        queue_rx.map(Ok::<_, Infallible>),
        controller::Config::default().concurrency(ctx.settings.concurrency),
    )
    .for_each(|result| {
        if let Err(error) = result {
            tracing::debug!(%error, "service reconcile ended with an error");
        }
        future::ready(())
    });
    let drivers = future::select_all(tasks.0.iter_mut());
    tokio::select! {
        () = applier => Err(Error::LoopEnded("Service reconcile")),
        result = pool_loop(Arc::clone(&ctx)) => result,
        _ = drivers => Err(Error::LoopEnded("watch")),
    }
}

fn error_policy(service: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    match error {
        Error::NotLeader => Action::await_change(),
        _ => {
            tracing::warn!(
                service = %service_identity(&service),
                %error,
                "reconcile failed; retrying with back-off"
            );
            match convert::service_key(&service) {
                Some(key) => Action::requeue(ctx.next_backoff(&key)),
                None => Action::await_change(),
            }
        }
    }
}

async fn reconcile_service(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.gate.check()?;
    let result = reconcile_service_inner(&service, &ctx).await;
    ctx.metrics.reconciled("service", result.is_err());
    result
}

async fn reconcile_service_inner(
    service: &Arc<Service>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    if let Some(key) = convert::service_key(service) {
        let last_written = ctx.written.lock().ok().and_then(|w| w.get(&key).copied());
        if is_stale(service.metadata.resource_version.as_deref(), last_written) {
            return Ok(Action::await_change());
        }
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let labels = ctx.namespace_labels(&namespace);
    let (plan, reports, finalizers_to_add) = {
        let mut state = ctx.lock()?;
        let pools = state::convert_pools(&ctx.pools.state());
        let reports = state.sync_pools(&pools);
        let Some(plan) = service_plan::plan_service(
            &mut state.allocator,
            service,
            &labels,
            &ctx.settings.filter,
            Timestamp::now(),
        ) else {
            return Ok(Action::await_change());
        };
        // Waiting: the allocation failed, or an externalIP's address is held by another
        // Service. Either may succeed once an address is released.
        if matches!(plan.outcome, Outcome::Failed { .. }) || plan.external_ips.waiting {
            state.pending.insert(plan.key.clone());
        } else {
            state.pending.remove(&plan.key);
        }
        let to_add: Vec<String> = plan
            .pools
            .iter()
            .filter(|p| !state.finalized_pools.contains(*p))
            .cloned()
            .collect();
        for pool in &to_add {
            state.finalized_pools.insert(pool.clone());
        }
        (plan, reports, to_add)
    };
    ctx.handle_reports(reports);
    if matches!(plan.outcome, Outcome::Released { .. }) {
        ctx.metrics.releases.inc();
    }
    if matches!(plan.outcome, Outcome::Released { .. }) || plan.external_ips.released {
        ctx.requeue_pending();
    }
    for displaced in &plan.displaced {
        // Its externalIP gave way to an address restored from status: new verdict to write.
        ctx.enqueue(displaced);
    }
    for pool in &finalizers_to_add {
        if let Err(error) = ctx.ensure_pool_finalizer(pool).await {
            ctx.lock()?.finalized_pools.remove(pool);
            return Err(error);
        }
    }
    ctx.write_service(&plan).await?;
    for event in &plan.events {
        ctx.publish(&service.object_ref(&()), service_identity(service), event)
            .await;
    }
    if plan.changed_bookings() {
        ctx.pool_pass.notify_one();
    }
    Ok(match plan.outcome {
        Outcome::Failed { reason, .. } => {
            ctx.metrics.allocation_failed(reason);
            Action::requeue(ctx.next_backoff(&plan.key))
        }
        Outcome::Assigned { changed } => {
            if changed {
                ctx.metrics.allocations.inc();
            }
            ctx.reset_backoff(&plan.key);
            Action::await_change()
        }
        Outcome::Released { .. } | Outcome::NotServed => {
            ctx.reset_backoff(&plan.key);
            Action::await_change()
        }
    })
}

/// Pool passes: debounced, and at least every [`POOL_RESYNC`]; failures retry with back-off.
async fn pool_loop(ctx: Arc<Context>) -> Result<(), Error> {
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = ctx.pool_pass.notified() => {}
            () = tokio::time::sleep(POOL_RESYNC) => {}
        }
        tokio::time::sleep(POOL_DEBOUNCE).await;
        let result = ctx.pool_pass_once().await;
        ctx.metrics.reconciled("pool", result.is_err());
        match result {
            Ok(()) => failures = 0,
            Err(Error::NotLeader) => return Err(Error::NotLeader),
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = backoff_delay(failures);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "pool pass failed");
                tokio::time::sleep(delay).await;
                ctx.pool_pass.notify_one();
            }
        }
    }
}

/// `1s, 2s, 4s, ...` up to [`BACKOFF_MAX`].
fn backoff_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
}

/// `Service ns/name uid` or `IPAddressPool ns/name uid`: the Event limiter's object key.
fn service_identity(service: &Service) -> String {
    format!(
        "Service {}/{} {}",
        service.metadata.namespace.as_deref().unwrap_or(""),
        service.metadata.name.as_deref().unwrap_or(""),
        service.metadata.uid.as_deref().unwrap_or("")
    )
}

fn pool_identity(pool: &IPAddressPool) -> String {
    format!(
        "IPAddressPool {}/{} {}",
        pool.metadata.namespace.as_deref().unwrap_or(""),
        pool.metadata.name.as_deref().unwrap_or(""),
        pool.metadata.uid.as_deref().unwrap_or("")
    )
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

impl Context {
    fn lock(&self) -> Result<MutexGuard<'_, ControllerState>, Error> {
        self.state.lock().map_err(|_| Error::Poisoned)
    }

    /// The labels of namespace `name` (empty when unknown).
    fn namespace_labels(&self, name: &str) -> Labels {
        self.namespaces
            .get(&ObjectRef::new(name))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    fn enqueue(&self, key: &ServiceKey) {
        // The receiver lives as long as the term; a send after it ended is moot.
        let _moot_after_term = self
            .queue
            .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
    }

    fn next_backoff(&self, key: &ServiceKey) -> Duration {
        let Ok(mut backoff) = self.backoff.lock() else {
            return BACKOFF_MAX;
        };
        let attempts = backoff.entry(key.clone()).or_insert(0);
        *attempts = attempts.saturating_add(1);
        backoff_delay(*attempts)
    }

    fn reset_backoff(&self, key: &ServiceKey) {
        if let Ok(mut backoff) = self.backoff.lock() {
            backoff.remove(key);
        }
    }

    /// Services whose allocation failed get another try now (an address was released or the
    /// pools changed).
    fn requeue_pending(&self) {
        let pending: Vec<ServiceKey> = match self.lock() {
            Ok(state) => state.pending.iter().cloned().collect(),
            Err(_) => return,
        };
        for key in &pending {
            self.reset_backoff(key);
            self.enqueue(key);
        }
    }

    fn on_service_event(&self, event: Result<watcher::Event<Service>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(service) | watcher::Event::InitApply(service)) => {
                // Only objects in the store are reconciled; the reflector stored it already.
                let _moot_after_term = self.queue.unbounded_send(ObjectRef::from_obj(&service));
            }
            Ok(watcher::Event::Delete(service)) => {
                if let Some(key) = convert::service_key(&service) {
                    self.service_gone(&key);
                }
            }
            Ok(watcher::Event::InitDone) => self.sweep_vanished_services(),
            Ok(watcher::Event::Init) => {}
            Err(error) => tracing::warn!(%error, "Service watch failed; retrying with back-off"),
        }
    }

    /// A Service was deleted: give its addresses and externalIP bookings back (nothing to
    /// write on it).
    fn service_gone(&self, key: &ServiceKey) {
        let (released, external_ips) = match self.lock() {
            Ok(mut state) => {
                state.pending.remove(key);
                let external_ips = state.allocator.external_ips(key);
                (state.allocator.release(key), external_ips)
            }
            Err(_) => return,
        };
        self.reset_backoff(key);
        if let Ok(mut written) = self.written.lock() {
            written.remove(key);
        }
        if let Some(assignment) = &released {
            tracing::info!(service = %key, addresses = ?assignment.ips(), "Service deleted; addresses released");
            self.metrics.releases.inc();
        }
        if !external_ips.is_empty() {
            let addresses: Vec<_> = external_ips.iter().map(|a| a.address).collect();
            tracing::info!(service = %key, external_ips = ?addresses, "Service deleted; externalIP bookings released");
        }
        if released.is_some() || !external_ips.is_empty() {
            self.pool_pass.notify_one();
            self.requeue_pending();
        }
    }

    /// After a re-list: Services the allocator holds that no longer exist were deleted while
    /// the watch was down.
    fn sweep_vanished_services(&self) {
        let known = match self.lock() {
            Ok(state) => state.known_services(),
            Err(_) => return,
        };
        for key in known {
            let reference = ObjectRef::new(&key.name).within(&key.namespace);
            if self.services.get(&reference).is_none() {
                self.service_gone(&key);
            }
        }
    }

    fn on_pool_event(&self, event: Result<watcher::Event<IPAddressPool>, watcher::Error>) {
        let spec_changed = match event {
            Ok(watcher::Event::Apply(pool) | watcher::Event::InitApply(pool)) => {
                let seen = (
                    pool.metadata.generation,
                    pool.metadata.deletion_timestamp.is_some(),
                );
                self.pool_generations_seen
                    .lock()
                    .map(|mut map| map.insert(pool.name_any(), seen) != Some(seen))
                    .unwrap_or(true)
            }
            Ok(watcher::Event::Delete(pool)) => {
                if let Ok(mut map) = self.pool_generations_seen.lock() {
                    map.remove(&pool.name_any());
                }
                true
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) => false,
            Err(error) => {
                tracing::warn!(%error, "IPAddressPool watch failed; retrying with back-off");
                false
            }
        };
        self.pool_pass.notify_one();
        if spec_changed {
            // Waiting Services may fit now; externalIPs verdicts depend on the pools.
            self.requeue_pending();
            for service in self.services.state() {
                let has_external_ips = service
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.external_ips.as_ref().is_some_and(|e| !e.is_empty()));
                if has_external_ips {
                    let _moot_after_term =
                        self.queue.unbounded_send(ObjectRef::from_obj(&*service));
                }
            }
        }
    }

    /// Node addresses changed: Services holding an affected address get their condition
    /// refreshed; a released node address may serve a waiting Service; pools' conditions
    /// name the node addresses they contain.
    fn on_node_event(&self, event: Result<watcher::Event<Node>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => return,
            Err(error) => {
                tracing::warn!(%error, "Node watch failed; retrying with back-off");
                return;
            }
        }
        let synced = match self.lock() {
            Ok(mut state) => state.sync_nodes(&self.nodes.state()),
            Err(_) => return,
        };
        if !synced.changed {
            return;
        }
        tracing::info!(
            affected_services = synced.affected.len(),
            "node addresses changed"
        );
        for key in &synced.affected {
            self.enqueue(key);
        }
        self.requeue_pending();
        self.pool_pass.notify_one();
    }

    fn on_namespace_event(&self, event: Result<watcher::Event<Namespace>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns)) => {
                let name = ns.name_any();
                let labels: Labels = ns
                    .metadata
                    .labels
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let changed = self
                    .namespace_labels_seen
                    .lock()
                    .map(|mut map| map.insert(name.clone(), labels.clone()) != Some(labels))
                    .unwrap_or(true);
                if changed {
                    for service in self.services.state() {
                        if service.metadata.namespace.as_deref() == Some(name.as_str()) {
                            let _moot_after_term =
                                self.queue.unbounded_send(ObjectRef::from_obj(&*service));
                        }
                    }
                }
            }
            Ok(watcher::Event::Delete(ns)) => {
                if let Ok(mut map) = self.namespace_labels_seen.lock() {
                    map.remove(&ns.name_any());
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, "Namespace watch failed; retrying with back-off"),
        }
    }

    /// Services whose bookings a pool change touched get reconciled (annotation, condition).
    fn handle_reports(&self, reports: Vec<PoolChangeReport>) {
        for report in reports {
            match &report {
                PoolChangeReport::AddressOutsideEveryPool { service, .. } => {
                    tracing::warn!(%report, "address outside every pool after a pool change");
                    self.enqueue(service);
                }
                PoolChangeReport::AddressRebooked { service, .. } => {
                    tracing::info!(%report, "address re-booked after a pool change");
                    self.enqueue(service);
                }
                PoolChangeReport::DuplicatePoolName { .. } => {
                    tracing::warn!(%report, "duplicate pool name");
                }
                PoolChangeReport::ExternalIpReleased { service, .. } => {
                    tracing::info!(%report, "externalIP booking released after a pool change");
                    self.enqueue(service);
                }
            }
        }
    }

    /// Makes sure pool `name` carries `herald.dev/pool-in-use` (read fresh, then a merge patch
    /// conditional on the resourceVersion read).
    async fn ensure_pool_finalizer(&self, name: &str) -> Result<(), Error> {
        let api: Api<IPAddressPool> =
            Api::namespaced(self.client.clone(), &self.settings.namespace);
        let pool = match api.get(name).await {
            Ok(pool) => pool,
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        if pool_plan::has_finalizer(&pool) || pool.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        self.set_pool_finalizer(&api, &pool, FinalizerChange::Add, None)
            .await
    }

    async fn set_pool_finalizer(
        &self,
        api: &Api<IPAddressPool>,
        pool: &IPAddressPool,
        change: FinalizerChange,
        resource_version: Option<String>,
    ) -> Result<(), Error> {
        let mut finalizers: Vec<String> = pool.metadata.finalizers.clone().unwrap_or_default();
        finalizers.retain(|f| f != names::FINALIZER_POOL_IN_USE);
        if change == FinalizerChange::Add {
            finalizers.push(names::FINALIZER_POOL_IN_USE.to_owned());
        }
        let patch = json!({"metadata": {
            "resourceVersion": resource_version.or_else(|| pool.resource_version()),
            "finalizers": finalizers,
        }});
        self.gate.check()?;
        match api
            .patch(
                &pool.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pool = %pool.name_any(), ?change, "pool finalizer updated");
                Ok(())
            }
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes the plan's status, then its annotations. In this order the watch event of the
    /// annotation write already carries the status, so the reconcile it triggers finds
    /// nothing to do (the other order rewrote the status from a stale cache).
    async fn write_service(&self, plan: &ServicePlan) -> Result<(), Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &plan.key.namespace);
        if let Some(status) = &plan.status {
            let conditions = if status.conditions.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(&status.conditions)?
            };
            let mut patch = json!({"status": {"conditions": conditions}});
            if let Some(ingress) = &status.ingress {
                let ingress = if ingress.is_empty() {
                    Value::Null
                } else {
                    Value::Array(
                        ingress
                            .iter()
                            .map(|ip| json!({"ip": ip.to_string(), "ipMode": IP_MODE_VIP}))
                            .collect(),
                    )
                };
                patch["status"]["loadBalancer"] = json!({ "ingress": ingress });
            }
            self.gate.check()?;
            match api
                .patch_status(
                    &plan.key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(updated) => {
                    self.record_write(&plan.key, &updated);
                    if let Some(ingress) = status.ingress.as_ref().filter(|i| !i.is_empty()) {
                        tracing::info!(
                            service = %plan.key,
                            addresses = ?ingress,
                            "status written"
                        );
                    }
                }
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
        let annotation_value = |change: &service_plan::AnnotationChange| match change {
            service_plan::AnnotationChange::Set(value) => json!(value),
            service_plan::AnnotationChange::Remove => Value::Null,
        };
        let mut annotations = serde_json::Map::new();
        if let Some(change) = &plan.annotation {
            annotations.insert(
                names::ANNOTATION_ALLOCATED_FROM_POOL.to_owned(),
                annotation_value(change),
            );
        }
        if let Some(change) = &plan.external_annotation {
            annotations.insert(
                service_plan::ANNOTATION_EXTERNAL_IPS_BOOKED.to_owned(),
                annotation_value(change),
            );
        }
        if !annotations.is_empty() {
            let patch = json!({"metadata": {"annotations": annotations}});
            self.gate.check()?;
            match api
                .patch(
                    &plan.key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(updated) => self.record_write(&plan.key, &updated),
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn record_write(&self, key: &ServiceKey, updated: &Service) {
        let version = updated
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok());
        if let (Some(version), Ok(mut written)) = (version, self.written.lock()) {
            written.insert(key.clone(), version);
        }
    }

    /// One pool pass: install the pools, then per pool write status and the finalizer.
    async fn pool_pass_once(&self) -> Result<(), Error> {
        self.gate.check()?;
        let pools = state::convert_pools(&self.pools.state());
        let (plans, reports) = {
            let mut state = self.lock()?;
            let reports = state.sync_pools(&pools);
            let now = Timestamp::now();
            let mut plans = Vec::new();
            for (name, (pool, converted)) in &pools {
                let plan = pool_plan::plan_pool(pool, converted, &state.allocator, now);
                match plan.finalizer {
                    Some(FinalizerChange::Add) => {
                        state.finalized_pools.insert(name.clone());
                    }
                    Some(FinalizerChange::Remove) => {
                        state.finalized_pools.remove(name);
                    }
                    None => {}
                }
                plans.push((Arc::clone(pool), plan));
            }
            state
                .finalized_pools
                .retain(|name| pools.contains_key(name));
            (plans, reports)
        };
        self.handle_reports(reports);
        self.metrics
            .set_pools(plans.iter().map(|(_, p)| (p.name.as_str(), p.ipv4, p.ipv6)));

        let api: Api<IPAddressPool> =
            Api::namespaced(self.client.clone(), &self.settings.namespace);
        let mut first_error = None;
        for (pool, plan) in plans {
            let deleting = pool.metadata.deletion_timestamp.is_some();
            let mut resource_version = None;
            let finishing_deletion = deleting && plan.finalizer == Some(FinalizerChange::Remove);
            if let Some(status) = plan.status.as_ref().filter(|_| !finishing_deletion) {
                self.gate.check()?;
                match api
                    .patch_status(
                        &plan.name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({ "status": status })),
                    )
                    .await
                {
                    Ok(updated) => resource_version = updated.resource_version(),
                    Err(error) if is_not_found(&error) => continue,
                    Err(error) => {
                        first_error.get_or_insert(Error::from(error));
                        continue;
                    }
                }
            }
            if let Some(change) = plan.finalizer
                && let Err(error) = self
                    .set_pool_finalizer(&api, &pool, change, resource_version)
                    .await
            {
                if matches!(error, Error::NotLeader) {
                    return Err(error);
                }
                if let Ok(mut state) = self.lock() {
                    // Unknown again: the next pass decides afresh.
                    state.finalized_pools.remove(&plan.name);
                }
                first_error.get_or_insert(error);
            }
            for event in &plan.events {
                self.publish(&pool.object_ref(&()), pool_identity(&pool), event)
                    .await;
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Publishes an Event unless an identical one went out within the window. Failures are
    /// logged, never fatal.
    async fn publish(&self, reference: &ObjectReference, identity: String, event: &PlannedEvent) {
        let admitted = match self.limiter.lock() {
            Ok(mut limiter) => limiter.admit(
                EventKey {
                    object: identity.clone(),
                    reason: event.reason.to_owned(),
                    message: event.message.clone(),
                },
                Instant::now(),
            ),
            Err(_) => false,
        };
        if !admitted {
            self.metrics.events_suppressed.inc();
            tracing::debug!(object = %identity, reason = event.reason, "identical Event suppressed");
            return;
        }
        match event.type_ {
            EventType::Warning => {
                tracing::warn!(object = %identity, reason = event.reason, message = %event.message, "event");
            }
            EventType::Normal => {
                tracing::info!(object = %identity, reason = event.reason, message = %event.message, "event");
            }
        }
        if !self.gate.is_open() {
            return;
        }
        let kube_event = KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.to_owned(),
            note: Some(crate::conditions::truncate(&event.message, 1024)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&kube_event, reference).await {
            tracing::debug!(%error, object = %identity, "publishing an Event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn a_cached_object_older_than_our_last_write_is_stale() {
        assert!(is_stale(Some("100"), Some(101)));
        assert!(!is_stale(Some("101"), Some(101)));
        assert!(!is_stale(Some("102"), Some(101)));
        assert!(!is_stale(Some("100"), None));
        assert!(!is_stale(Some("opaque"), Some(101)));
        assert!(!is_stale(None, Some(101)));
    }

    #[test]
    fn a_closed_gate_refuses_writes() {
        let gate = WriteGate::default();
        assert!(matches!(gate.check(), Err(Error::NotLeader)));
        gate.open();
        assert!(gate.check().is_ok());
        gate.close();
        assert!(!gate.is_open());
    }

    #[test]
    fn event_limiter_keys_name_the_object_and_its_uid() {
        let mut service = Service::default();
        service.metadata.namespace = Some("ns".into());
        service.metadata.name = Some("web".into());
        service.metadata.uid = Some("u1".into());
        assert_eq!(service_identity(&service), "Service ns/web u1");
    }
}
