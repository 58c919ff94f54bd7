//! What this node tells the API about its BGP sessions. Pure.
//!
//! Owns three decisions, over plain data with the time passed in:
//! - the status entry of this node in each BGPPeer's `status.sessions` ([`session_report`]):
//!   the RFC 4271 §8.2.2 state, the number of prefixes advertised, and the last error in
//!   words a person can act on;
//! - which of this node's peers carry each Service ([`carriers`]): the session is
//!   Established, the family of the Service's prefix was negotiated (RFC 4760), and the
//!   prefix is among the session's routes;
//! - when to write ([`StatusBook`], [`AnnotationBook`]): only on change, at most once per
//!   object per interval, retrying failed writes, and removing what this node wrote earlier
//!   but no longer means (also across restarts: the books are seeded from what the API holds).
//!
//! Only this node's entries are written here; entries of nodes that were deleted while their
//! speaker was dead are removed by the leader controller (its `peer_status` module).
//!
//! # Why an annotation per node for the Service
//!
//! The controller owns `status` of a Service and rewrites its conditions from its own cache,
//! which can drop a condition another writer added a moment before. A JSON merge patch of one
//! annotation key touches nothing else, and with one key per node
//! (`bgp-peers.herald.dev/<node>`, value: the peers, comma separated) no speaker's write can
//! undo another's. The layer-2 record uses the same scheme.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald_bfd::{Diagnostic, State as BfdState};
use herald_crds::api::{BFDSessionStatus, BGPSessionState, BGPSessionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::desired::Translation;
use crate::bgp::codec::Family;
use crate::bgp::fsm::{SessionError, State};
use crate::bgp::peer::PeerStatus;
use crate::model::ServiceKey;
use crate::planner::BgpPlan;

/// Prefix of the per-node Service annotation listing the peers that carry the Service.
pub const ANNOTATION_PREFIX: &str = "bgp-peers.herald.dev/";
/// Longest name part of an annotation key (a qualified name, as for labels).
const ANNOTATION_NAME_MAX: usize = 63;

/// This node's view of one session, as written into the BGPPeer's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    pub state: BGPSessionState,
    pub last_error: Option<String>,
    pub advertised_prefixes: i64,
    /// The BFD session with the peer, when its BGPPeer names a BFDProfile.
    pub bfd: Option<BfdReport>,
}

/// This node's view of one BFD session, written into the BGPPeer's `status.bfdSessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdReport {
    /// RFC 5880 §4.1 state name (`adminDown`, `down`, `init`, `up`).
    pub state: &'static str,
    /// Why the session last went down; `None` when it never did.
    pub diagnostic: Option<&'static str>,
    pub transmit_interval_ms: Option<i64>,
    pub detection_time_ms: i64,
}

/// The status view of a BFD session's state (RFC 5880 §6.8.4 detection time included).
pub fn bfd_report(
    state: BfdState,
    diagnostic: Diagnostic,
    transmit_interval: Option<Duration>,
    detection_time: Duration,
) -> BfdReport {
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    BfdReport {
        state: state.as_str(),
        diagnostic: (diagnostic != Diagnostic::None).then(|| diagnostic.as_str()),
        transmit_interval_ms: transmit_interval.map(millis),
        detection_time_ms: millis(detection_time),
    }
}

/// The CRD's name of an FSM state.
pub fn crd_state(state: State) -> BGPSessionState {
    match state {
        State::Idle => BGPSessionState::Idle,
        State::Connect => BGPSessionState::Connect,
        State::Active => BGPSessionState::Active,
        State::OpenSent => BGPSessionState::OpenSent,
        State::OpenConfirm => BGPSessionState::OpenConfirm,
        State::Established => BGPSessionState::Established,
    }
}

/// The report of a planned peer: `held_back` (why it has no session) wins; otherwise the
/// session's status. `with_password` adds the usual cause to a failing TCP connection: with
/// TCP-MD5 (RFC 2385) a segment with a wrong or missing signature is dropped silently, so
/// a password mismatch looks exactly like an unreachable peer.
pub fn session_report(
    status: Option<&PeerStatus>,
    held_back: Option<&str>,
    with_password: bool,
) -> SessionReport {
    if let Some(reason) = held_back {
        return SessionReport {
            state: BGPSessionState::Idle,
            last_error: Some(format!("not started: {reason}")),
            advertised_prefixes: 0,
            bfd: None,
        };
    }
    let Some(status) = status else {
        return SessionReport {
            state: BGPSessionState::Idle,
            last_error: None,
            advertised_prefixes: 0,
            bfd: None,
        };
    };
    let last_error = status.session.last_error.as_ref().map(|error| match error {
        SessionError::ConnectFailed if with_password => format!(
            "{error} (TCP-MD5 is on: the peer silently drops connections whose password does not match)"
        ),
        other => other.to_string(),
    });
    SessionReport {
        state: crd_state(status.session.state),
        last_error,
        advertised_prefixes: i64::try_from(status.session.prefixes_advertised).unwrap_or(i64::MAX),
        bfd: None,
    }
}

