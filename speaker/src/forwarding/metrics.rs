//! Forwarding's Prometheus metrics beyond the executor counters (prefix
//! `herald_speaker_forwarding_`): endpoint eviction and connection-tracking clean-up.
//! Registered by [`crate::observability::Metrics`]; no I/O.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: a result (`ok`, `error`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every forwarding metric. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct ForwardingMetrics {
    /// Nodes whose endpoints were taken out of forwarding because membership declared them
    /// dead (one per node transition).
    pub node_evictions: Counter,
    /// Nodes whose endpoints came back (alive again).
    pub node_restorations: Counter,
    /// Nodes currently evicted.
    pub evicted_nodes: Gauge,
    /// Distinct endpoint addresses currently left out by eviction.
    pub evicted_endpoints: Gauge,
    /// Forwarding targets whose every endpoint is on a dead node (kept whole).
    pub kept_whole_targets: Gauge,
    /// Connection-tracking flushes, by result.
    pub conntrack_flushes: Family<ResultLabel, Counter>,
    /// Tracked connections deleted because their backend left.
    pub conntrack_entries_deleted: Counter,
}

impl ForwardingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("forwarding");
        sub.register(
            "node_evictions",
            "Nodes whose endpoints stopped receiving new connections (declared dead by membership)",
            metrics.node_evictions.clone(),
        );
        sub.register(
            "node_restorations",
            "Evicted nodes whose endpoints receive new connections again",
            metrics.node_restorations.clone(),
        );
        sub.register(
            "evicted_nodes",
            "Nodes currently evicted from forwarding",
            metrics.evicted_nodes.clone(),
        );
        sub.register(
            "evicted_endpoints",
            "Endpoint addresses currently left out of forwarding by eviction",
            metrics.evicted_endpoints.clone(),
        );
        sub.register(
            "kept_whole_targets",
            "Forwarding targets whose every endpoint is on a dead node, kept rather than emptied",
            metrics.kept_whole_targets.clone(),
        );
        sub.register(
            "conntrack_flushes",
            "Flushes of stale connection-tracking entries, by result",
            metrics.conntrack_flushes.clone(),
        );
        sub.register(
            "conntrack_entries_deleted",
            "Tracked connections deleted because their backend left",
            metrics.conntrack_entries_deleted.clone(),
        );
        metrics
    }
}
