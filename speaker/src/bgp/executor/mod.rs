//! The BGP executor: makes this node's BGP sessions and routes match its plan, and tells
//! the API how they are doing.
//!
//! - [`desired`]: plan + facts about the node -> the session manager's desired state (pure).
//! - [`report`]: BGPPeer status entries, the per-Service carrier annotation, and when to
//!   write them (pure).
//! - [`metrics`]: the `herald_speaker_bgp_*` metrics and their sampling (pure bookkeeping).
//! - [`secrets`]: the password Secrets, cached from watches by name (last-known-good).
//! - [`kube_edge`]: Secrets, status and annotation writes (I/O with the API server).
//!
//! [`BgpExecutor`] is the [`Executor`] the runtime calls with every plan. It looks up what
//! the plan cannot know — the password in each peer's `passwordSecret`, the address the
//! kernel sends from towards each peer, the node's interface addresses (for the BGP
//! Identifier and the next hop of the other address family) — caches it, and re-reads it on
//! every full resync; then hands the desired peers and routes to the
//! [`BgpManager`](crate::bgp::driver::BgpManager), which changes only the difference. A
//! background task samples the sessions every [`TICK`]: metrics, BGPPeer status entries
//! and Service annotations (written on change, rate limited), and a retry of peers held
//! back by a missing Secret.
//!
//! Entries of other nodes: a speaker killed without SIGTERM on a node that is then deleted
//! leaves its status entries behind; the leader controller removes them (its
//! `peer_status` module), not the speakers.
//!
//! Shutdown: peers with graceful restart negotiated are closed without a NOTIFICATION, so
//! the router keeps the routes for the restart time (RFC 4724 §4); every other session gets
//! a Cease / Administrative Shutdown (RFC 4486, with an RFC 8203 message) and the router
//! withdraws the routes at once. This node's status entries and annotations are removed
//! meanwhile (queued before the sessions close, waited for with a bound).

pub mod desired;
pub mod kube_edge;
pub mod metrics;
pub mod report;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use self::desired::{
    NodeFacts, PeerFacts, Translation, node_ipv4_addresses, other_family_address, translate,
};
use self::kube_edge::{KubeEdge, Outcome, Request, WriteResult};
use self::metrics::{BgpMetrics, MetricsSampler, ResultLabel};
use self::report::{AnnotationBook, SessionReport, StatusBook, annotation_key, carriers};
use crate::bgp::codec::Family;
use crate::bgp::driver::{BgpManager, DriverError, ListenConfig, PeerStatus};
use crate::bgp::fsm::{State, StopReason};
use crate::l2::interfaces::InterfaceInfo;
use crate::l2::io::discover_interfaces;
use crate::model::{Peer, SecretKeyRef};
use crate::planner::{BgpPlan, NodePlan};
use crate::runtime::executor::{ApplyReport, Executor, ExecutorError};

/// How often the sessions are sampled for metrics, status and annotations.
pub const TICK: Duration = Duration::from_millis(250);
/// Shortest time between two writes to one BGPPeer status entry or one Service annotation.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How often peers held back by an unreadable Secret are tried again.
const HELD_BACK_RETRY: Duration = Duration::from_secs(5);
/// How long shutdown waits for the removal of status entries and annotations.
const SHUTDOWN_WRITES_TIMEOUT: Duration = Duration::from_secs(5);
/// The RFC 8203 shutdown communication sent to peers on shutdown.
const SHUTDOWN_MESSAGE: &str = "herald-speaker shutting down";

/// How the BGP executor is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpExecutorConfig {
    /// This node's name (status entries, annotations).
    pub node: String,
    /// Namespace of the BGPPeers (the install namespace).
    pub namespace: String,
    /// BGP Identifier for peers without `routerID` (e.g. the node's IPv4 address).
    pub router_id: Option<Ipv4Addr>,
    /// Where to accept connections from peers; `None`: connect out only.
    pub listen: Option<ListenConfig>,
    /// Shortest time between two writes to one object.
    pub write_interval: Duration,
}

impl BgpExecutorConfig {
    pub fn new(node: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            namespace: namespace.into(),
            router_id: None,
            listen: Some(ListenConfig::default()),
            write_interval: DEFAULT_WRITE_INTERVAL,
        }
    }
}