/// Per Service, the names of this node's peers that carry it.
pub fn carriers(
    plan: &BgpPlan,
    translation: &Translation,
    statuses: &BTreeMap<String, PeerStatus>,
) -> BTreeMap<ServiceKey, BTreeSet<String>> {
    let mut out: BTreeMap<ServiceKey, BTreeSet<String>> = BTreeMap::new();
    for (peer, routes) in &translation.desired.routes {
        let Some(status) = statuses.get(peer) else {
            continue;
        };
        if status.session.state != State::Established {
            continue;
        }
        // RFC 4760 §8: without the multiprotocol capability only IPv4 unicast is carried.
        let families: Vec<Family> = status
            .session
            .negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_else(|| vec![Family::Ipv4Unicast]);
        let Some(planned) = plan.routes.get(peer) else {
            continue;
        };
        for prefix in routes.keys() {
            if !families.contains(&Family::of(prefix)) {
                continue;
            }
            for service in planned
                .get(prefix)
                .map(|a| &a.services)
                .into_iter()
                .flatten()
            {
                out.entry(service.clone()).or_default().insert(peer.clone());
            }
        }
    }
    out
}

/// The annotation key of `node`: the node name itself when it is a valid annotation name,
/// otherwise a shortened form with a hash of the full name (node names may be 253
/// characters long; annotation names at most 63).
pub fn annotation_key(node: &str) -> String {
    let valid = !node.is_empty()
        && node.len() <= ANNOTATION_NAME_MAX
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && node.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return format!("{ANNOTATION_PREFIX}{node}");
    }
    let digest = Sha256::digest(node.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut stem: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(ANNOTATION_NAME_MAX - hash.len() - 1)
        .collect();
    while stem.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        stem.pop();
    }
    let stem = stem.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if stem.is_empty() {
        format!("{ANNOTATION_PREFIX}{hash}")
    } else {
        format!("{ANNOTATION_PREFIX}{stem}-{hash}")
    }
}

/// The annotation value: peer names, sorted, comma separated.
pub fn annotation_value(peers: &BTreeSet<String>) -> String {
    peers.iter().cloned().collect::<Vec<_>>().join(",")
}

/// A write to one BGPPeer's status.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusWrite {
    /// Apply this node's entry (and its BFD entry, if the peer uses BFD).
    Set {
        peer: String,
        entry: BGPSessionStatus,
        bfd: Option<BFDSessionStatus>,
    },
    /// Give up this node's entry (the peer no longer applies to this node).
    Remove { peer: String },
}

#[derive(Debug, Clone)]
struct StatusEntry {
    /// `None`: the peer is no longer planned; the entry is to be removed.
    current: Option<SessionReport>,
    since: Timestamp,
    /// What the API holds from us, as far as we know; `None`: unknown or nothing.
    written: Option<Option<SessionReport>>,
    last_write: Option<Instant>,
}

/// Change detection and rate limiting of the BGPPeer status entries of one node.
#[derive(Debug, Clone)]
pub struct StatusBook {
    node: String,
    entries: BTreeMap<String, StatusEntry>,
}

impl StatusBook {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            entries: BTreeMap::new(),
        }
    }

    /// Peers whose status holds an entry of this node from an earlier run: each is removed
    /// unless it is planned again.
    pub fn seed_existing(&mut self, peers: impl IntoIterator<Item = String>, now: Timestamp) {
        for peer in peers {
            self.entries.entry(peer).or_insert(StatusEntry {
                current: None,
                since: now,
                written: Some(Some(SessionReport {
                    state: BGPSessionState::Idle,
                    last_error: None,
                    advertised_prefixes: 0,
                    bfd: None,
                })),
                last_write: None,
            });
        }
    }

    /// The reports of every planned peer, now. Peers missing from `reports` are to be removed.
    pub fn observe(&mut self, reports: &BTreeMap<String, SessionReport>, now: Timestamp) {
        for (peer, entry) in &mut self.entries {
            if !reports.contains_key(peer) && entry.current.is_some() {
                entry.current = None;
                entry.since = now;
            }
        }
        for (peer, report) in reports {
            let entry = self.entries.entry(peer.clone()).or_insert(StatusEntry {
                current: None,
                since: now,
                written: None,
                last_write: None,
            });
            let state_changed = entry.current.as_ref().map(|r| r.state) != Some(report.state);
            if state_changed {
                entry.since = now;
            }
            entry.current = Some(report.clone());
        }
    }

    /// The writes due now: entries that differ from what was written and were not written
    /// within `min_interval`. They count as written; report failures with
    /// [`StatusBook::failed`].
    pub fn due(&mut self, now: Instant, min_interval: Duration) -> Vec<StatusWrite> {
        let mut writes = Vec::new();
        let mut finished = Vec::new();
        for (peer, entry) in &mut self.entries {
            if entry.written.as_ref() == Some(&entry.current) {
                if entry.current.is_none() {
                    finished.push(peer.clone());
                }
                continue;
            }
            if entry
                .last_write
                .is_some_and(|at| now.saturating_duration_since(at) < min_interval)
            {
                continue;
            }
            entry.last_write = Some(now);
            entry.written = Some(entry.current.clone());
            writes.push(match &entry.current {
                Some(report) => StatusWrite::Set {
                    peer: peer.clone(),
                    entry: BGPSessionStatus {
                        node: self.node.clone(),
                        state: report.state,
                        last_transition_time: Some(Time(entry.since)),
                        last_error: report.last_error.clone(),
                        advertised_prefixes: Some(report.advertised_prefixes),
                    },
                    bfd: report.bfd.as_ref().map(|bfd| BFDSessionStatus {
                        node: self.node.clone(),
                        state: bfd.state.to_string(),
                        diagnostic: bfd.diagnostic.map(str::to_string),
                        transmit_interval: bfd.transmit_interval_ms,
                        detection_time: Some(bfd.detection_time_ms),
                    }),
                },
                None => StatusWrite::Remove { peer: peer.clone() },
            });
        }
        for peer in finished {
            self.entries.remove(&peer);
        }
        writes
    }

    /// A write for `peer` failed: it is due again after the interval.
    pub fn failed(&mut self, peer: &str) {
        if let Some(entry) = self.entries.get_mut(peer) {
            entry.written = None;
        }
    }

    /// A write for `peer` found no such BGPPeer: forget it.
    pub fn gone(&mut self, peer: &str) {
        if let Some(entry) = self.entries.get_mut(peer) {
            entry.written = Some(entry.current.clone());
        }
    }

    /// Every peer this node may have an entry for, as removals (shutdown).
    pub fn remove_all(&mut self) -> Vec<StatusWrite> {
        let peers: Vec<String> = std::mem::take(&mut self.entries).into_keys().collect();
        peers
            .into_iter()
            .map(|peer| StatusWrite::Remove { peer })
            .collect()
    }
}

