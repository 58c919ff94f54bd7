//! Executors: the parts that make the kernel and the network match a [`NodePlan`].
//!
//! Owns the [`Executor`] interface and the fixed order the runtime applies them in — BGP
//! first (peers and routes), then layer 2, then forwarding, as DESIGN.md's declarative
//! manager prescribes. Shutdown keeps the BGP-then-layer-2 order but removes forwarding
//! last: first stop attracting traffic (withdraw routes, stop answering ARP/NDP), then
//! remove the rules that deliver it, so nothing is blackholed in between. Each executor is handed the whole
//! plan every time and must be idempotent: it diffs against what it last did (or reads the
//! kernel back on a resync) and changes only the difference.
//!
//! The forwarding executor is here ([`ForwardingExecutor`], wrapping
//! [`crate::forwarding::Forwarder`]); the L2 executor ([`crate::l2::executor::L2Executor`])
//! and the BGP executor ([`crate::bgp::executor::BgpExecutor`]) plug into [`Executors::l2`]
//! and [`Executors::bgp`] by implementing [`Executor`]; an empty slot's part of the plan is
//! simply not acted on.
//!
//! Besides the plan, every pass hands each executor what the watches show
//! ([`Executor::observe`]: the snapshot and the live speakers), for executors that also
//! tidy up after other nodes — the BGP executor removes BGPPeer status entries of deleted
//! Nodes.
//!
//! I/O happens only inside the executors' futures.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;

use super::watches::Snapshot;
use crate::forwarding::conntrack;
use crate::forwarding::metrics::{ForwardingMetrics, ResultLabel as FlushResult};
use crate::forwarding::stale::stale_flows;
use crate::forwarding::{ApplyOutcome, DEFAULT_MASQUERADE_MARK, Forwarder, NftCommand, Ruleset};
use crate::planner::{ForwardKey, ForwardTarget, NodePlan};

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

/// One part of the speaker that acts on the plan.
///
/// `apply` is called after every change with the whole plan; `resync` at start and every
/// resync interval, and should also check the real state for drift (someone deleted a
/// route, an nft table) and repair it; `shutdown` once, on SIGTERM, to remove what the
/// executor set up (or hand over cleanly). Futures are boxed so executors of different
/// types can sit in one ordered list.
pub trait Executor: Send {
    /// Name for logs and metric labels (`bgp`, `l2`, `forwarding`).
    fn name(&self) -> &'static str;

    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>>;

    /// Full resync; by default the same as [`Executor::apply`].
    fn resync<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        self.apply(plan)
    }

    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>>;

    /// What the watches show, on every pass before the plan is applied: the snapshot the
    /// plan is computed from (complete lists: passes start only after the first lists
    /// completed) and the live speakers (this node included). For executors that act on
    /// the cluster beyond this node's plan; must return at once (no I/O: hand the data to a
    /// task of the executor's own). By default ignored.
    fn observe(&mut self, snapshot: &Snapshot, live_speakers: &BTreeSet<String>) {
        let _ = (snapshot, live_speakers);
    }
}

/// The executors of this speaker, in their fixed order.
#[derive(Default)]
pub struct Executors {
    /// BGP sessions and routes (issue 6); present with `--bgp on`.
    pub bgp: Option<Box<dyn Executor>>,
    /// Layer-2 announcements (issue 5); empty until the L2 executor is wired.
    pub l2: Option<Box<dyn Executor>>,
    /// nftables forwarding; present with `--forwarding on`.
    pub forwarding: Option<Box<dyn Executor>>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// The result of one executor within a pass.
#[derive(Debug)]
pub struct ExecutorResult {
    pub executor: &'static str,
    pub result: Result<ApplyReport, ExecutorError>,
}

impl Executors {
    /// The executors present, in apply order: BGP, L2, forwarding.
    pub fn in_apply_order(&mut self) -> impl Iterator<Item = &mut Box<dyn Executor>> {
        [&mut self.bgp, &mut self.l2, &mut self.forwarding]
            .into_iter()
            .flatten()
    }

    /// Names of the executors present, in apply order.
    pub fn names(&self) -> Vec<&'static str> {
        [&self.bgp, &self.l2, &self.forwarding]
            .into_iter()
            .flatten()
            .map(|e| e.name())
            .collect()
    }

    /// Hands the snapshot and the live speakers to every executor ([`Executor::observe`]).
    pub fn observe(&mut self, snapshot: &Snapshot, live_speakers: &BTreeSet<String>) {
        for executor in self.in_apply_order() {
            executor.observe(snapshot, live_speakers);
        }
    }

