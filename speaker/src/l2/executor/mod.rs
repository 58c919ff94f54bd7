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
//! [`L2Executor`] starts one owned task (the runtime's executor pattern,
//! [`crate::runtime::executor`]) that owns the [`Engine`] and is fed the runtime's commands.
//! Between commands the same task re-runs the pass when the records change, when an
//! announcer reports an address announced (so its record gets written), when the start-up
//! hold ends, and once a second (record retries, counters, conflict expiry). Writes go
//! through the speaker's one queued writer ([`crate::api_writer`]). Failover is driven by the plan: when
//! membership reports the owner dead, the runtime re-plans within its debounce (≤ 100 ms)
//! and the next owner announces at once.

pub mod address;
pub mod conflicts;
pub mod decide;
pub mod engine;
pub mod kube_edge;
pub mod metrics;
pub mod record;

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

pub use engine::L2ExecutorConfig;
use engine::{Engine, PassSummary};
use kube_edge::KubeEdge;
use metrics::L2Metrics;
use record::Records;

use crate::api_writer::ApiAccess;
use crate::l2::io::{InterfaceEvent, discover_interfaces};
use crate::planner::NodePlan;
use crate::runtime::executor::{
    ApplyReport, Command, Executor, ExecutorError, ExecutorHandle, serve_received,
};
use crate::task::TaskHandle;

/// How often the task samples counters, retries record writes and expires conflicts.
const TICK: Duration = Duration::from_secs(1);

/// Layer-2 announcements (issue 5), as one of the runtime's executors.
#[derive(Debug)]
pub struct L2Executor;

impl L2Executor {
    pub const NAME: &'static str = "l2";

    /// Starts the executor's task (needs a tokio runtime) and returns its handle. With API
    /// access it reads and writes the current-announcer records and publishes Events;
    /// without it (tests) it announces only.
    pub fn start(
        config: L2ExecutorConfig,
        api: Option<ApiAccess>,
        metrics: L2Metrics,
    ) -> ExecutorHandle {
        let (records_tx, records_rx) = watch::channel(None);
        let kube = api.map(|api| KubeEdge::start(api, &config.node, records_tx, metrics.clone()));
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
        let engine = Engine::new(config, Instant::now(), events_tx, kube, metrics);
        let (commands, inbox) = mpsc::unbounded_channel();
        let task = TaskHandle::spawn(run(State { engine }, inbox, records_rx, async_events_rx));
        ExecutorHandle::new(Self::NAME, commands, task)
    }
}

/// The executor's state, owned by its task.
struct State {
    engine: Engine,
}

impl State {
    async fn pass(&mut self, plan: &NodePlan, full: bool) -> ApplyReport {
        let interfaces = match discover_interfaces().await {
            Ok(interfaces) => Some(interfaces),
            Err(error) => {
                tracing::warn!(%error, "reading interfaces failed; using the last list");
                None
            }
        };
        let engine = &mut self.engine;
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

impl Executor for State {
    fn name(&self) -> &'static str {
        L2Executor::NAME
    }

    /// A resync also restarts announcers whose thread stopped and re-sends records not in
    /// place.
    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
        full: bool,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move { Ok(self.pass(plan, full).await) })
    }

    /// Stops announcing at once (the task ends after this). Records are left as they are:
    /// the node that takes over (membership tells the others this node left) overwrites
    /// them.
    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.engine.stop();
            Ok(())
        })
    }
}

/// The executor's task: serves the runtime's commands and re-runs the pass on records,
/// announcer events, the end of the start-up hold and every [`TICK`].
async fn run(
    mut state: State,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut records: watch::Receiver<Option<Records>>,
    mut events: mpsc::UnboundedReceiver<InterfaceEvent>,
) {
    let hold_until = state.engine.hold_until();
    let mut hold_over = false;
    let mut records_open = true;
    let mut events_open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => {
                if serve_received(command, &mut state).await.is_break() {
                    return;
                }
            }
            changed = records.changed(), if records_open => {
                if changed.is_err() {
                    records_open = false;
                    continue;
                }
                let current = records.borrow_and_update().clone();
                if let Some(current) = current {
                    state.engine.set_records(current);
                    state.engine.pass(Instant::now());
                }
            }
            event = events.recv(), if events_open => {
                let Some(event) = event else {
                    events_open = false;
                    continue;
                };
                let mut again = state.engine.handle_event(Instant::now(), &event);
                // Drain what else is queued before passing once for all of it.
                while let Ok(event) = events.try_recv() {
                    again |= state.engine.handle_event(Instant::now(), &event);
                }
                if again {
                    state.engine.pass(Instant::now());
                }
            }
            () = tokio::time::sleep_until(hold_until.into()), if !hold_over => {
                hold_over = true;
                state.engine.pass(Instant::now());
            }
            _ = tick.tick() => {
                let now = Instant::now();
                state.engine.sample_counters();
                state.engine.expire_conflicts(now);
                state.engine.pass(now);
            }
        }
    }
}
