//! The forwarding executor: the one place that runs `nft`.
//!
//! Owns the I/O edge of forwarding: feeding scripts to `nft -f -` (one atomic transaction
//! each), validating them with `nft -c -f -`, and reading the table back with
//! `nft -j list table inet herald`. [`Forwarder`] remembers what it last applied, turns each
//! new desired [`Ruleset`] into the minimal update (falling back to a full rebuild when an
//! update fails), and repairs drift found on read-back. Every `nft` run is bounded by a
//! timeout; the child is killed if it overruns.
//!
//! [`ForwardingExecutor`] is the runtime's [`Executor`] around it: the plan's forwarding
//! decisions become the desired ruleset, and the tracked connections of backends that left
//! are flushed after each change ([`super::stale`], [`super::conntrack`]). The runtime runs
//! it as an owned task ([`ExecutorHandle::spawn`](crate::runtime::executor::ExecutorHandle::spawn)).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::conntrack;
use super::metrics::{ForwardingMetrics, ResultLabel as FlushResult};
use super::observe::{ObserveError, drift, expected_shape, parse_table_json};
use super::render::{UpdateSummary, render_full, render_teardown, render_update};
use super::ruleset::{DEFAULT_MASQUERADE_MARK, Ruleset, TABLE_FAMILY, TABLE_NAME};
use super::stale::stale_flows;
use crate::planner::{ForwardKey, ForwardTarget, NodePlan};
use crate::runtime::executor::{ApplyReport, Executor, ExecutorError};

/// Longest any one `nft` run may take (a 50k-Service rebuild takes a few seconds).
pub const DEFAULT_NFT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why running `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("nft did not finish within {0:?}")]
    Timeout(Duration),
    #[error("could not read nft output: {0}")]
    Observe(#[from] ObserveError),
}

/// How to invoke `nft`: the program and any arguments before nft's own (for example
/// `ip netns exec NAME nft` to act inside a network namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftCommand {
    pub program: String,
    pub prefix_args: Vec<String>,
    pub timeout: Duration,
}

impl Default for NftCommand {
    fn default() -> Self {
        Self {
            program: "nft".to_string(),
            prefix_args: Vec::new(),
            timeout: DEFAULT_NFT_TIMEOUT,
        }
    }
}

impl NftCommand {
    /// `nft` run inside the named network namespace through `ip netns exec`.
    pub fn in_netns(namespace: &str) -> Self {
        Self {
            program: "ip".to_string(),
            prefix_args: ["netns", "exec", namespace, "nft"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            timeout: DEFAULT_NFT_TIMEOUT,
        }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.prefix_args)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| NftError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        // Write stdin while output is collected, so a chatty nft cannot deadlock us.
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => {
                let text = text.to_owned();
                Some(tokio::spawn(async move {
                    let result = pipe.write_all(text.as_bytes()).await;
                    drop(pipe);
                    result
                }))
            }
            _ => None,
        };
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| NftError::Timeout(self.timeout))?
            .map_err(|source| NftError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if let Some(writer) = writer {
            // A write error (nft quit early) shows up as nft's own exit status below.
            let _ = writer.await;
        }
        if !output.status.success() {
            return Err(NftError::Failed {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Applies a script as one transaction (`nft -f -`).
    pub async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).await.map(drop)
    }

    /// Checks a script without changing anything (`nft -c -f -`; needs CAP_NET_ADMIN).
    pub async fn check(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], Some(script)).await.map(drop)
    }

    /// `nft list table inet herald` as text, or `None` when the table does not exist.
    pub async fn list_table(&self) -> Result<Option<String>, NftError> {
        self.list(&["list", "table", TABLE_FAMILY, TABLE_NAME])
            .await
    }

    /// `nft -j list table inet herald`, or `None` when the table does not exist.
    pub async fn list_table_json(&self) -> Result<Option<String>, NftError> {
        self.list(&["-j", "list", "table", TABLE_FAMILY, TABLE_NAME])
            .await
    }

    async fn list(&self, args: &[&str]) -> Result<Option<String>, NftError> {
        match self.run(args, None).await {
            Ok(text) => Ok(Some(text)),
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }
}

/// What one [`Forwarder::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Desired equals applied: nothing ran.
    Unchanged,
    /// A minimal update ran.
    Updated {
        summary: UpdateSummary,
        took: Duration,
    },
    /// The whole table was rebuilt (first apply, or an update failed and was replaced).
    Rebuilt {
        took: Duration,
        after_update_error: Option<String>,
    },
}

