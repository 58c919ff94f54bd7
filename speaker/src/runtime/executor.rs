//! Executors: the parts that make the kernel and the network match a [`NodePlan`].
//!
//! Owns the executor pattern and the fixed order the runtime applies them in — BGP first
//! (peers and routes), then layer 2, then forwarding, as DESIGN.md's declarative manager
//! prescribes. Shutdown keeps the BGP-then-layer-2 order but removes forwarding last: first
//! stop attracting traffic (withdraw routes, stop answering ARP/NDP), then remove the rules
//! that deliver it, so nothing is blackholed in between. Each executor is handed the whole
//! plan every time and must be idempotent: it diffs against what it last did (or reads the
//! kernel back on a resync) and changes only the difference.
//!
//! One pattern for every executor: it is one owned task ([`ExecutorHandle`], stopped when the
//! handle is dropped) that owns all of its state and is fed [`Command`]s — apply (or resync)
//! a plan, shut down. The runtime talks to executors only through those
//! messages; nothing is shared behind a mutex. An executor without events of its own (the
//! forwarding executor, [`crate::forwarding::ForwardingExecutor`]) implements [`Executor`]
//! and runs in [`ExecutorHandle::spawn`]'s loop; the BGP and layer-2 executors
//! ([`crate::bgp::executor`], [`crate::l2::executor`]) run their own loop, which also
//! selects on their timers and sessions, and hand each command to [`serve`]. Their writes
//! to the API go through the one queued writer, [`crate::api_writer`].
//!
//! I/O happens only inside the executors' tasks.

use std::ops::ControlFlow;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::planner::NodePlan;
use crate::task::TaskHandle;

/// A failure of one executor; the others still run, and the runtime retries with back-off.
#[derive(Debug, thiserror::Error)]
#[error("{executor}: {source}")]
pub struct ExecutorError {
    pub executor: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ExecutorError {
    pub fn new(
        executor: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            executor,
            source: source.into(),
        }
    }
}

/// What one apply did, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// A short label for metrics, e.g. `unchanged`, `updated`, `rebuilt`.
    pub outcome: &'static str,
    /// Whether anything in the kernel or on the network changed.
    pub changed: bool,
    /// Human-readable detail for the log line.
    pub detail: String,
    /// Drift found (and repaired) on a resync, one line each.
    pub repaired_drift: Vec<String>,
}

impl ApplyReport {
    pub fn unchanged() -> Self {
        Self {
            outcome: "unchanged",
            changed: false,
            detail: String::new(),
            repaired_drift: Vec::new(),
        }
    }
}

/// One part of the speaker that acts on the plan: the state an executor's task owns, and
/// what it does with each [`Command`] ([`serve`]).
///
/// `apply` is called after every change with the whole plan, and with `full` (a resync) at
/// start and every resync interval, when it should also check the real state for drift (someone deleted a
/// route, an nft table) and repair it; `shutdown` once, on SIGTERM, to remove what the
/// executor set up (or hand over cleanly). Futures are boxed so that the trait is object
/// safe ([`serve`] takes `&mut dyn Executor`).
pub trait Executor: Send {
    /// Name for logs and metric labels (`bgp`, `l2`, `forwarding`).
    fn name(&self) -> &'static str;

    /// Applies the plan; with `full`, a resync (see above).
    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
        full: bool,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>>;

    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>>;
}