    /// Applies the plan with every executor in order. A failing executor does not stop the
    /// ones after it: they act on their own parts of the plan.
    pub async fn apply(&mut self, plan: &NodePlan, full_resync: bool) -> Vec<ExecutorResult> {
        let mut results = Vec::new();
        for executor in self.in_apply_order() {
            let result = if full_resync {
                executor.resync(plan).await
            } else {
                executor.apply(plan).await
            };
            results.push(ExecutorResult {
                executor: executor.name(),
                result,
            });
        }
        results
    }

    /// Shuts the announcing executors down, BGP then layer 2: routes are withdrawn and
    /// addresses no longer answered for, so traffic moves to other nodes. Forwarding stays,
    /// so packets still on their way here are delivered meanwhile.
    pub async fn shutdown_announcers(&mut self) -> Vec<Result<(), ExecutorError>> {
        let mut results = Vec::new();
        for slot in [&mut self.bgp, &mut self.l2] {
            if let Some(executor) = slot.as_mut() {
                results.push(executor.shutdown().await);
            }
        }
        results
    }

    /// Shuts forwarding down (removes the nftables table); last, once nothing attracts
    /// traffic to this node any more.
    pub async fn shutdown_forwarding(&mut self) -> Vec<Result<(), ExecutorError>> {
        let mut results = Vec::new();
        if let Some(executor) = self.forwarding.as_mut() {
            results.push(executor.shutdown().await);
        }
        results
    }

    /// Shuts every executor down: [`Executors::shutdown_announcers`], then
    /// [`Executors::shutdown_forwarding`].
    pub async fn shutdown(&mut self) -> Vec<Result<(), ExecutorError>> {
        let mut results = self.shutdown_announcers().await;
        results.extend(self.shutdown_forwarding().await);
        results
    }
}

/// Forwarding: keeps `table inet herald` equal to the plan's forwarding decisions, and
/// flushes the tracked connections of backends that left (see `forwarding::stale`).
#[derive(Debug)]
pub struct ForwardingExecutor {
    forwarder: Forwarder,
    masquerade_mark: u32,
    /// Flush stale tracked connections after each change (`None`: off).
    conntrack: Option<ForwardingMetrics>,
    /// The forwarding decisions of the last successful apply.
    last_forwarding: Option<BTreeMap<ForwardKey, ForwardTarget>>,
}

impl ForwardingExecutor {
    pub const NAME: &'static str = "forwarding";

    pub fn new(nft: NftCommand) -> Self {
        Self {
            forwarder: Forwarder::new(nft),
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
            conntrack: None,
            last_forwarding: None,
        }
    }

    /// Turns the connection-tracking clean-up on, counting into `metrics`.
    pub fn with_conntrack_cleanup(mut self, metrics: ForwardingMetrics) -> Self {
        self.conntrack = Some(metrics);
        self
    }

    /// After a successful apply: flushes the flows of backends that left since the last
    /// one. A failed flush is logged and counted, never fails the apply (the table is right;
    /// only old flows linger until they time out).
    async fn flush_stale(&mut self, plan: &NodePlan) -> Option<String> {
        // Only the clean-up needs the previous decisions: without it, nothing is copied.
        let metrics = self.conntrack.clone()?;
        let previous = self.last_forwarding.replace(plan.forwarding.clone())?;
        let stale = stale_flows(&previous, &plan.forwarding, &plan.endpoint_addresses);
        if stale.is_empty() {
            return None;
        }
        let flows = stale.len();
        let outcome = tokio::task::spawn_blocking(move || conntrack::flush(&stale)).await;
        match outcome {
            Ok(Ok(report)) => {
                metrics
                    .conntrack_flushes
                    .get_or_create(&FlushResult { result: "ok" })
                    .inc();
                metrics
                    .conntrack_entries_deleted
                    .inc_by(u64::try_from(report.deleted).unwrap_or(u64::MAX));
                tracing::info!(
                    stale_flows = flows,
                    scanned = report.scanned,
                    deleted = report.deleted,
                    unreadable = report.unreadable,
                    truncated = report.truncated,
                    "flushed tracked connections of backends that left"
                );
                Some(format!(
                    "; conntrack: {} of {} deleted",
                    report.deleted, report.scanned
                ))
            }
            Ok(Err(error)) => {
                metrics
                    .conntrack_flushes
                    .get_or_create(&FlushResult { result: "error" })
                    .inc();
                tracing::warn!(%error, stale_flows = flows, "could not flush stale tracked connections");
                None
            }
            Err(error) => {
                metrics
                    .conntrack_flushes
                    .get_or_create(&FlushResult { result: "error" })
                    .inc();
                tracing::warn!(%error, "the conntrack flush task failed");
                None
            }
        }
    }

