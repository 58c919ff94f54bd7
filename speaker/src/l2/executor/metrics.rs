//! The layer-2 executor's Prometheus metrics (registered by
//! [`crate::metrics::Metrics`]; the membership size is exported there as
//! `herald_speaker_membership_live_members`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::l2::announcer::Counters;
use crate::metric_group::metric_group;

/// Label: the interface a counter is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
}

/// Labels of answered requests: the interface and `arp` or `ndp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub interface: String,
    pub protocol: &'static str,
}

pub use crate::metric_group::ResultLabel;

/// Label: when a conflict was seen (`probing`, `owning`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

metric_group! {
    /// Every layer-2 metric (prefix `herald_speaker_l2_`). Clones share the same values.
    pub struct L2Metrics, prefix "l2" {
        /// Addresses this node announces over layer 2
        owned_addresses: Gauge,
        /// Addresses this node was elected for but has no interface to announce on
        owned_without_interface: Gauge,
        /// ARP requests and Neighbor Solicitations answered
        requests_answered: Family<RequestLabels, Counter>,
        /// Gratuitous ARP and unsolicited Neighbor Advertisement frames sent
        announcements_sent: Family<InterfaceLabels, Counter>,
        /// RFC 5227 / RFC 4862 probes sent before a first announcement
        probes_sent: Family<InterfaceLabels, Counter>,
        /// Announcements sent to defend an owned address against another claimant
        defences_sent: Family<InterfaceLabels, Counter>,
        /// Received ARP/NDP frames that failed to parse
        malformed_frames: Family<InterfaceLabels, Counter>,
        /// Frames the kernel refused to send
        transmit_errors: Family<InterfaceLabels, Counter>,
        /// Reports of another MAC claiming an address, while probing or while owning
        conflicts: Family<PhaseLabel, Counter>,
        /// Addresses taken over from another node without probing
        takeovers: Counter,
        /// Writes of the current-announcer record on Services
        record_writes: Family<ResultLabel, Counter>,
        /// Failures to open an interface for announcing
        interface_start_errors: Counter,
    }
}

impl L2Metrics {
    /// Adds the growth of one interface's announcer counters between two samples.
    pub fn add_counter_growth(&self, interface: &str, before: &Counters, after: &Counters) {
        let labels = InterfaceLabels {
            interface: interface.to_owned(),
        };
        let grow = |family: &Family<InterfaceLabels, Counter>, old: u64, new: u64| {
            if new > old {
                family.get_or_create(&labels).inc_by(new - old);
            }
        };
        grow(
            &self.announcements_sent,
            before.announcements_sent,
            after.announcements_sent,
        );
        grow(&self.probes_sent, before.probes_sent, after.probes_sent);
        grow(
            &self.defences_sent,
            before.defences_sent,
            after.defences_sent,
        );
        grow(
            &self.malformed_frames,
            before.malformed_frames,
            after.malformed_frames,
        );
        for (protocol, old, new) in [
            (
                "arp",
                before.arp_requests_answered,
                after.arp_requests_answered,
            ),
            (
                "ndp",
                before.neighbor_solicitations_answered,
                after.neighbor_solicitations_answered,
            ),
        ] {
            if new > old {
                self.requests_answered
                    .get_or_create(&RequestLabels {
                        interface: interface.to_owned(),
                        protocol,
                    })
                    .inc_by(new - old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn counter_growth_is_exported_per_interface_and_protocol() {
        let mut registry = Registry::with_prefix("herald_speaker");
        let metrics = L2Metrics::register(&mut registry);
        let before = Counters::default();
        let after = Counters {
            arp_requests_answered: 3,
            neighbor_solicitations_answered: 2,
            announcements_sent: 7,
            ..Counters::default()
        };
        metrics.add_counter_growth("eth0", &before, &after);
        // A restarted announcer starts from zero again: no negative growth.
        metrics.add_counter_growth("eth0", &after, &before);
        metrics.owned_addresses.set(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        for line in [
            "herald_speaker_l2_requests_answered_total{interface=\"eth0\",protocol=\"arp\"} 3",
            "herald_speaker_l2_requests_answered_total{interface=\"eth0\",protocol=\"ndp\"} 2",
            "herald_speaker_l2_announcements_sent_total{interface=\"eth0\"} 7",
            "herald_speaker_l2_owned_addresses 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
