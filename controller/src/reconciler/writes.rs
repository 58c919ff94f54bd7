//! Every API write of a term: Service status and annotations, pool status and finalizer,
//! Events (rate limited). Each write checks the [`super::WriteGate`] first.

use super::*;

impl Context {
    /// Makes sure pool `name` carries `herald.dev/pool-in-use` (read fresh, then a merge patch
    /// conditional on the resourceVersion read).
    pub(super) async fn ensure_pool_finalizer(&self, name: &str) -> Result<(), Error> {
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

    pub(super) async fn set_pool_finalizer(
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
    pub(super) async fn write_service(&self, plan: &ServicePlan) -> Result<(), Error> {
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

    pub(super) fn record_write(&self, key: &ServiceKey, updated: &Service) {
        let version = updated
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok());
        if let (Some(version), Ok(mut books)) = (version, self.books.lock()) {
            books.written.insert(key.clone(), version);
        }
    }

    /// One pool pass: install the pools, then per pool write status and the finalizer.
    pub(super) async fn pool_pass_once(&self) -> Result<(), Error> {
        self.gate.check()?;
        let pools = state::convert_pools(&self.stores.pools.state());
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
    pub(super) async fn publish(
        &self,
        reference: &ObjectReference,
        identity: String,
        event: &PlannedEvent,
    ) {
        let admitted = match self.books.lock() {
            Ok(mut books) => books.limiter.admit(
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
