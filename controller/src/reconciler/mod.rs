//! The kube-runtime edge: watches, the work queue, and the writes. One call of [`run_term`]
//! is one leadership term.
//!
//! A term (1) starts reflectors for Services (all namespaces), IPAddressPools (the install
//! namespace), Namespaces (for `namespaceSelectors`) and Nodes (their InternalIP /
//! ExternalIP addresses are reserved: never allocated), (2) waits until all four are
//! listed, (3) restores every existing assignment from Service status **before** anything is
//! allocated, (4) then runs kube's `applier` over the Service queue (bounded concurrency, per
//! object exclusivity, back-off) and a pool pass (status, finalizer) that is debounced, and
//! (5) removes the BGPPeer status entries of deleted Nodes ([`crate::peer_status`]).
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
use crate::peer_status;
use crate::pool_plan::{self, FinalizerChange};
use crate::service_plan::{self, EventType, IP_MODE_VIP, Outcome, PlannedEvent, ServicePlan};
use crate::service_view::ServiceView;
use crate::state::{self, ControllerState};

mod runner;
mod watches;
mod writes;

pub use runner::run_term;

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

/// The term's watch caches (each complete once its first list is done).
#[derive(Clone)]
struct Stores {
    services: Store<Service>,
    pools: Store<IPAddressPool>,
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
}

/// The write halves of [`Stores`], handed to the reflectors.
struct StoreWriters {
    services: reflector::store::Writer<Service>,
    pools: reflector::store::Writer<IPAddressPool>,
    namespaces: reflector::store::Writer<Namespace>,
    nodes: reflector::store::Writer<Node>,
}

/// Waits until `store`'s watch completed its first list.
async fn listed<K>(store: &Store<K>, kind: &'static str) -> Result<(), Error>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady(kind))
}

impl Stores {
    /// Waits until every watch completed its first list (nothing is decided before).
    async fn wait_until_listed(&self) -> Result<(), Error> {
        listed(&self.namespaces, "Namespace").await?;
        listed(&self.nodes, "Node").await?;
        listed(&self.pools, "IPAddressPool").await?;
        listed(&self.services, "Service").await
    }

    fn new() -> (Self, StoreWriters) {
        let (services, service_writer) = reflector::store();
        let (pools, pool_writer) = reflector::store();
        let (namespaces, namespace_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        (
            Stores {
                services,
                pools,
                namespaces,
                nodes,
            },
            StoreWriters {
                services: service_writer,
                pools: pool_writer,
                namespaces: namespace_writer,
                nodes: node_writer,
            },
        )
    }
}

/// The edge's own bookkeeping for one term, under one lock: retry counts, what the watches
/// last saw (to requeue only on real changes), what this term last wrote, and the Event
/// limiter.
struct Books {
    backoff: HashMap<ServiceKey, u32>,
    namespace_labels_seen: HashMap<String, Labels>,
    pool_generations_seen: HashMap<String, (Option<i64>, bool)>,
    /// The resourceVersion of each Service's last write by this term (see [`is_stale`]).
    written: HashMap<ServiceKey, u64>,
    limiter: EventLimiter,
}

/// Everything a term's reconciles share. Decisions are made under `state`'s lock; the
/// edge's bookkeeping has its own (`books`), never held across an await.
pub struct Context {
    client: Client,
    settings: Settings,
    state: Mutex<ControllerState>,
    stores: Stores,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    gate: Arc<WriteGate>,
    queue: mpsc::UnboundedSender<ObjectRef<Service>>,
    pool_pass: Notify,
    books: Mutex<Books>,
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
        self.stores
            .namespaces
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
        let Ok(mut books) = self.books.lock() else {
            return BACKOFF_MAX;
        };
        let attempts = books.backoff.entry(key.clone()).or_insert(0);
        *attempts = attempts.saturating_add(1);
        backoff_delay(*attempts)
    }

    fn reset_backoff(&self, key: &ServiceKey) {
        if let Ok(mut books) = self.books.lock() {
            books.backoff.remove(key);
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