/// A message from the runtime to an executor's task.
pub enum Command {
    /// Apply the plan (`full`: a resync, reading the real state back first) and reply with
    /// the report.
    Apply {
        plan: Arc<NodePlan>,
        full: bool,
        reply: oneshot::Sender<Result<ApplyReport, ExecutorError>>,
    },
    /// Shut down (see [`Executor::shutdown`]), reply, and end the task.
    Shutdown {
        reply: oneshot::Sender<Result<(), ExecutorError>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Apply { full: false, .. } => "Apply",
            Command::Apply { full: true, .. } => "Resync",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

/// Performs one command on an executor's state, inside its task; [`ControlFlow::Break`]
/// after a shutdown (the task ends).
pub async fn serve(command: Command, executor: &mut dyn Executor) -> ControlFlow<()> {
    match command {
        Command::Apply { plan, full, reply } => {
            let result = executor.apply(&plan, full).await;
            // The runtime may have stopped waiting (shutdown); the work is done either way.
            let _ = reply.send(result);
            ControlFlow::Continue(())
        }
        Command::Shutdown { reply } => {
            let _ = reply.send(executor.shutdown().await);
            ControlFlow::Break(())
        }
    }
}

/// [`serve`] for what an executor's task received: a closed inbox (the handle is gone) ends
/// the task too.
pub async fn serve_received(
    command: Option<Command>,
    executor: &mut dyn Executor,
) -> ControlFlow<()> {
    match command {
        Some(command) => serve(command, executor).await,
        None => ControlFlow::Break(()),
    }
}

/// The runtime's side of one executor: its name, its command sender and its task (stopped
/// when this is dropped).
#[derive(Debug)]
pub struct ExecutorHandle {
    name: &'static str,
    commands: mpsc::UnboundedSender<Command>,
    _task: TaskHandle,
}

impl ExecutorHandle {
    /// The handle of an executor whose task (already spawned) reads `commands`.
    pub fn new(
        name: &'static str,
        commands: mpsc::UnboundedSender<Command>,
        task: TaskHandle,
    ) -> Self {
        Self {
            name,
            commands,
            _task: task,
        }
    }

    /// Runs `executor` as an owned task that does nothing but serve commands (needs a tokio
    /// runtime).
    pub fn spawn(mut executor: impl Executor + 'static) -> Self {
        let name = executor.name();
        let (commands, mut inbox) = mpsc::unbounded_channel();
        let task = TaskHandle::spawn(async move {
            while serve_received(inbox.recv().await, &mut executor)
                .await
                .is_continue()
            {}
        });
        Self::new(name, commands, task)
    }

    /// Name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn stopped(&self) -> ExecutorError {
        ExecutorError::new(self.name, "the executor's task has stopped")
    }

    /// Applies (or, with `full`, resyncs) the plan and waits for the report.
    pub async fn apply(
        &self,
        plan: &Arc<NodePlan>,
        full: bool,
    ) -> Result<ApplyReport, ExecutorError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Apply {
            plan: Arc::clone(plan),
            full,
            reply,
        };
        if self.commands.send(command).is_err() {
            return Err(self.stopped());
        }
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Shuts the executor down and waits for it.
    pub async fn shutdown(&self) -> Result<(), ExecutorError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Shutdown { reply }).is_err() {
            return Err(self.stopped());
        }
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }
}

/// The executors of this speaker, in their fixed order.
#[derive(Debug, Default)]
pub struct Executors {
    /// BGP sessions and routes (issue 6); present with `--bgp on`.
    pub bgp: Option<ExecutorHandle>,
    /// Layer-2 announcements (issue 5); present with `--layer2 on`.
    pub l2: Option<ExecutorHandle>,
    /// nftables forwarding; present with `--forwarding on`.
    pub forwarding: Option<ExecutorHandle>,
}

/// The result of one executor within a pass.
#[derive(Debug)]
pub struct ExecutorResult {
    pub executor: &'static str,
    pub result: Result<ApplyReport, ExecutorError>,
}

impl Executors {
    /// The executors present, in apply order: BGP, L2, forwarding.
    pub fn in_apply_order(&self) -> impl Iterator<Item = &ExecutorHandle> {
        [&self.bgp, &self.l2, &self.forwarding]
            .into_iter()
            .flatten()
    }

