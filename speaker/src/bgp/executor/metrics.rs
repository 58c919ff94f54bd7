//! The BGP executor's Prometheus metrics, per session (prefix `herald_speaker_bgp_`;
//! registered by [`crate::metrics::Metrics`]), and the pure bookkeeping that turns
//! successive session snapshots into counter increments.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::bgp::driver::PeerStatus;
use crate::bgp::fsm::State;

/// Label: the BGPPeer's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// Labels: the BGPPeer's name and an FSM state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PeerStateLabels {
    pub peer: String,
    pub state: &'static str,
}

/// Every FSM state, with its label value (RFC 4271 §8.2.2).
pub const STATES: [(State, &str); 6] = [
    (State::Idle, "Idle"),
    (State::Connect, "Connect"),
    (State::Active, "Active"),
    (State::OpenSent, "OpenSent"),
    (State::OpenConfirm, "OpenConfirm"),
    (State::Established, "Established"),
];

/// Every BGP metric. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct BgpMetrics {
    /// 1 for the session's current state, 0 for the others.
    pub session_state: Family<PeerStateLabels, Gauge>,
    pub session_up: Family<PeerLabel, Gauge>,
    pub prefixes_advertised: Family<PeerLabel, Gauge>,
    pub updates_sent: Family<PeerLabel, Counter>,
    /// Established sessions that went down.
    pub session_flaps: Family<PeerLabel, Counter>,
    /// Planned peers that get no session (missing password Secret, no identifier, ...).
    pub peers_held_back: Gauge,
    /// Status and annotation writes, by result.
    pub api_writes: Family<ResultLabel, Counter>,
    /// The BFD sessions beside the BGP sessions (`herald_speaker_bfd_*`).
    pub bfd: crate::bfd::metrics::BfdMetrics,
}

pub use crate::metric_group::ResultLabel;

impl BgpMetrics {
    /// Registers every metric in `registry` (whose prefix is `herald_speaker`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BgpMetrics {
            bfd: crate::bfd::metrics::BfdMetrics::register(registry),
            ..BgpMetrics::default()
        };
        let bgp = registry.sub_registry_with_prefix("bgp");
        bgp.register(
            "session_state",
            "1 for the state each BGP session is in (RFC 4271 FSM), 0 for the others",
            metrics.session_state.clone(),
        );
        bgp.register(
            "session_up",
            "1 while the BGP session is Established",
            metrics.session_up.clone(),
        );
        bgp.register(
            "prefixes_advertised",
            "Prefixes currently advertised on the session",
            metrics.prefixes_advertised.clone(),
        );
        bgp.register(
            "updates_sent",
            "UPDATE messages sent (End-of-RIB included)",
            metrics.updates_sent.clone(),
        );
        bgp.register(
            "session_flaps",
            "Times an Established session went down",
            metrics.session_flaps.clone(),
        );
        bgp.register(
            "peers_held_back",
            "Planned peers without a session (password Secret unreadable, no BGP identifier, ...)",
            metrics.peers_held_back.clone(),
        );
        bgp.register(
            "api_writes",
            "BGPPeer status and Service annotation writes, by result",
            metrics.api_writes.clone(),
        );
        metrics
    }

    /// Sets the gauges of one peer from its status.
    fn set_gauges(&self, peer: &str, status: &PeerStatus) {
        for (state, label) in STATES {
            self.session_state
                .get_or_create(&PeerStateLabels {
                    peer: peer.to_string(),
                    state: label,
                })
                .set(i64::from(status.session.state == state));
        }
        let label = PeerLabel {
            peer: peer.to_string(),
        };
        self.session_up
            .get_or_create(&label)
            .set(i64::from(status.session.state == State::Established));
        self.prefixes_advertised
            .get_or_create(&label)
            .set(i64::try_from(status.session.prefixes_advertised).unwrap_or(i64::MAX));
    }

    /// Drops every series of a peer that is gone.
    fn forget(&self, peer: &str) {
        for (_, label) in STATES {
            self.session_state.remove(&PeerStateLabels {
                peer: peer.to_string(),
                state: label,
            });
        }
        let label = PeerLabel {
            peer: peer.to_string(),
        };
        self.session_up.remove(&label);
        self.prefixes_advertised.remove(&label);
        self.updates_sent.remove(&label);
        self.session_flaps.remove(&label);
    }
}

/// What the last sample of a session showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    updates_sent: u64,
    established_ended: u64,
}

/// Turns successive samples of the sessions' counters into metric increments (the session
/// counts flaps itself, so none is missed between samples). A session whose counter went
/// backwards was recreated (new configuration): its new count is added in full.
#[derive(Debug, Default)]
pub struct MetricsSampler {
    last: BTreeMap<String, Sample>,
}