/// A write of this node's annotation on one Service (`None` removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationWrite {
    pub service: ServiceKey,
    pub value: Option<String>,
}

/// Change detection and rate limiting of this node's Service annotations.
#[derive(Debug, Clone, Default)]
pub struct AnnotationBook {
    /// `None` until the Services were listed once (nothing is written before: stale values
    /// from an earlier run must be known to be removed).
    written: Option<BTreeMap<ServiceKey, String>>,
    desired: BTreeMap<ServiceKey, String>,
    last_write: BTreeMap<ServiceKey, Instant>,
}

impl AnnotationBook {
    /// What the API holds under this node's key, from a list of the Services.
    pub fn seed(&mut self, existing: BTreeMap<ServiceKey, String>) {
        self.written = Some(existing);
    }

    pub fn is_seeded(&self) -> bool {
        self.written.is_some()
    }

    /// The desired annotations, per Service carried by at least one peer.
    pub fn set_desired(&mut self, carriers: &BTreeMap<ServiceKey, BTreeSet<String>>) {
        self.desired = carriers
            .iter()
            .filter(|(_, peers)| !peers.is_empty())
            .map(|(service, peers)| (service.clone(), annotation_value(peers)))
            .collect();
    }

    /// The writes due now (see [`StatusBook::due`]).
    pub fn due(&mut self, now: Instant, min_interval: Duration) -> Vec<AnnotationWrite> {
        let Some(written) = self.written.as_mut() else {
            return Vec::new();
        };
        let services: BTreeSet<ServiceKey> =
            written.keys().chain(self.desired.keys()).cloned().collect();
        let mut writes = Vec::new();
        for service in services {
            let want = self.desired.get(&service);
            if written.get(&service) == want {
                continue;
            }
            if self
                .last_write
                .get(&service)
                .is_some_and(|at| now.saturating_duration_since(*at) < min_interval)
            {
                continue;
            }
            self.last_write.insert(service.clone(), now);
            match want {
                Some(value) => written.insert(service.clone(), value.clone()),
                None => written.remove(&service),
            };
            writes.push(AnnotationWrite {
                service,
                value: want.cloned(),
            });
        }
        self.last_write
            .retain(|_, at| now.saturating_duration_since(*at) < min_interval);
        writes
    }

    /// A write failed: the Service's annotation is unknown and written again when due.
    pub fn failed(&mut self, service: &ServiceKey) {
        if let Some(written) = self.written.as_mut() {
            // A value no desired state has: the next pass rewrites (or removes) it.
            written.insert(service.clone(), String::from("\u{0}unknown"));
        }
    }

    /// The Service no longer exists: nothing to write.
    pub fn gone(&mut self, service: &ServiceKey) {
        if let Some(written) = self.written.as_mut() {
            written.remove(service);
        }
        self.desired.remove(service);
    }

    /// Removals of every annotation this node holds (shutdown).
    pub fn remove_all(&mut self) -> Vec<AnnotationWrite> {
        self.desired.clear();
        self.written
            .take()
            .unwrap_or_default()
            .into_keys()
            .map(|service| AnnotationWrite {
                service,
                value: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