    pub fn with_masquerade_mark(mut self, mark: u32) -> Self {
        self.masquerade_mark = mark;
        self
    }

    fn desired(&self, plan: &NodePlan) -> Ruleset {
        Ruleset::from_plan(&plan.forwarding, self.masquerade_mark)
    }

    async fn apply_ruleset(&mut self, desired: Ruleset) -> Result<ApplyReport, ExecutorError> {
        let outcome = self
            .forwarder
            .apply(desired)
            .await
            .map_err(|e| ExecutorError::new(Self::NAME, e))?;
        Ok(report_of(outcome))
    }
}

fn report_of(outcome: ApplyOutcome) -> ApplyReport {
    match outcome {
        ApplyOutcome::Unchanged => ApplyReport::unchanged(),
        ApplyOutcome::Updated { summary, took } => ApplyReport {
            outcome: "updated",
            changed: true,
            detail: format!("{summary:?} in {took:?}"),
            repaired_drift: Vec::new(),
        },
        ApplyOutcome::Rebuilt {
            took,
            after_update_error,
        } => ApplyReport {
            outcome: "rebuilt",
            changed: true,
            detail: match after_update_error {
                Some(error) => format!("rebuilt in {took:?} after a failed update: {error}"),
                None => format!("rebuilt in {took:?}"),
            },
            repaired_drift: Vec::new(),
        },
    }
}

impl Executor for ForwardingExecutor {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move {
            let desired = self.desired(plan);
            let mut report = self.apply_ruleset(desired).await?;
            if let Some(note) = self.flush_stale(plan).await {
                report.detail.push_str(&note);
            }
            Ok(report)
        })
    }

    /// Reads the table back and rebuilds it if it drifted, then applies the plan.
    fn resync<'a>(
        &'a mut self,
        plan: &'a NodePlan,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move {
            let drift = self
                .forwarder
                .repair()
                .await
                .map_err(|e| ExecutorError::new(Self::NAME, e))?;
            let desired = self.desired(plan);
            let mut report = self.apply_ruleset(desired).await?;
            if let Some(note) = self.flush_stale(plan).await {
                report.detail.push_str(&note);
            }
            if !drift.is_empty() {
                report.changed = true;
                if report.outcome == "unchanged" {
                    report.outcome = "repaired";
                }
            }
            report.repaired_drift = drift;
            Ok(report)
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.forwarder
                .remove()
                .await
                .map_err(|e| ExecutorError::new(Self::NAME, e))
        })
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
        fn boxed(
            name: &'static str,
            journal: &Arc<Mutex<Vec<String>>>,
            fail: bool,
        ) -> Option<Box<dyn Executor>> {
            Some(Box::new(Recording {
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

        fn observe(&mut self, snapshot: &Snapshot, live_speakers: &BTreeSet<String>) {
            self.note(&format!(
                "observe {} nodes, {} live",
                snapshot.nodes.len(),
                live_speakers.len()
            ));
        }
    }

    fn journal_of(journal: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        journal.lock().map(|j| j.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn executors_apply_bgp_then_l2_then_forwarding_and_shut_announcers_down_before_forwarding()
     {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let mut executors = Executors {
            forwarding: Recording::boxed("forwarding", &journal, false),
            l2: Recording::boxed("l2", &journal, false),
            bgp: Recording::boxed("bgp", &journal, false),
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

    #[test]
    fn every_executor_observes_the_snapshot_and_the_live_speakers() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let mut executors = Executors {
            bgp: Recording::boxed("bgp", &journal, false),
            l2: None,
            forwarding: Recording::boxed("forwarding", &journal, false),
        };
        let snapshot = Snapshot {
            nodes: vec![Default::default(); 3],
            ..Default::default()
        };
        executors.observe(&snapshot, &["n1".to_string()].into());
        assert_eq!(
            journal_of(&journal),
            [
                "observe 3 nodes, 1 live bgp",
                "observe 3 nodes, 1 live forwarding"
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_executor_does_not_stop_the_ones_after_it() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let mut executors = Executors {
            bgp: Recording::boxed("bgp", &journal, true),
            l2: None,
            forwarding: Recording::boxed("forwarding", &journal, false),
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
        let mut executors = Executors::default();
        assert!(executors.apply(&NodePlan::default(), true).await.is_empty());
        assert!(executors.shutdown().await.is_empty());
    }
}
