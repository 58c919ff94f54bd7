//! The layer-2 executor: makes this node announce exactly the addresses it owns.
//!
//! - [`record`]: the shared current-announcer record on the Service (pure).
//! - [`decide`]: one pass from plan, records and interfaces to announcer commands and record
//!   writes (pure).
//! - [`conflicts`]: when to publish Events and conditions about conflicts (pure).
//! - [`engine`]: the state between passes and the performing of a pass (announcer threads,
//!   queued API requests).
//! - [`kube_edge`]: the Service annotation watch and the API writer (I/O).
//! - [`metrics`]: the `herald_speaker_l2_*` metrics.
//!
//! [`L2Executor`] is the [`Executor`] the runtime calls with every plan. Besides those calls
//! a background task re-runs the pass when the records change, when an announcer reports an
//! address announced (so its record gets written), when the start-up hold ends, and once a
//! second (record retries, counters, conflict expiry). Failover is driven by the plan: when
//! membership reports the owner dead, the runtime re-plans within its debounce (≤ 100 ms)
//! and the next owner announces at once.

pub mod address;
pub mod conflicts;
pub mod decide;
pub mod engine;
pub mod kube_edge;
pub mod metrics;
pub mod record;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::Client;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use engine::L2ExecutorConfig;
use engine::{Engine, PassSummary};
use kube_edge::KubeEdge;
use metrics::L2Metrics;
use record::Records;

use crate::l2::io::{InterfaceEvent, discover_interfaces};
use crate::planner::NodePlan;
use crate::runtime::executor::{ApplyReport, Executor, ExecutorError};

/// How often the background task samples counters, retries record writes and expires
/// conflicts.
const TICK: Duration = Duration::from_secs(1);

/// Layer-2 announcements (issue 5), as one of the runtime's executors.
pub struct L2Executor {
    engine: Arc<Mutex<Engine>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for L2Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Executor").finish_non_exhaustive()
    }
}

impl Drop for L2Executor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

impl L2Executor {
    pub const NAME: &'static str = "l2";

    /// Starts the executor (needs a tokio runtime). With a client it reads and writes the
    /// current-announcer records and publishes Events; without one (tests) it announces
    /// only.
    pub fn start(config: L2ExecutorConfig, client: Option<Client>, metrics: L2Metrics) -> Self {
        let (records_tx, records_rx) = watch::channel(None);
        let kube =
            client.map(|client| KubeEdge::start(client, &config.node, records_tx, metrics.clone()));
        let (events_tx, events_rx) = std::sync::mpsc::channel::<InterfaceEvent>();
        let (async_events_tx, async_events_rx) = mpsc::unbounded_channel();
        // Announcer threads report on a std channel; this thread forwards to the task. It
        // ends when every sender (the engine's and the announcers') is gone.
        let bridge = std::thread::Builder::new()
            .name("herald-l2-events".to_owned())
            .spawn(move || {
                while let Ok(event) = events_rx.recv() {
                    if async_events_tx.send(event).is_err() {
                        break;
                    }
                }
            });
        if let Err(error) = bridge {
            tracing::error!(%error, "cannot start the layer-2 event thread; records are written on the next tick instead");
        }
        let engine = Arc::new(Mutex::new(Engine::new(
            config,
            Instant::now(),
            events_tx,
            kube,
            metrics,
        )));
        let task = tokio::spawn(background(Arc::clone(&engine), records_rx, async_events_rx));
        L2Executor { engine, task }
    }

    async fn pass(&mut self, plan: &NodePlan, full: bool) -> ApplyReport {
        let interfaces = match discover_interfaces().await {
            Ok(interfaces) => Some(interfaces),
            Err(error) => {
                tracing::warn!(%error, "reading interfaces failed; using the last list");
                None
            }
        };
        let mut engine = lock(&self.engine);
        let repaired = if full { engine.repair() } else { Vec::new() };
        if let Some(interfaces) = interfaces {
            engine.set_interfaces(interfaces);
        }
        engine.set_plan(&plan.l2);
        let summary = engine.pass(Instant::now());
        report(summary, repaired)
    }
}

fn report(summary: PassSummary, repaired: Vec<String>) -> ApplyReport {
    ApplyReport {
        outcome: if !repaired.is_empty() {
            "repaired"
        } else if summary.changed {
            "updated"
        } else {
            "unchanged"
        },
        changed: summary.changed || !repaired.is_empty(),
        detail: summary.lines.join("; "),
        repaired_drift: repaired,
    }
}

impl Executor for L2Executor {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move { Ok(self.pass(plan, false).await) })
    }

    /// Also restarts announcers whose thread stopped and re-sends records not in place.
    fn resync<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move { Ok(self.pass(plan, true).await) })
    }

    /// Stops announcing at once. Records are left as they are: the node that takes over
    /// (membership tells the others this node left) overwrites them.
    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.task.abort();
            lock(&self.engine).stop();
            Ok(())
        })
    }
}

async fn background(
    engine: Arc<Mutex<Engine>>,
    mut records: watch::Receiver<Option<Records>>,
    mut events: mpsc::UnboundedReceiver<InterfaceEvent>,
) {
    let hold_until = lock(&engine).hold_until();
    let mut hold_over = false;
    let mut records_open = true;
    let mut events_open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = records.changed(), if records_open => {
                if changed.is_err() {
                    records_open = false;
                    continue;
                }
                let current = records.borrow_and_update().clone();
                if let Some(current) = current {
                    let mut engine = lock(&engine);
                    engine.set_records(current);
                    engine.pass(Instant::now());
                }
            }
            event = events.recv(), if events_open => {
                let Some(event) = event else {
                    events_open = false;
                    continue;
                };
                let mut engine = lock(&engine);
                let mut again = engine.handle_event(Instant::now(), &event);
                // Drain what else is queued before passing once for all of it.
                while let Ok(event) = events.try_recv() {
                    again |= engine.handle_event(Instant::now(), &event);
                }
                if again {
                    engine.pass(Instant::now());
                }
            }
            () = tokio::time::sleep_until(hold_until.into()), if !hold_over => {
                hold_over = true;
                lock(&engine).pass(Instant::now());
            }
            _ = tick.tick() => {
                let mut engine = lock(&engine);
                let now = Instant::now();
                engine.sample_counters();
                engine.expire_conflicts(now);
                engine.pass(now);
            }
        }
    }
}
