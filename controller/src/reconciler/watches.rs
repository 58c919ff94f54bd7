//! The term's watches: [`start`] runs the reflectors (Services, pools, Namespaces, Nodes),
//! and the handlers below decide what each event means: a Service deleted or vanished gives
//! its addresses back, a pool, Node or Namespace change requeues the Services it may
//! concern. No API writes here.

use super::*;

/// Starts the term's reflectors; each watch event goes to its handler below. The tasks stop
/// when the returned [`Tasks`] drops.
pub(super) fn start(ctx: &Arc<Context>, writers: StoreWriters) -> Tasks {
    let client = || ctx.client.clone();
    let metallb_annotations = ctx.settings.metallb_annotations;
    let services = watcher(Api::<Service>::all(client()), watcher::Config::default())
        .default_backoff()
        .modify(move |service: &mut Service| {
            if metallb_annotations {
                convert::adopt_metallb_annotations(service);
            }
        });
    let pools = watcher(
        Api::<IPAddressPool>::namespaced(client(), &ctx.settings.namespace),
        watcher::Config::default(),
    )
    .default_backoff();
    let namespaces =
        watcher(Api::<Namespace>::all(client()), watcher::Config::default()).default_backoff();
    // Only the name and the addresses are kept: Node objects are large and change often.
    let nodes = watcher(Api::<Node>::all(client()), watcher::Config::default())
        .default_backoff()
        .modify(|node: &mut Node| {
            node.metadata.managed_fields = None;
            node.metadata.annotations = None;
            node.metadata.labels = None;
            node.spec = None;
            let addresses = node.status.take().and_then(|s| s.addresses);
            node.status = Some(NodeStatus {
                addresses,
                ..NodeStatus::default()
            });
        });
    Tasks(vec![
        spawn(ctx, writers.services, services, Context::on_service_event),
        spawn(ctx, writers.pools, pools, Context::on_pool_event),
        spawn(
            ctx,
            writers.namespaces,
            namespaces,
            Context::on_namespace_event,
        ),
        spawn(ctx, writers.nodes, nodes, Context::on_node_event),
    ])
}

/// Runs one reflector: `stream`'s events fill `writer`'s store, then go to `on_event`.
fn spawn<K, S>(
    ctx: &Arc<Context>,
    writer: reflector::store::Writer<K>,
    stream: S,
    on_event: fn(&Context, Result<watcher::Event<K>, watcher::Error>),
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let ctx = Arc::clone(ctx);
    tokio::spawn(reflector::reflector(writer, stream).for_each(move |event| {
        on_event(&ctx, event);
        future::ready(())
    }))
}

impl Context {
    pub(super) fn on_service_event(&self, event: Result<watcher::Event<Service>, watcher::Error>) {
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
    pub(super) fn service_gone(&self, key: &ServiceKey) {
        let (released, external_ips) = match self.lock() {
            Ok(mut state) => {
                state.pending.remove(key);
                let external_ips = state.allocator.external_ips(key);
                (state.allocator.release(key), external_ips)
            }
            Err(_) => return,
        };
        self.reset_backoff(key);
        if let Ok(mut books) = self.books.lock() {
            books.written.remove(key);
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
    pub(super) fn sweep_vanished_services(&self) {
        let known = match self.lock() {
            Ok(state) => state.known_services(),
            Err(_) => return,
        };
        for key in known {
            let reference = ObjectRef::new(&key.name).within(&key.namespace);
            if self.stores.services.get(&reference).is_none() {
                self.service_gone(&key);
            }
        }
    }

    pub(super) fn on_pool_event(
        &self,
        event: Result<watcher::Event<IPAddressPool>, watcher::Error>,
    ) {
        let spec_changed = match event {
            Ok(watcher::Event::Apply(pool) | watcher::Event::InitApply(pool)) => {
                let seen = (
                    pool.metadata.generation,
                    pool.metadata.deletion_timestamp.is_some(),
                );
                self.books
                    .lock()
                    .map(|mut books| {
                        books.pool_generations_seen.insert(pool.name_any(), seen) != Some(seen)
                    })
                    .unwrap_or(true)
            }
            Ok(watcher::Event::Delete(pool)) => {
                if let Ok(mut books) = self.books.lock() {
                    books.pool_generations_seen.remove(&pool.name_any());
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
            for service in self.stores.services.state() {
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
    pub(super) fn on_node_event(&self, event: Result<watcher::Event<Node>, watcher::Error>) {
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
            Ok(mut state) => state.sync_nodes(&self.stores.nodes.state()),
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

    pub(super) fn on_namespace_event(
        &self,
        event: Result<watcher::Event<Namespace>, watcher::Error>,
    ) {
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
                    .books
                    .lock()
                    .map(|mut books| {
                        books
                            .namespace_labels_seen
                            .insert(name.clone(), labels.clone())
                            != Some(labels)
                    })
                    .unwrap_or(true);
                if changed {
                    for service in self.stores.services.state() {
                        if service.metadata.namespace.as_deref() == Some(name.as_str()) {
                            let _moot_after_term =
                                self.queue.unbounded_send(ObjectRef::from_obj(&*service));
                        }
                    }
                }
            }
            Ok(watcher::Event::Delete(ns)) => {
                if let Ok(mut books) = self.books.lock() {
                    books.namespace_labels_seen.remove(&ns.name_any());
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, "Namespace watch failed; retrying with back-off"),
        }
    }

    /// Services whose bookings a pool change touched get reconciled (annotation, condition).
    pub(super) fn handle_reports(&self, reports: Vec<PoolChangeReport>) {
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
}
