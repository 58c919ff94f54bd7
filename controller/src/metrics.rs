//! Prometheus metrics of the controller (prometheus-client), rendered as text for `/metrics`.
//!
//! Owns the registry and the metric handles; callers only count. No I/O here: the HTTP edge
//! (`http`) renders [`Metrics::render`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::allocator::FamilyStats;

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Services that got new addresses.
    pub allocations: Counter,
    /// Allocation failures by reason (`PoolExhausted`, `SharingConflict`, ...).
    pub allocation_failures: Family<Labels, Counter>,
    /// Services whose addresses were given back.
    pub releases: Counter,
    /// Addresses per pool, family and state (`assigned`, `available`).
    pub pool_addresses: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Reconciles by kind (`service`, `pool`).
    pub reconciles: Family<Labels, Counter>,
    /// Failed reconciles by kind.
    pub reconcile_errors: Family<Labels, Counter>,
    /// Events not published because an identical one was published recently.
    pub events_suppressed: Counter,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    /// Addresses taken over from Service status at the start of the current term.
    pub restored_addresses: Gauge,
    /// BGPPeer status entries of deleted Nodes removed (see [`crate::peer_status`]).
    pub status_entries_pruned: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Metrics {
    /// Registers every metric under the `herald_controller_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald_controller");
        let metrics = Metrics {
            registry: Registry::default(),
            allocations: Counter::default(),
            allocation_failures: Family::default(),
            releases: Counter::default(),
            pool_addresses: Family::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            events_suppressed: Counter::default(),
            leader: Gauge::default(),
            restored_addresses: Gauge::default(),
            status_entries_pruned: Counter::default(),
        };
        registry.register(
            "allocations",
            "Services that got new load-balancer addresses",
            metrics.allocations.clone(),
        );
        registry.register(
            "allocation_failures",
            "Allocations that failed, by reason",
            metrics.allocation_failures.clone(),
        );
        registry.register(
            "releases",
            "Services whose addresses were given back",
            metrics.releases.clone(),
        );
        registry.register(
            "pool_addresses",
            "Addresses of each pool by family and state (assigned, available)",
            metrics.pool_addresses.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind (service, pool)",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed (and will be retried with back-off), by kind",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "events_suppressed",
            "Events not published because an identical one was published recently",
            metrics.events_suppressed.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader and may write",
            metrics.leader.clone(),
        );
        registry.register(
            "restored_addresses",
            "Addresses taken over from Service status when the current term started",
            metrics.restored_addresses.clone(),
        );
        registry.register(
            "bgp_status_entries_pruned",
            "BGPPeer status entries of deleted Nodes removed by the leader",
            metrics.status_entries_pruned.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts a failed allocation.
    pub fn allocation_failed(&self, reason: &str) {
        self.allocation_failures
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts a reconcile of `kind`, failed or not.
    pub fn reconciled(&self, kind: &str, failed: bool) {
        self.reconciles
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
        if failed {
            self.reconcile_errors
                .get_or_create(&labels(&[("kind", kind)]))
                .inc();
        }
    }

    /// Replaces the pool gauges with `pools` (name, IPv4 counts, IPv6 counts).
    pub fn set_pools<'a>(
        &self,
        pools: impl IntoIterator<Item = (&'a str, FamilyStats, FamilyStats)>,
    ) {
        self.pool_addresses.clear();
        for (pool, ipv4, ipv6) in pools {
            for (family, stats) in [("IPv4", ipv4), ("IPv6", ipv6)] {
                for (state, value) in [("assigned", stats.assigned), ("available", stats.available)]
                {
                    // Precision loss past 2^53 is fine for a gauge.
                    #[allow(clippy::cast_precision_loss)]
                    let value = value as f64;
                    self.pool_addresses
                        .get_or_create(&labels(&[
                            ("pool", pool),
                            ("family", family),
                            ("state", state),
                        ]))
                        .set(value);
                }
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _infallible = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_exposition_names_every_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.allocations.inc();
        metrics.allocation_failed("PoolExhausted");
        metrics.reconciled("service", true);
        metrics.set_pools([(
            "gold",
            FamilyStats {
                size: 4,
                assigned: 1,
                available: 3,
            },
            FamilyStats::default(),
        )]);
        let text = metrics.render();
        for expected in [
            "herald_controller_allocations_total 1",
            "herald_controller_allocation_failures_total{reason=\"PoolExhausted\"} 1",
            "herald_controller_reconcile_errors_total{kind=\"service\"} 1",
            "herald_controller_pool_addresses{pool=\"gold\",family=\"IPv4\",state=\"available\"} 3",
            "herald_controller_leader 0",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    #[test]
    fn a_deleted_pool_disappears_from_the_gauges() {
        let metrics = Metrics::new();
        metrics.set_pools([("old", FamilyStats::default(), FamilyStats::default())]);
        metrics.set_pools([("new", FamilyStats::default(), FamilyStats::default())]);
        let text = metrics.render();
        assert!(!text.contains("pool=\"old\""));
        assert!(text.contains("pool=\"new\""));
    }
}