/// Counter increments of one sample, per peer (pure result of [`MetricsSampler::step`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increments {
    pub updates: BTreeMap<String, u64>,
    pub flaps: BTreeMap<String, u64>,
    pub gone: Vec<String>,
}

impl MetricsSampler {
    /// Compares with the last sample. Pure.
    pub fn step(&mut self, statuses: &BTreeMap<String, PeerStatus>) -> Increments {
        let mut out = Increments::default();
        for (peer, status) in statuses {
            let now = Sample {
                updates_sent: status.session.update_messages_sent,
                established_ended: status.session.established_ended,
            };
            let before = self.last.insert(peer.clone(), now);
            let growth = |old: u64, new: u64| match before {
                Some(_) if old <= new => new - old,
                _ => new,
            };
            let updates = growth(before.map_or(0, |b| b.updates_sent), now.updates_sent);
            if updates > 0 {
                out.updates.insert(peer.clone(), updates);
            }
            let flaps = growth(
                before.map_or(0, |b| b.established_ended),
                now.established_ended,
            );
            if flaps > 0 {
                out.flaps.insert(peer.clone(), flaps);
            }
        }
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|peer| !statuses.contains_key(*peer))
            .cloned()
            .collect();
        for peer in &gone {
            self.last.remove(peer);
        }
        out.gone = gone;
        out
    }

    /// Samples and updates `metrics`.
    pub fn record(&mut self, statuses: &BTreeMap<String, PeerStatus>, metrics: &BgpMetrics) {
        let increments = self.step(statuses);
        for (peer, status) in statuses {
            metrics.set_gauges(peer, status);
        }
        for (peer, n) in increments.updates {
            metrics
                .updates_sent
                .get_or_create(&PeerLabel { peer })
                .inc_by(n);
        }
        for (peer, n) in increments.flaps {
            metrics
                .session_flaps
                .get_or_create(&PeerLabel { peer })
                .inc_by(n);
        }
        for peer in increments.gone {
            metrics.forget(&peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::bgp::fsm::SessionStatus;

    fn status(state: State, updates: u64, flaps: u64) -> PeerStatus {
        PeerStatus {
            peer_address: "192.0.2.1".parse::<IpAddr>().expect("ip"),
            session: SessionStatus {
                state,
                prefixes_advertised: 0,
                consecutive_failures: 0,
                last_error: None,
                negotiated: None,
                end_of_rib_received: vec![],
                update_messages_sent: updates,
                established_ended: flaps,
            },
        }
    }

    fn one(state: State, updates: u64) -> BTreeMap<String, PeerStatus> {
        with_flaps(state, updates, 0)
    }

    fn with_flaps(state: State, updates: u64, flaps: u64) -> BTreeMap<String, PeerStatus> {
        [("router".to_string(), status(state, updates, flaps))].into()
    }

    #[test]
    fn updates_count_the_difference_and_a_recreated_session_counts_from_zero() {
        let mut sampler = MetricsSampler::default();
        assert_eq!(
            sampler.step(&one(State::Established, 3)).updates["router"],
            3
        );
        assert!(sampler.step(&one(State::Established, 3)).updates.is_empty());
        assert_eq!(
            sampler.step(&one(State::Established, 5)).updates["router"],
            2
        );
        assert_eq!(
            sampler.step(&one(State::Established, 1)).updates["router"],
            1,
            "a new session after a configuration change"
        );
    }

    #[test]
    fn flaps_come_from_the_sessions_own_count_so_a_short_session_between_samples_is_not_missed() {
        let mut sampler = MetricsSampler::default();
        assert!(
            sampler
                .step(&with_flaps(State::Active, 0, 0))
                .flaps
                .is_empty()
        );
        // Up and down twice between two samples.
        assert_eq!(
            sampler.step(&with_flaps(State::Active, 2, 2)).flaps["router"],
            2
        );
        assert!(
            sampler
                .step(&with_flaps(State::Established, 3, 2))
                .flaps
                .is_empty()
        );
        assert_eq!(
            sampler.step(&with_flaps(State::Idle, 3, 3)).flaps["router"],
            1
        );
        assert_eq!(sampler.step(&BTreeMap::new()).gone, ["router".to_string()]);
    }

    #[test]
    fn the_exposition_shows_the_state_of_each_session() {
        let mut registry = Registry::with_prefix("herald_speaker");
        let metrics = BgpMetrics::register(&mut registry);
        let mut sampler = MetricsSampler::default();
        sampler.record(&one(State::Established, 2), &metrics);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                "herald_speaker_bgp_session_state{peer=\"router\",state=\"Established\"} 1"
            )
        );
        assert!(
            text.contains("herald_speaker_bgp_session_state{peer=\"router\",state=\"Idle\"} 0")
        );
        assert!(text.contains("herald_speaker_bgp_updates_sent_total{peer=\"router\"} 2"));
        assert!(text.contains("herald_speaker_bgp_session_up{peer=\"router\"} 1"));
    }
}