    /// Names of the executors present, in apply order.
    pub fn names(&self) -> Vec<&'static str> {
        self.in_apply_order().map(ExecutorHandle::name).collect()
    }

    /// Applies the plan with every executor in order. A failing executor does not stop the
    /// ones after it: they act on their own parts of the plan.
    pub async fn apply(&self, plan: &NodePlan, full_resync: bool) -> Vec<ExecutorResult> {
        let plan = Arc::new(plan.clone());
        let mut results = Vec::new();
        for executor in self.in_apply_order() {
            results.push(ExecutorResult {
                executor: executor.name(),
                result: executor.apply(&plan, full_resync).await,
            });
        }
        results
    }

    /// Shuts the announcing executors down, BGP then layer 2: routes are withdrawn and
    /// addresses no longer answered for, so traffic moves to other nodes. Forwarding stays,
    /// so packets still on their way here are delivered meanwhile.
    pub async fn shutdown_announcers(&self) -> Vec<Result<(), ExecutorError>> {
        let mut results = Vec::new();
        for executor in [&self.bgp, &self.l2].into_iter().flatten() {
            results.push(executor.shutdown().await);
        }
        results
    }

    /// Shuts forwarding down (removes the nftables table); last, once nothing attracts
    /// traffic to this node any more.
    pub async fn shutdown_forwarding(&self) -> Vec<Result<(), ExecutorError>> {
        let mut results = Vec::new();
        if let Some(executor) = &self.forwarding {
            results.push(executor.shutdown().await);
        }
        results
    }

    /// Shuts every executor down: [`Executors::shutdown_announcers`], then
    /// [`Executors::shutdown_forwarding`].
    pub async fn shutdown(&self) -> Vec<Result<(), ExecutorError>> {
        let mut results = self.shutdown_announcers().await;
        results.extend(self.shutdown_forwarding().await);
        results
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records calls into a shared journal so the order across executors is visible.
    struct Recording {
        name: &'static str,
        journal: Arc<Mutex<Vec<String>>>,
        fail: bool,
    }

    impl Recording {
        fn spawned(
            name: &'static str,
            journal: &Arc<Mutex<Vec<String>>>,
            fail: bool,
        ) -> Option<ExecutorHandle> {
            Some(ExecutorHandle::spawn(Recording {
                name,
                journal: Arc::clone(journal),
                fail,
            }))
        }

        fn note(&self, what: &str) {
            if let Ok(mut journal) = self.journal.lock() {
                journal.push(format!("{what} {}", self.name));
            }
        }
    }

    impl Executor for Recording {
        fn name(&self) -> &'static str {
            self.name
        }

        fn apply<'a>(
            &'a mut self,
            _plan: &'a NodePlan,
            _full: bool,
        ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
            Box::pin(async move {
                self.note("apply");
                if self.fail {
                    return Err(ExecutorError::new(self.name, "refused"));
                }
                Ok(ApplyReport::unchanged())
            })
        }

        fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>> {
            Box::pin(async move {
                self.note("shutdown");
                Ok(())
            })
        }
    }

    fn journal_of(journal: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        journal.lock().map(|j| j.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn executors_apply_bgp_then_l2_then_forwarding_and_shut_announcers_down_before_forwarding()
     {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let executors = Executors {
            forwarding: Recording::spawned("forwarding", &journal, false),
            l2: Recording::spawned("l2", &journal, false),
            bgp: Recording::spawned("bgp", &journal, false),
        };
        executors.apply(&NodePlan::default(), false).await;
        executors.apply(&NodePlan::default(), true).await;
        executors.shutdown().await;
        assert_eq!(
            journal_of(&journal),
            [
                "apply bgp",
                "apply l2",
                "apply forwarding",
                "apply bgp",
                "apply l2",
                "apply forwarding",
                "shutdown bgp",
                "shutdown l2",
                "shutdown forwarding",
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_executor_does_not_stop_the_ones_after_it() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let executors = Executors {
            bgp: Recording::spawned("bgp", &journal, true),
            l2: None,
            forwarding: Recording::spawned("forwarding", &journal, false),
        };
        let results = executors.apply(&NodePlan::default(), false).await;
        assert_eq!(journal_of(&journal), ["apply bgp", "apply forwarding"]);
        assert_eq!(results.len(), 2);
        assert!(results[0].result.is_err());
        assert!(results[1].result.is_ok());
        assert_eq!(executors.names(), ["bgp", "forwarding"]);
    }

    #[tokio::test]
    async fn absent_executors_are_skipped() {
        let executors = Executors::default();
        assert!(executors.apply(&NodePlan::default(), true).await.is_empty());
        assert!(executors.shutdown().await.is_empty());
    }
}
