//! BFD's Prometheus metrics (prefix `herald_speaker_bfd_`): session state, transitions, and
//! control packets sent, received and dropped by reason. Registered beside the BGP metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: the BGPPeer whose BFD session it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// Labels: the peer and a BFD state (RFC 5880 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PeerStateLabels {
    pub peer: String,
    pub state: &'static str,
}

/// Labels of a transition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransitionLabels {
    pub peer: String,
    pub from: &'static str,
    pub to: &'static str,
}

/// Label: why a packet was dropped (`bad_ttl`, `no_session`, `bad_version`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every BFD metric. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct BfdMetrics {
    /// 1 for the session's current state, 0 for the others.
    pub session_state: Family<PeerStateLabels, Gauge>,
    pub session_up: Family<PeerLabel, Gauge>,
    pub transitions: Family<TransitionLabels, Counter>,
    /// Sessions that went from Up to Down, and BGP sessions torn down because of it.
    pub bgp_teardowns: Family<PeerLabel, Counter>,
    pub packets_sent: Family<PeerLabel, Counter>,
    pub packets_received: Family<PeerLabel, Counter>,
    pub packets_dropped: Family<ReasonLabel, Counter>,
}

/// The states a session can be in, as metric labels.
pub const STATES: [&str; 4] = ["adminDown", "down", "init", "up"];

impl BfdMetrics {
    /// Registers every metric in `registry` (whose prefix is `herald_speaker`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BfdMetrics::default();
        let bfd = registry.sub_registry_with_prefix("bfd");
        bfd.register(
            "session_state",
            "1 for the state each BFD session is in (RFC 5880), 0 for the others",
            metrics.session_state.clone(),
        );
        bfd.register(
            "session_up",
            "1 while the BFD session is Up",
            metrics.session_up.clone(),
        );
        bfd.register(
            "transitions",
            "BFD session state changes",
            metrics.transitions.clone(),
        );
        bfd.register(
            "bgp_teardowns",
            "BGP sessions taken down because their BFD session went down (RFC 5882)",
            metrics.bgp_teardowns.clone(),
        );
        bfd.register(
            "packets_sent",
            "BFD control packets sent",
            metrics.packets_sent.clone(),
        );
        bfd.register(
            "packets_received",
            "BFD control packets received and accepted by a session",
            metrics.packets_received.clone(),
        );
        bfd.register(
            "packets_dropped",
            "BFD control packets dropped, by reason",
            metrics.packets_dropped.clone(),
        );
        metrics
    }

    /// Sets the state gauges of `peer` to `state`.
    pub fn set_state(&self, peer: &str, state: &'static str) {
        for candidate in STATES {
            self.session_state
                .get_or_create(&PeerStateLabels {
                    peer: peer.to_owned(),
                    state: candidate,
                })
                .set(i64::from(candidate == state));
        }
        self.session_up
            .get_or_create(&PeerLabel {
                peer: peer.to_owned(),
            })
            .set(i64::from(state == "up"));
    }

    /// Removes the gauges of a session that no longer exists.
    pub fn forget(&self, peer: &str) {
        for state in STATES {
            self.session_state.remove(&PeerStateLabels {
                peer: peer.to_owned(),
                state,
            });
        }
        self.session_up.remove(&PeerLabel {
            peer: peer.to_owned(),
        });
    }

    pub fn dropped(&self, reason: &'static str) {
        self.packets_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