/// Keeps `table inet herald` equal to the desired ruleset.
#[derive(Debug)]
pub struct Forwarder {
    nft: NftCommand,
    applied: Option<Ruleset>,
}

impl Forwarder {
    pub fn new(nft: NftCommand) -> Self {
        Self { nft, applied: None }
    }

    /// The ruleset the kernel holds as far as this forwarder knows.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    pub fn command(&self) -> &NftCommand {
        &self.nft
    }

    /// Makes the table equal to `desired`: a full rebuild the first time, then minimal
    /// updates. A failed update is followed at once by a full rebuild; if that fails too,
    /// the next call rebuilds again.
    pub async fn apply(&mut self, desired: Ruleset) -> Result<ApplyOutcome, NftError> {
        let started = Instant::now();
        let Some(applied) = &self.applied else {
            return self.rebuild(desired, started, None).await;
        };
        let Some((script, summary)) = render_update(applied, &desired) else {
            return Ok(ApplyOutcome::Unchanged);
        };
        match self.nft.apply(&script).await {
            Ok(()) => {
                self.applied = Some(desired);
                Ok(ApplyOutcome::Updated {
                    summary,
                    took: started.elapsed(),
                })
            }
            Err(error) => {
                tracing::warn!(%error, "incremental nftables update failed; rebuilding the table");
                self.rebuild(desired, started, Some(error.to_string()))
                    .await
            }
        }
    }

    async fn rebuild(
        &mut self,
        desired: Ruleset,
        started: Instant,
        after_update_error: Option<String>,
    ) -> Result<ApplyOutcome, NftError> {
        self.applied = None;
        self.nft.apply(&render_full(&desired)).await?;
        self.applied = Some(desired);
        Ok(ApplyOutcome::Rebuilt {
            took: started.elapsed(),
            after_update_error,
        })
    }

    /// Reads the table back and rebuilds it if it differs from what was applied (someone
    /// flushed it, deleted an element, added a chain). Returns the drift found (bounded);
    /// empty means the table was as expected.
    pub async fn repair(&mut self) -> Result<Vec<String>, NftError> {
        let Some(applied) = self.applied.clone() else {
            return Ok(Vec::new());
        };
        let expected = expected_shape(&applied);
        let found = match self.nft.list_table_json().await? {
            None => vec!["table inet herald missing".to_string()],
            Some(json) => drift(&expected, &parse_table_json(&json)?, 20),
        };
        if !found.is_empty() {
            tracing::warn!(drift = ?found, "nftables drift found; rebuilding the table");
            self.rebuild(applied, Instant::now(), None).await?;
        }
        Ok(found)
    }

    /// Removes Herald's table entirely (shutdown).
    pub async fn remove(&mut self) -> Result<(), NftError> {
        self.nft.apply(&render_teardown()).await?;
        self.applied = None;
        Ok(())
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

    /// A resync first reads the table back and rebuilds it if it drifted.
    fn apply<'a>(
        &'a mut self,
        plan: &'a NodePlan,
        full: bool,
    ) -> BoxFuture<'a, Result<ApplyReport, ExecutorError>> {
        Box::pin(async move {
            let drift = if full {
                self.forwarder
                    .repair()
                    .await
                    .map_err(|e| ExecutorError::new(Self::NAME, e))?
            } else {
                Vec::new()
            };
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
