//! Every metric the speaker exports, assembled in one registry (prefix `herald_speaker_`):
//! the runtime's own ([`RuntimeMetrics`], from [`crate::observability`]) and each executor's
//! group (layer 2, BGP, forwarding), which the executors define and update themselves.
//!
//! This module sits above the executors and the observability module, so that neither has to
//! know the other: executors publish into their groups, `/metrics` reads the text through
//! [`Exposition`]. No I/O.

use std::ops::Deref;

use prometheus_client::registry::Registry;

use crate::api_writer::ApiWriterMetrics;
use crate::bgp::executor::metrics::BgpMetrics;
use crate::checkpoint::CheckpointMetrics;
use crate::forwarding::metrics::ForwardingMetrics;
use crate::l2::executor::metrics::L2Metrics;
use crate::observability::{Exposition, RuntimeMetrics, encode_registry};

/// Every metric the speaker exports. Dereferences to the runtime's own metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runtime: RuntimeMetrics,
    /// Layer-2 announcement metrics (`herald_speaker_l2_*`).
    pub l2: L2Metrics,
    /// BGP session metrics (`herald_speaker_bgp_*`).
    pub bgp: BgpMetrics,
    /// Endpoint eviction and conntrack clean-up (`herald_speaker_forwarding_*`).
    pub forwarding: ForwardingMetrics,
    /// The queued API writer (`herald_speaker_api_writer_*`).
    pub api_writer: ApiWriterMetrics,
    /// The on-node checkpoint (`herald_speaker_checkpoint_*`).
    pub checkpoint: CheckpointMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald_speaker");
        let runtime = RuntimeMetrics::register(&mut registry);
        let l2 = L2Metrics::register(&mut registry);
        let bgp = BgpMetrics::register(&mut registry);
        let forwarding = ForwardingMetrics::register(&mut registry);
        let api_writer = ApiWriterMetrics::register(&mut registry);
        let checkpoint = CheckpointMetrics::register(&mut registry);
        Self {
            registry,
            runtime,
            l2,
            bgp,
            forwarding,
            api_writer,
            checkpoint,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        encode_registry(&self.registry)
    }
}

impl Deref for Metrics {
    type Target = RuntimeMetrics;

    fn deref(&self) -> &RuntimeMetrics {
        &self.runtime
    }
}

impl Exposition for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_is_exported_in_one_text_with_the_speaker_prefix() {
        let metrics = Metrics::new();
        metrics.membership_live.set(2);
        let text = metrics.encode();
        assert!(
            text.contains("herald_speaker_membership_live_members 2"),
            "{text}"
        );
        for group in [
            "herald_speaker_l2_",
            "herald_speaker_bgp_",
            "herald_speaker_forwarding_",
        ] {
            assert!(text.contains(group), "{group} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
