//! The speaker's Kubernetes watches: one reflector store per watched kind.
//!
//! Owns the I/O with the API server: a `kube::runtime` watcher per kind (with the default
//! back-off on errors) feeding a reflector store, and a wake-up for the reconcile loop on
//! every event. Watched: Services, EndpointSlices (those labelled with their Service) and
//! Nodes cluster-wide; Herald's IPAddressPools, L2Advertisements, BGPAdvertisements,
//! BGPPeers, Communities and BFDProfiles in the install namespace; and the memberlist Secret by name.
//! [`Watches::snapshot`] copies the stores out for the pure conversion; nothing here
//! interprets an object.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use herald_crds::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::convert::{ClusterObjects, LABEL_SERVICE_NAME};
use crate::metrics::Metrics;
use crate::observability::ResourceLabel;
use crate::task::TaskHandle;

/// Copies of everything watched, taken at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
    pub pools: Vec<IPAddressPool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    pub peers: Vec<BGPPeer>,
    pub communities: Vec<Community>,
    pub bfd_profiles: Vec<BFDProfile>,
    /// The memberlist Secret, when one is configured and exists.
    pub memberlist_secret: Option<Secret>,
}

impl Snapshot {
    /// The objects as the conversion takes them.
    pub fn objects(&self) -> ClusterObjects<'_> {
        ClusterObjects {
            services: &self.services,
            endpoint_slices: &self.endpoint_slices,
            nodes: &self.nodes,
            pools: &self.pools,
            l2_advertisements: &self.l2_advertisements,
            bgp_advertisements: &self.bgp_advertisements,
            peers: &self.peers,
            communities: &self.communities,
            bfd_profiles: &self.bfd_profiles,
        }
    }

    /// The Node object of `name`, if watched.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

/// Where to watch.
#[derive(Debug, Clone)]
pub struct WatchScope {
    /// Namespace of Herald's install: its custom resources and the memberlist Secret.
    pub install_namespace: String,
    /// Name of the memberlist Secret to watch, if any.
    pub memberlist_secret: Option<String>,
}

/// The running watches; they stop when this is dropped.
pub struct Watches {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pools: Store<IPAddressPool>,
    l2_advertisements: Store<L2Advertisement>,
    bgp_advertisements: Store<BGPAdvertisement>,
    peers: Store<BGPPeer>,
    communities: Store<Community>,
    bfd_profiles: Store<BFDProfile>,
    memberlist_secret: Option<Store<Secret>>,
    tasks: Vec<TaskHandle>,
}

impl Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Watches {
    /// Starts every watch. Each event (and each relist) sends a wake-up on `changed`; a
    /// full channel means a wake-up is already pending, which is enough.
    pub fn start(
        client: Client,
        scope: &WatchScope,
        changed: mpsc::Sender<()>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ns = scope.install_namespace.as_str();
        let mut spawner = Spawner {
            changed,
            metrics,
            tasks: Vec::new(),
        };
        let services = spawner.watch(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            "services",
        );
        let endpoint_slices = spawner.watch(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(LABEL_SERVICE_NAME),
            "endpointslices",
        );
        let nodes = spawner.watch(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            "nodes",
        );
        let pools = spawner.watch(
            Api::<IPAddressPool>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "ipaddresspools",
        );
        let l2_advertisements = spawner.watch(
            Api::<L2Advertisement>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "l2advertisements",
        );
        let bgp_advertisements = spawner.watch(
            Api::<BGPAdvertisement>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "bgpadvertisements",
        );
        let peers = spawner.watch(
            Api::<BGPPeer>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "bgppeers",
        );
        let communities = spawner.watch(
            Api::<Community>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "communities",
        );
        let bfd_profiles = spawner.watch(
            Api::<BFDProfile>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "bfdprofiles",
        );
        // One Secret by name: with a field selector on metadata.name, RBAC can restrict
        // the speaker to exactly this Secret (resourceNames) for list and watch.
        let memberlist_secret = scope.memberlist_secret.as_ref().map(|name| {
            spawner.watch(
                Api::<Secret>::namespaced(client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                "secrets",
            )
        });
        Self {
            services,
            endpoint_slices,
            nodes,
            pools,
            l2_advertisements,
            bgp_advertisements,
            peers,
            communities,
            bfd_profiles,
            memberlist_secret,
            tasks: spawner.tasks,
        }
    }

    /// Waits until every store has completed its first list. Returns early only if a
    /// watch task ended (it never does while the `Watches` live).
    pub async fn wait_ready(&self) {
        let _ = futures::join!(
            self.services.wait_until_ready(),
            self.endpoint_slices.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.pools.wait_until_ready(),
            self.l2_advertisements.wait_until_ready(),
            self.bgp_advertisements.wait_until_ready(),
            self.peers.wait_until_ready(),
            self.communities.wait_until_ready(),
            self.bfd_profiles.wait_until_ready(),
            async {
                if let Some(secret) = &self.memberlist_secret {
                    let _ = secret.wait_until_ready().await;
                }
            },
        );
    }

    /// Copies the stores' current contents.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            services: copy(&self.services),
            endpoint_slices: copy(&self.endpoint_slices),
            nodes: copy(&self.nodes),
            pools: copy(&self.pools),
            l2_advertisements: copy(&self.l2_advertisements),
            bgp_advertisements: copy(&self.bgp_advertisements),
            peers: copy(&self.peers),
            communities: copy(&self.communities),
            bfd_profiles: copy(&self.bfd_profiles),
            memberlist_secret: self
                .memberlist_secret
                .as_ref()
                .and_then(|s| s.state().first().map(|secret| (**secret).clone())),
        }
    }

    /// Stops every watch.
    pub fn stop(&mut self) {
        self.tasks.clear();
    }
}

fn copy<K: Resource + Clone>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .state()
        .iter()
        .map(|object| (**object).clone())
        .collect()
}

struct Spawner {
    changed: mpsc::Sender<()>,
    metrics: Arc<Metrics>,
    tasks: Vec<TaskHandle>,
}

impl Spawner {
    fn watch<K>(&mut self, api: Api<K>, config: watcher::Config, resource: &'static str) -> Store<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    {
        let (reader, writer) = reflector::store::<K>();
        let changed = self.changed.clone();
        let metrics = Arc::clone(&self.metrics);
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|object| object.managed_fields_mut().clear())
            .reflect(writer);
        self.tasks.push(TaskHandle::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut errors: u64 = 0;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        // Full: a wake-up is already pending. Closed: the loop is gone.
                        let _ = changed.try_send(());
                    }
                    Err(error) => {
                        metrics
                            .watch_errors
                            .get_or_create(&ResourceLabel { resource })
                            .inc();
                        errors += 1;
                        // Log the 1st, 2nd, 4th, 8th, ... error of a watch: the back-off
                        // retries forever, the log should not grow as fast.
                        if errors.is_power_of_two() {
                            tracing::warn!(resource, errors, %error, "watch failed; retrying with back-off");
                        }
                    }
                }
            }
        }));
        reader
    }
}
