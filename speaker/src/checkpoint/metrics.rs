//! The checkpoint's Prometheus metrics (prefix `herald_speaker_checkpoint_`). Registered by
//! [`crate::metrics::Metrics`]; no I/O.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metric_group::metric_group;

/// Label: why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

metric_group! {
    /// Every checkpoint metric. Clones share the same values.
    pub struct CheckpointMetrics, prefix "checkpoint" {
        /// Checkpoints of the desired state written to the node
        writes: Counter,
        /// Checkpoints that could not be written
        write_errors: Counter,
        /// Unix time the last written checkpoint was known current at
        confirmed_seconds: Gauge,
        /// Checkpoints refused at start (corrupt, old_version, future_version, other_node,
        /// too_old, from_the_future, unreadable)
        refused: Family<ReasonLabel, Counter>,
        /// 1 while the speaker runs from its checkpoint because the API server has not
        /// answered since it started
        resumed: Gauge,
    }
}

impl CheckpointMetrics {
    /// Counts one refusal.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}