/// The facts of one peer, with what they were looked up for (a changed peer is looked up
/// again).
#[derive(Debug, Clone)]
struct CachedFacts {
    peer_address: IpAddr,
    peer_port: u16,
    source_address: Option<IpAddr>,
    secret: Option<SecretKeyRef>,
    facts: PeerFacts,
}

impl CachedFacts {
    fn matches(&self, peer: &Peer) -> bool {
        self.peer_address == peer.peer_address
            && self.peer_port == peer.peer_port
            && self.source_address == peer.source_address
            && self.secret == peer.password_secret
    }
}

/// What the carriers were last computed from: the translation's generation and each
/// session's state and negotiated families.
type CarrierInputs = (u64, Vec<(String, State, Vec<Family>)>);

struct Inner {
    config: BgpExecutorConfig,
    /// `None` after shutdown.
    manager: Option<BgpManager>,
    kube: Option<Arc<KubeEdge>>,
    interfaces: Option<Vec<InterfaceInfo>>,
    facts: BTreeMap<String, CachedFacts>,
    plan: BgpPlan,
    translation: Translation,
    /// Bumped whenever `translation` changes (the carriers are recomputed then).
    generation: u64,
    carrier_inputs: Option<CarrierInputs>,
    status_book: StatusBook,
    annotation_book: AnnotationBook,
    sampler: MetricsSampler,
    metrics: BgpMetrics,
    logged_held_back: BTreeMap<String, String>,
    logged_missing_families: BTreeMap<String, Vec<Family>>,
}

/// BGP sessions and routes (issue 6), as one of the runtime's executors.
pub struct BgpExecutor {
    inner: Arc<Mutex<Inner>>,
    background: JoinHandle<()>,
}

impl std::fmt::Debug for BgpExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BgpExecutor").finish_non_exhaustive()
    }
}

impl Drop for BgpExecutor {
    fn drop(&mut self) {
        self.background.abort();
    }
}

impl BgpExecutor {
    pub const NAME: &'static str = "bgp";

    /// Starts the executor (needs a tokio runtime). With a client it reads password Secrets
    /// and writes status and annotations; without one (tests) it runs the sessions only. A
    /// listen address that cannot be bound (another BGP daemon on the node) is logged and
    /// the speaker connects out only.
    pub fn start(
        config: BgpExecutorConfig,
        client: Option<Client>,
        metrics: BgpMetrics,
    ) -> Result<Self, DriverError> {
        let manager = match BgpManager::new(config.listen.as_ref()) {
            Ok(manager) => manager,
            Err(error) if config.listen.is_some() => {
                tracing::warn!(%error, listen = ?config.listen, "cannot accept BGP connections; connecting out only");
                BgpManager::new(None)?
            }
            Err(error) => return Err(error),
        }
        .with_bfd_metrics(metrics.bfd.clone());
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let kube = client.map(|client| {
            Arc::new(KubeEdge::start(
                client,
                &config.namespace,
                &config.node,
                annotation_key(&config.node),
                outcomes_tx,
            ))
        });
        let inner = Arc::new(Mutex::new(Inner {
            status_book: StatusBook::new(config.node.clone()),
            config,
            manager: Some(manager),
            kube: kube.clone(),
            interfaces: None,
            facts: BTreeMap::new(),
            plan: BgpPlan::default(),
            translation: Translation::default(),
            generation: 0,
            carrier_inputs: None,
            annotation_book: AnnotationBook::default(),
            sampler: MetricsSampler::default(),
            metrics,
            logged_held_back: BTreeMap::new(),
            logged_missing_families: BTreeMap::new(),
        }));
        let background = tokio::spawn(background(Arc::clone(&inner), kube, outcomes));
        Ok(Self { inner, background })
    }

    /// The sessions' current status, by peer name.
    pub async fn status(&self) -> BTreeMap<String, PeerStatus> {
        let inner = self.inner.lock().await;
        inner
            .manager
            .as_ref()
            .map(BgpManager::status)
            .unwrap_or_default()
    }
}

