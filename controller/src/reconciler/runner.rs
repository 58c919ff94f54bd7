//! One leadership term: start the watches, wait for their first lists, restore every
//! assignment from Service status, then run the Service reconciles (kube's `applier`), the
//! pool passes and the BGPPeer status clean-up until one of them ends.

use super::*;

/// Runs one leadership term until an error (or until the caller drops the future when
/// leadership is lost). `health.restored` turns true once every assignment was restored.
pub async fn run_term(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    gate: Arc<WriteGate>,
    health: Arc<Health>,
) -> Result<(), Error> {
    let (stores, writers) = Stores::new();
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
        books: Mutex::new(Books {
            backoff: HashMap::new(),
            namespace_labels_seen: HashMap::new(),
            pool_generations_seen: HashMap::new(),
            written: HashMap::new(),
            limiter: EventLimiter::new(settings.event_window, EVENT_MEMORY),
        }),
        settings,
        state: Mutex::new(ControllerState::default()),
        stores: stores.clone(),
        recorder,
        metrics,
        gate,
        queue,
        pool_pass: Notify::new(),
    });
    let mut tasks = watches::start(&ctx, writers);
    stores.wait_until_listed().await?;
    let services = stores.services;

    let started = Instant::now();
    let summary = {
        let mut state = ctx.lock()?;
        let pool_objects = state::convert_pools(&ctx.stores.pools.state());
        state.sync_pools(&pool_objects);
        state.sync_nodes(&ctx.stores.nodes.state());
        state.finalized_pools = pool_objects
            .iter()
            .filter(|(_, (pool, _))| pool_plan::has_finalizer(pool))
            .map(|(name, _)| name.clone())
            .collect();
        state.restore(
            &ctx.stores.services.state(),
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
        () = peer_status::watch::run(
            ctx.client.clone(),
            ctx.settings.namespace.clone(),
            ctx.stores.nodes.clone(),
            Arc::clone(&ctx.gate),
            Arc::clone(&ctx.metrics),
        ) => Err(Error::LoopEnded("BGPPeer status")),
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
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let labels = ctx.namespace_labels(&namespace);
    // Converted once; the planners read this view.
    let Some(view) = ServiceView::new(service, &labels, &ctx.settings.filter) else {
        return Ok(Action::await_change());
    };
    let last_written = ctx
        .books
        .lock()
        .ok()
        .and_then(|books| books.written.get(&view.key).copied());
    if is_stale(service.metadata.resource_version.as_deref(), last_written) {
        return Ok(Action::await_change());
    }
    let (plan, reports, finalizers_to_add) = {
        let mut state = ctx.lock()?;
        let pools = state::convert_pools(&ctx.stores.pools.state());
        let reports = state.sync_pools(&pools);
        let plan = service_plan::plan(&mut state.allocator, &view, Timestamp::now());
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
pub(super) async fn pool_loop(ctx: Arc<Context>) -> Result<(), Error> {
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
