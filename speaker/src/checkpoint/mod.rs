//! The on-node checkpoint: a speaker that restarts while the API server is unreachable
//! resumes from the last state it knew, within a maximum age (issue 11).
//!
//! Owns the checkpoint file and the decision to resume. [`format`] is pure (encode,
//! decode with a version and a checksum, the age check, when to write); this module is the
//! I/O edge: it reads the file once at start ([`load`]) and writes it atomically (a
//! temporary file in the same directory, fsync, rename, fsync of the directory) after
//! every pass that applied without error and changed the state ([`Checkpointer`]). The
//! runtime decides *when* to resume (the first lists have not completed within
//! [`RESUME_AFTER`]) and switches back to the live watches the moment they have.
//!
//! Rules (docs/static-stability.md): a speaker never announces an address its checkpoint
//! does not hold (it plans from the checkpointed objects exactly as from live ones); a
//! checkpoint that is corrupt, of another format version, of another node, older than the
//! maximum age or dated in the future is refused with one log line and
//! `herald_speaker_checkpoint_refused_total{reason}`, and the speaker then waits for the
//! API and announces nothing, as it did before checkpoints existed. A resumed speaker
//! writes no checkpoint (it learned nothing new).
//!
//! What the file holds: the watched objects, no Secret (neither the memberlist key nor BGP
//! passwords: password-protected peers stay down after a restart until the API answers).
//! A resumed speaker resumes BGP and forwarding; it stays out of layer 2 and membership
//! until the API answers ([`format::for_resume`]), and the nodes that kept running keep
//! announcing the layer-2 addresses. The file is mode 0600.

pub mod format;
pub mod metrics;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runtime::watches::Snapshot;
pub use format::Refusal;
use format::Written;
pub use metrics::CheckpointMetrics;

/// How long a starting speaker waits for its first complete lists before resuming from a
/// usable checkpoint.
pub const RESUME_AFTER: Duration = Duration::from_secs(5);
/// Default of `--checkpoint-max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Where the checkpoint lives and how old it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Directory of the checkpoint (a hostPath in the chart); the file is
    /// `speaker-<node>.checkpoint` in it.
    pub directory: PathBuf,
    /// A checkpoint confirmed longer ago than this is refused.
    pub max_age: Duration,
}

impl CheckpointConfig {
    /// The checkpoint file of `node`.
    pub fn file(&self, node: &str) -> PathBuf {
        self.directory.join(format!("speaker-{node}.checkpoint"))
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads the checkpoint of `node` and returns its snapshot if it may be resumed from. A
/// missing file is not a refusal (first start); anything else unusable is logged and
/// counted.
pub fn load(
    config: &CheckpointConfig,
    node: &str,
    now: u64,
    metrics: &CheckpointMetrics,
) -> Option<Snapshot> {
    let path = config.file(node);
    let verdict = match std::fs::read(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no checkpoint; a restart while the API server is unreachable announces nothing");
            return None;
        }
        Err(error) => Err(Refusal::Unreadable(error.to_string())),
        Ok(bytes) => format::decode(&bytes)
            .and_then(|checkpoint| format::usable(checkpoint, node, now, config.max_age)),
    };
    match verdict {
        Ok(checkpoint) => {
            tracing::info!(
                path = %path.display(),
                age_secs = now.saturating_sub(checkpoint.confirmed),
                services = checkpoint.snapshot.services.len(),
                "usable checkpoint; resumed from if the API server does not answer"
            );
            Some(format::for_resume(checkpoint.snapshot))
        }
        Err(refusal) => {
            metrics.refused(refusal.reason());
            tracing::warn!(path = %path.display(), %refusal, "checkpoint refused; if the API server does not answer, nothing is announced until it does");
            None
        }
    }
}

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("encoding the checkpoint: {0}")]
    Encode(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the checkpoint after applied passes.
#[derive(Debug)]
pub struct Checkpointer {
    config: CheckpointConfig,
    node: String,
    metrics: CheckpointMetrics,
    last: Option<Written>,
    /// Failed writes in a row (the log says the 1st, 2nd, 4th, 8th, ...).
    failures: u64,
}

impl Checkpointer {
    pub fn new(config: CheckpointConfig, node: String, metrics: CheckpointMetrics) -> Self {
        Self {
            config,
            node,
            metrics,
            last: None,
            failures: 0,
        }
    }

    /// Records the snapshot a pass applied without error: writes it if it changed, or if
    /// only its confirmation is due for a refresh. `stale_since` is the beginning of the
    /// API outage, if one is under way. A failure is logged and counted, never fatal.
    pub async fn record(&mut self, snapshot: &Snapshot, now: u64, stale_since: Option<u64>) {
        let confirmed = format::confirmed_at(now, stale_since);
        let body = match format::encode_body(snapshot) {
            Ok(body) => body,
            Err(error) => {
                self.failed(&WriteError::Encode(error));
                return;
            }
        };
        let next = Written::of(&body, confirmed);
        if !format::write_due(
            self.last,
            next,
            format::refresh_interval(self.config.max_age),
        ) {
            return;
        }
        let file = format::encode(&self.node, confirmed, &body);
        let path = self.config.file(&self.node);
        let result = tokio::task::spawn_blocking(move || {
            write_atomically(&path, &file).map_err(|source| WriteError::Io { path, source })
        })
        .await;
        match result {
            Ok(Ok(())) => {
                self.metrics.writes.inc();
                self.metrics
                    .confirmed_seconds
                    .set(i64::try_from(confirmed).unwrap_or(i64::MAX));
                self.last = Some(next);
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "checkpoint written again");
                    self.failures = 0;
                }
            }
            Ok(Err(error)) => self.failed(&error),
            Err(join) => self.failed(&WriteError::Encode(join.to_string())),
        }
    }

    fn failed(&mut self, error: &WriteError) {
        self.metrics.write_errors.inc();
        // Try again on the next pass, whatever changed.
        self.last = None;
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(%error, failures = self.failures, "checkpoint not written; a restart while the API server is unreachable would use an older one or none");
        }
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, whole:
/// a temporary file in the same directory (mode 0600), fsync, rename, fsync of the
/// directory. Creates the directory (mode 0700) if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests;