impl Executor for BgpExecutor {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().await;
            inner.apply_plan(&plan.bgp, false).await
        })
    }

    /// Reads the Secrets, interfaces and source addresses again (a rotated password or a
    /// changed address restarts the session), then applies.
    fn resync<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().await;
            inner.apply_plan(&plan.bgp, true).await
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().await;
            self.background.abort();
            // The removals are queued first so they run while the sessions close.
            let kube = inner.kube.clone();
            if let Some(kube) = &kube {
                for write in inner.status_book.remove_all() {
                    kube.send(Request::Status(write));
                }
                for write in inner.annotation_book.remove_all() {
                    kube.send(Request::Annotation(write));
                }
            }
            if let Some(manager) = inner.manager.take() {
                let peers = manager.status().len();
                manager
                    .shutdown_each(|_, config| {
                        if config.session.graceful_restart.is_some() {
                            StopReason::Restarting
                        } else {
                            StopReason::AdministrativeShutdown(SHUTDOWN_MESSAGE.to_string())
                        }
                    })
                    .await;
                tracing::info!(peers, "BGP sessions closed");
            }
            if let Some(kube) = kube {
                if kube.flush(SHUTDOWN_WRITES_TIMEOUT).await {
                    tracing::info!("BGP status entries and annotations of this node removed");
                } else {
                    tracing::warn!("BGP status and annotations not all removed before shutdown");
                }
            }
            Ok(())
        })
    }
}

