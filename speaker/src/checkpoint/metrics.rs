//! The checkpoint's Prometheus metrics (prefix `herald_speaker_checkpoint_`). Registered by
//! [`crate::observability::Metrics`]; no I/O.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every checkpoint metric. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct CheckpointMetrics {
    /// Checkpoints written.
    pub writes: Counter,
    /// Checkpoints that could not be written.
    pub write_errors: Counter,
    /// Unix time the last written checkpoint was confirmed at.
    pub confirmed: Gauge,
    /// Checkpoints refused at start, by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// 1 while the speaker runs from its checkpoint (the API server has not answered since
    /// it started).
    pub resumed: Gauge,
}

impl CheckpointMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("checkpoint");
        sub.register(
            "writes",
            "Checkpoints of the desired state written to the node",
            metrics.writes.clone(),
        );
        sub.register(
            "write_errors",
            "Checkpoints that could not be written",
            metrics.write_errors.clone(),
        );
        sub.register(
            "confirmed_seconds",
            "Unix time the last written checkpoint was known current at",
            metrics.confirmed.clone(),
        );
        sub.register(
            "refused",
            "Checkpoints refused at start (corrupt, old_version, future_version, other_node, too_old, from_the_future, unreadable)",
            metrics.refused.clone(),
        );
        sub.register(
            "resumed",
            "1 while the speaker runs from its checkpoint because the API server has not answered since it started",
            metrics.resumed.clone(),
        );
        metrics
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}
