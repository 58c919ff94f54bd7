//! Forwarding's Prometheus metrics beyond the executor counters (prefix
//! `herald_speaker_forwarding_`): endpoint eviction and connection-tracking clean-up.
//! Registered by [`crate::metrics::Metrics`]; no I/O.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metric_group::metric_group;

pub use crate::metric_group::ResultLabel;

metric_group! {
    /// Every forwarding metric. Clones share the same values.
    pub struct ForwardingMetrics, prefix "forwarding" {
        /// Nodes whose endpoints stopped receiving new connections (declared dead by membership)
        node_evictions: Counter,
        /// Evicted nodes whose endpoints receive new connections again
        node_restorations: Counter,
        /// Nodes currently evicted from forwarding
        evicted_nodes: Gauge,
        /// Endpoint addresses currently left out of forwarding by eviction
        evicted_endpoints: Gauge,
        /// Forwarding targets whose every endpoint is on a dead node, kept rather than emptied
        kept_whole_targets: Gauge,
        /// Flushes of stale connection-tracking entries, by result
        conntrack_flushes: Family<ResultLabel, Counter>,
        /// Tracked connections deleted because their backend left
        conntrack_entries_deleted: Counter,
    }
}