/// The address the kernel would send from towards `peer` (no packet is sent: connecting a
/// UDP socket only picks the route and source).
fn kernel_source_address(peer: IpAddr, port: u16) -> Option<IpAddr> {
    let bind = match peer {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(SocketAddr::new(peer, port)).ok()?;
    let local = socket.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

impl Inner {
    async fn apply_plan(
        &mut self,
        plan: &BgpPlan,
        refresh: bool,
    ) -> Result<ApplyReport, ExecutorError> {
        if self.manager.is_none() {
            return Ok(ApplyReport::unchanged());
        }
        if refresh {
            self.interfaces = None;
            self.facts.clear();
        }
        self.look_up(plan).await;
        let node = NodeFacts {
            router_id: self.config.router_id,
            ipv4_addresses: self
                .interfaces
                .as_deref()
                .map(node_ipv4_addresses)
                .unwrap_or_default(),
        };
        let facts: BTreeMap<String, PeerFacts> = self
            .facts
            .iter()
            .map(|(name, cached)| (name.clone(), cached.facts.clone()))
            .collect();
        let translation = translate(plan, &facts, &node);
        self.log_translation(&translation);
        if let Some(manager) = self.manager.as_mut() {
            manager
                .apply(&translation.desired)
                .map_err(|e| ExecutorError::new(BgpExecutor::NAME, e))?;
        }
        let changed = translation != self.translation;
        let detail = format!(
            "{} sessions, {} routes, {} held back",
            translation.desired.peers.len(),
            translation
                .desired
                .routes
                .values()
                .map(BTreeMap::len)
                .sum::<usize>(),
            translation.held_back.len()
        );
        if changed {
            self.generation += 1;
        }
        self.plan = plan.clone();
        self.translation = translation;
        self.sample(Instant::now());
        Ok(if changed {
            ApplyReport {
                outcome: "updated",
                changed: true,
                detail,
                repaired_drift: Vec::new(),
            }
        } else {
            ApplyReport::unchanged()
        })
    }

    /// Fills the caches for every planned peer: interfaces, source addresses, passwords.
    async fn look_up(&mut self, plan: &BgpPlan) {
        self.facts.retain(|name, cached| {
            plan.sessions
                .get(name)
                .is_some_and(|peer| cached.matches(peer))
        });
        if let Some(kube) = &self.kube {
            let named: BTreeSet<&SecretKeyRef> = plan
                .sessions
                .values()
                .filter_map(|peer| peer.password_secret.as_ref())
                .collect();
            kube.retain_secrets(&named);
        }
        if plan.sessions.is_empty() {
            return;
        }
        if self.interfaces.is_none() {
            match discover_interfaces().await {
                Ok(interfaces) => self.interfaces = Some(interfaces),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the node's interfaces for BGP; retrying on the next pass")
                }
            }
        }
        let interfaces = self.interfaces.clone().unwrap_or_default();
        let mut passwords: BTreeMap<SecretKeyRef, Result<String, String>> = self
            .facts
            .values()
            .filter_map(|c| Some((c.secret.clone()?, c.facts.password.clone()?)))
            .filter(|(_, password)| password.is_ok())
            .collect();
        for (name, peer) in &plan.sessions {
            if self.facts.contains_key(name) {
                continue;
            }
            let local_address = peer
                .source_address
                .or_else(|| kernel_source_address(peer.peer_address, peer.peer_port));
            let other_family_address =
                local_address.and_then(|local| other_family_address(local, &interfaces));
            let password = match &peer.password_secret {
                None => None,
                Some(secret) => Some(match passwords.get(secret) {
                    Some(known) => known.clone(),
                    None => {
                        let read = match &self.kube {
                            Some(kube) => kube.read_password(secret).await,
                            None => Err("no API client to read the password Secret".to_string()),
                        };
                        passwords.insert(secret.clone(), read.clone());
                        read
                    }
                }),
            };
            self.facts.insert(
                name.clone(),
                CachedFacts {
                    peer_address: peer.peer_address,
                    peer_port: peer.peer_port,
                    source_address: peer.source_address,
                    secret: peer.password_secret.clone(),
                    facts: PeerFacts {
                        password,
                        local_address,
                        other_family_address,
                    },
                },
            );
        }
    }

    fn log_translation(&mut self, translation: &Translation) {
        if translation.held_back != self.logged_held_back {
            for (peer, reason) in &translation.held_back {
                if self.logged_held_back.get(peer) != Some(reason) {
                    tracing::warn!(%peer, %reason, "BGP peer not started");
                }
            }
            self.logged_held_back = translation.held_back.clone();
        }
        self.metrics
            .peers_held_back
            .set(i64::try_from(translation.held_back.len()).unwrap_or(i64::MAX));
        if translation.families_without_next_hop != self.logged_missing_families {
            for (peer, families) in &translation.families_without_next_hop {
                tracing::info!(%peer, ?families, "routes of these families are not sent to the peer: no next hop of that family on the interface towards it");
            }
            self.logged_missing_families = translation.families_without_next_hop.clone();
        }
    }

    /// Samples the sessions: metrics, status entries, annotations; queues the writes due.
    fn sample(&mut self, now: Instant) {
        let Some(manager) = self.manager.as_ref() else {
            return;
        };
        let statuses = manager.status();
        let bfd = manager.bfd_status();
        self.sampler.record(&statuses, &self.metrics);
        let reports: BTreeMap<String, SessionReport> = self
            .plan
            .sessions
            .iter()
            .map(|(name, peer)| {
                let mut report = report::session_report(
                    statuses.get(name),
                    self.translation.held_back.get(name).map(String::as_str),
                    peer.password_secret.is_some(),
                );
                report.bfd = bfd.get(name).map(|session| {
                    report::bfd_report(
                        session.state,
                        session.diagnostic,
                        session.tx_interval,
                        session.detection_time,
                    )
                });
                (name.clone(), report)
            })
            .collect();
        self.status_book.observe(&reports, Timestamp::now());
        let inputs: Vec<(String, State, Vec<Family>)> = statuses
            .iter()
            .map(|(name, status)| {
                let families = status
                    .session
                    .negotiated
                    .as_ref()
                    .map(|n| n.families.clone())
                    .unwrap_or_default();
                (name.clone(), status.session.state, families)
            })
            .collect();
        let key = (self.generation, inputs);
        if self.carrier_inputs.as_ref() != Some(&key) {
            let carried = carriers(&self.plan, &self.translation, &statuses);
            self.annotation_book.set_desired(&carried);
            self.carrier_inputs = Some(key);
        }
        let Some(kube) = self.kube.as_ref() else {
            return;
        };
        let interval = self.config.write_interval;
        for write in self.status_book.due(now, interval) {
            kube.send(Request::Status(write));
        }
        for write in self.annotation_book.due(now, interval) {
            kube.send(Request::Annotation(write));
        }
    }

    fn record_outcome(&mut self, outcome: Outcome) {
        let result = match &outcome {
            Outcome::Status { result, .. } | Outcome::Annotation { result, .. } => *result,
        };
        let label = if result == WriteResult::Failed {
            "error"
        } else {
            "ok"
        };
        self.metrics
            .api_writes
            .get_or_create(&ResultLabel { result: label })
            .inc();
        match (outcome, result) {
            (_, WriteResult::Ok) => {}
            (Outcome::Status { peer, .. }, WriteResult::Gone) => self.status_book.gone(&peer),
            (Outcome::Status { peer, .. }, WriteResult::Failed) => self.status_book.failed(&peer),
            (Outcome::Annotation { service, .. }, WriteResult::Gone) => {
                self.annotation_book.gone(&service)
            }
            (Outcome::Annotation { service, .. }, WriteResult::Failed) => {
                self.annotation_book.failed(&service)
            }
        }
    }

    /// Peers held back by something that may have been fixed since (a Secret created, an
    /// address added): forget their facts so that they are looked up again.
    fn forget_held_back(&mut self) -> bool {
        let held: BTreeSet<String> = self.translation.held_back.keys().cloned().collect();
        if held.is_empty() {
            return false;
        }
        self.facts.retain(|name, _| !held.contains(name));
        if self
            .translation
            .held_back
            .values()
            .any(|reason| reason.contains("BGP Identifier"))
        {
            self.interfaces = None;
        }
        true
    }
}

/// Seeds the books from the API (with retries), then samples every [`TICK`], records write
/// outcomes and retries held-back peers.
async fn background(
    inner: Arc<Mutex<Inner>>,
    kube: Option<Arc<KubeEdge>>,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
) {
    let mut seeding = kube.clone().map(|kube| {
        Box::pin(async move {
            let key = kube.annotation_key().to_string();
            let mut delay = Duration::from_secs(1);
            loop {
                match (
                    kube.existing_annotations(&key).await,
                    kube.existing_status_entries().await,
                ) {
                    (Ok(annotations), Ok(entries)) => return (annotations, entries),
                    (Err(error), _) | (_, Err(error)) => {
                        tracing::warn!(%error, "cannot list what an earlier run wrote for BGP; retrying");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        })
    });
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_retry = Instant::now() + HELD_BACK_RETRY;
    loop {
        tokio::select! {
            seeded = async {
                match seeding.as_mut() {
                    Some(future) => future.await,
                    None => std::future::pending().await,
                }
            } => {
                seeding = None;
                let (annotations, entries) = seeded;
                tracing::debug!(annotations = annotations.len(), entries = entries.len(), "BGP status books seeded from the API");
                let mut inner = inner.lock().await;
                inner.annotation_book.seed(annotations);
                inner.status_book.seed_existing(entries, Timestamp::now());
            }
            Some(outcome) = outcomes.recv() => {
                inner.lock().await.record_outcome(outcome);
            }
            _ = tick.tick() => {
                let mut inner = inner.lock().await;
                let now = Instant::now();
                tracing::trace!("BGP sample");
                if now >= next_retry {
                    next_retry = now + HELD_BACK_RETRY;
                    if inner.forget_held_back() {
                        let plan = inner.plan.clone();
                        if let Err(error) = inner.apply_plan(&plan, false).await {
                            tracing::warn!(%error, "retrying held-back BGP peers failed");
                        }
                    }
                }
                inner.sample(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bgp::driver::{DesiredBgp, PeerConfig};
    use crate::bgp::fsm::{SessionConfig, SessionError};
    use crate::model::ServiceKey;
    use crate::planner::RouteAttributes as PlannedAttributes;

    /// A passive manager on an ephemeral port of 127.0.0.1 expecting AS 64512 from
    /// 127.0.0.4; returns it and its port.
    fn router() -> (BgpManager, u16) {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let listen = ListenConfig {
            addresses: vec!["127.0.0.1".parse().expect("ip")],
            port,
        };
        let mut manager = BgpManager::new(Some(&listen)).expect("listener");
        let mut session = SessionConfig::new(64500, NODE_AS, Ipv4Addr::new(192, 0, 2, 1));
        session.passive = true;
        let mut peer = PeerConfig::new(session, "127.0.0.4".parse().expect("ip"));
        peer.ebgp_multihop = true;
        manager
            .apply(&DesiredBgp {
                peers: [("node".to_string(), peer)].into(),
                routes: BTreeMap::new(),
            })
            .expect("apply");
        (manager, port)
    }

    const NODE_AS: u32 = 64512;

    fn plan(port: u16, with_secret: bool) -> NodePlan {
        let peer = Peer {
            name: "r".into(),
            my_asn: NODE_AS,
            peer_asn: 64500,
            peer_address: "127.0.0.1".parse().expect("ip"),
            peer_port: port,
            source_address: Some("127.0.0.4".parse().expect("ip")),
            router_id: None,
            hold_time_secs: 9,
            keepalive_time_secs: 3,
            connect_time_secs: 1,
            ebgp_multihop: true,
            password_secret: with_secret.then(|| SecretKeyRef {
                namespace: "herald-system".into(),
                name: "bgp-auth".into(),
                key: "password".into(),
            }),
            node_selectors: vec![],
            graceful_restart: false,
            bfd: None,
        };
        let attributes = PlannedAttributes {
            services: [ServiceKey::new("lab", "web")].into(),
            ..PlannedAttributes::default()
        };
        let mut plan = NodePlan::default();
        plan.bgp.sessions.insert("r".into(), peer);
        plan.bgp.routes.insert(
            "r".into(),
            [("203.0.113.10/32".parse().expect("prefix"), attributes)].into(),
        );
        plan
    }

    fn executor() -> (BgpExecutor, BgpMetrics) {
        let mut config = BgpExecutorConfig::new("n1", "herald-system");
        config.listen = None;
        config.router_id = Some(Ipv4Addr::new(192, 0, 2, 11));
        let metrics = BgpMetrics::default();
        let executor = BgpExecutor::start(config, None, metrics.clone()).expect("starts");
        (executor, metrics)
    }

    async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_planned_peer_gets_a_session_with_its_routes_and_shutdown_sends_an_administrative_cease()
     {
        let (router, port) = router();
        let (mut executor, metrics) = executor();
        let plan = plan(port, false);
        let report = executor.apply(&plan).await.expect("applies");
        assert!(report.changed);
        wait_until("the session to carry the route", async || {
            executor.status().await.get("r").is_some_and(|s| {
                s.session.state == State::Established && s.session.prefixes_advertised == 1
            })
        })
        .await;
        assert!(
            router
                .wait_for_state("node", State::Established, Duration::from_secs(5))
                .await
        );
        let again = executor.apply(&plan).await.expect("applies");
        assert!(!again.changed, "the same plan changes nothing");
        wait_until("the session metrics", async || {
            metrics
                .session_up
                .get_or_create(&metrics::PeerLabel { peer: "r".into() })
                .get()
                == 1
        })
        .await;

        executor.shutdown().await.expect("shuts down");
        wait_until("the router to see the Cease", async || {
            matches!(
                router.status()["node"].session.last_error,
                Some(SessionError::NotificationReceived(ref n)) if (n.code, n.subcode) == (6, 2)
            )
        })
        .await;
        router.shutdown(StopReason::PeerDeconfigured).await;
    }

    #[tokio::test]
    async fn a_peer_whose_password_cannot_be_read_is_held_back_and_starts_once_it_needs_none() {
        let (router, port) = router();
        let (mut executor, metrics) = executor();
        let report = executor.apply(&plan(port, true)).await.expect("applies");
        assert!(report.detail.contains("1 held back"), "{report:?}");
        assert!(executor.status().await.is_empty(), "no session was started");
        assert_eq!(metrics.peers_held_back.get(), 1);
        // The Secret reference goes away: the peer starts.
        executor.apply(&plan(port, false)).await.expect("applies");
        assert_eq!(metrics.peers_held_back.get(), 0);
        assert!(
            router
                .wait_for_state("node", State::Established, Duration::from_secs(10))
                .await
        );
        executor.shutdown().await.expect("shuts down");
        router.shutdown(StopReason::PeerDeconfigured).await;
    }
}
