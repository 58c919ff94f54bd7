//! Status entries of deleted Nodes: which to remove from the BGPPeers' status, by whom, when,
//! and the JSON Patch that removes them. Pure (time passed in).
//!
//! Every speaker applies its own entry in each BGPPeer's `status.sessions` and gives it up on
//! SIGTERM ([`super::report`]). A speaker killed without SIGTERM on a node that is then
//! deleted for good leaves its entry behind, and its owner never comes back to remove it;
//! under server-side apply another field manager cannot remove it either. So the speakers
//! prune such entries with a JSON Patch on the status subresource ([`patch_operations`],
//! sent by [`super::kube_edge`]).
//!
//! - **What** ([`PruneBook::due`]): an entry whose `node` has had no Node object for at
//!   least [`GRACE`], as seen in complete lists (the runtime hands the executor its watch
//!   caches only after the first lists completed). Never the entry of a Node that exists,
//!   even if its speaker is down: that entry is real information (its state and last
//!   transition time say the session is not up).
//! - **Why the grace**: BGPPeers and Nodes are two watches; a new node's entry can be seen
//!   before its Node, a Node can be deleted and created again, and a cache may lag behind.
//!   An absence that lasts [`GRACE`] is not one of those.
//! - **Who** ([`is_pruner`]): only the speaker first by name among the live speakers
//!   (membership) whose Node exists, so N speakers do not stampede the API server. Should
//!   two speakers both think they are first (membership not running sees only itself, or
//!   views differ for a moment), each patch `test`s every entry it removes: its index, its
//!   node and its last transition time. The second patch finds the list changed and fails
//!   (422), harmlessly; the next check reads the list again.
//! - **When**: on the executor's background task every [`CHECK`], at most one patch per
//!   BGPPeer per [`RETRY`]; never on the announcing path.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald_crds::api::BGPPeer;
use serde_json::{Value, json};

use crate::runtime::watches::Snapshot;

/// How long a node must be without a Node object before its entries are removed.
pub const GRACE: Duration = Duration::from_secs(30);
/// How often the entries are checked.
pub const CHECK: Duration = Duration::from_secs(5);
/// Shortest time between two patches of one BGPPeer (a patch that lost a race is tried
/// again with the list as the watch shows it then).
pub const RETRY: Duration = Duration::from_secs(30);

/// What pruning needs from the watches: the Node names, the live speakers and every
/// BGPPeer's status entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Names of every Node object (a complete list).
    pub nodes: BTreeSet<String>,
    /// Speakers the membership protocol sees alive.
    pub live_speakers: BTreeSet<String>,
    pub peers: Vec<PeerEntries>,
}

/// The status entries of one BGPPeer, in list order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerEntries {
    pub peer: String,
    pub entries: Vec<EntryView>,
}

/// One entry of `status.sessions`, as much of it as a patch `test`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub node: String,
    /// `lastTransitionTime` exactly as the speakers write it.
    pub last_transition_time: Option<Value>,
}

impl ClusterView {
    /// The view of a snapshot with the live speakers. Without any status entry (no BGP in
    /// use) there is nothing to prune and the Node names are not copied: this runs on every
    /// reconcile pass.
    pub fn new(snapshot: &Snapshot, live_speakers: &BTreeSet<String>) -> Self {
        let peers: Vec<PeerEntries> = snapshot.peers.iter().filter_map(peer_entries).collect();
        if peers.iter().all(|peer| peer.entries.is_empty()) {
            return Self::default();
        }
        Self {
            nodes: snapshot
                .nodes
                .iter()
                .filter_map(|node| node.metadata.name.clone())
                .collect(),
            live_speakers: live_speakers.clone(),
            peers,
        }
    }
}

fn peer_entries(peer: &BGPPeer) -> Option<PeerEntries> {
    let entries = peer
        .status
        .as_ref()?
        .sessions
        .iter()
        .map(|entry| EntryView {
            node: entry.node.clone(),
            last_transition_time: entry
                .last_transition_time
                .as_ref()
                .and_then(|time| serde_json::to_value(time).ok()),
        });
    Some(PeerEntries {
        peer: peer.metadata.name.clone()?,
        entries: entries.collect(),
    })
}

/// Whether `this_node` is the pruner: first by name among the live speakers whose Node
/// exists (this node counts as live, as for the planner).
pub fn is_pruner(this_node: &str, nodes: &BTreeSet<String>, live: &BTreeSet<String>) -> bool {
    let first = live
        .iter()
        .map(String::as_str)
        .chain([this_node])
        .filter(|node| nodes.contains(*node))
        .min();
    first == Some(this_node)
}

/// One patch: entries of one BGPPeer to remove, by index, highest index first (so that each
/// removal leaves the indices of the next ones in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub peer: String,
    pub entries: Vec<(usize, EntryView)>,
}

impl Prune {
    /// The nodes whose entries this patch removes.
    pub fn nodes(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(_, entry)| entry.node.clone())
            .collect()
    }
}

/// The JSON Patch (RFC 6902) of a [`Prune`]: per entry, `test` its node and its last
/// transition time at its index, then `remove` it. A patch is applied whole or not at all,
/// so if the list changed since it was read (an entry removed by another speaker, the
/// entry rewritten by a speaker that came back), nothing is removed.
pub fn patch_operations(prune: &Prune) -> Value {
    let mut ops = Vec::new();
    for (index, entry) in &prune.entries {
        ops.push(json!({"op": "test", "path": format!("/status/sessions/{index}/node"), "value": entry.node}));
        if let Some(time) = &entry.last_transition_time {
            ops.push(json!({"op": "test", "path": format!("/status/sessions/{index}/lastTransitionTime"), "value": time}));
        }
        ops.push(json!({"op": "remove", "path": format!("/status/sessions/{index}")}));
    }
    Value::Array(ops)
}

/// Since when each node named by an entry has had no Node object, and when each BGPPeer
/// was last patched.
#[derive(Debug, Clone, Default)]
pub struct PruneBook {
    absent_since: BTreeMap<String, Instant>,
    last_patch: BTreeMap<String, Instant>,
}

impl PruneBook {
    /// Notes which nodes named by entries have no Node object now, and returns the patches
    /// due from `this_node`: none unless it is the pruner ([`is_pruner`]); otherwise one per
    /// BGPPeer with entries of nodes absent for at least [`GRACE`], unless that BGPPeer was
    /// patched less than [`RETRY`] ago. Absences are noted by every speaker, so one that
    /// becomes the pruner (the previous one died) needs no grace of its own.
    pub fn due(&mut self, this_node: &str, view: &ClusterView, now: Instant) -> Vec<Prune> {
        let named: BTreeSet<&str> = view
            .peers
            .iter()
            .flat_map(|peer| &peer.entries)
            .map(|entry| entry.node.as_str())
            .collect();
        self.absent_since
            .retain(|node, _| named.contains(node.as_str()) && !view.nodes.contains(node));
        for node in named {
            if !view.nodes.contains(node) {
                self.absent_since.entry(node.to_string()).or_insert(now);
            }
        }
        self.last_patch
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY);
        if !is_pruner(this_node, &view.nodes, &view.live_speakers) {
            return Vec::new();
        }
        let mut due = Vec::new();
        for peer in &view.peers {
            let mut entries: Vec<(usize, EntryView)> = peer
                .entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| {
                    self.absent_since
                        .get(&entry.node)
                        .is_some_and(|since| now.saturating_duration_since(*since) >= GRACE)
                })
                .map(|(index, entry)| (index, entry.clone()))
                .collect();
            if entries.is_empty() || self.last_patch.contains_key(&peer.peer) {
                continue;
            }
            entries.reverse();
            self.last_patch.insert(peer.peer.clone(), now);
            due.push(Prune {
                peer: peer.peer.clone(),
                entries,
            });
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use herald_crds::api::{BGPPeerStatus, BGPSessionState, BGPSessionStatus};
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn entry(node: &str) -> EntryView {
        EntryView {
            node: node.into(),
            last_transition_time: Some(json!("2026-01-02T03:04:05Z")),
        }
    }

    /// Nodes `nodes` exist, `live` speakers run; BGPPeer `peer` has entries of `entries`.
    fn view(nodes: &[&str], live: &[&str], peers: &[(&str, &[&str])]) -> ClusterView {
        ClusterView {
            nodes: names(nodes),
            live_speakers: names(live),
            peers: peers
                .iter()
                .map(|(peer, entries)| PeerEntries {
                    peer: peer.to_string(),
                    entries: entries.iter().map(|n| entry(n)).collect(),
                })
                .collect(),
        }
    }

    fn removed(due: &[Prune]) -> Vec<(String, Vec<(usize, String)>)> {
        due.iter()
            .map(|p| {
                let entries = p
                    .entries
                    .iter()
                    .map(|(i, e)| (*i, e.node.clone()))
                    .collect();
                (p.peer.clone(), entries)
            })
            .collect()
    }

    #[test]
    fn an_entry_of_a_deleted_node_is_pruned_after_the_grace_and_entries_of_existing_nodes_never() {
        let start = Instant::now();
        let mut book = PruneBook::default();
        // n2 is deleted; n3 exists but its speaker is down (not live).
        let view = view(
            &["n1", "n3"],
            &["n1"],
            &[("router", &["n1", "n2", "n3"]), ("other", &["n3"])],
        );
        assert!(
            book.due("n1", &view, start).is_empty(),
            "not before the grace"
        );
        assert!(book.due("n1", &view, start + GRACE / 2).is_empty());
        let due = book.due("n1", &view, start + GRACE);
        assert_eq!(removed(&due), [("router".into(), vec![(1, "n2".into())])]);
        assert_eq!(due[0].nodes(), ["n2"]);
    }

    #[test]
    fn a_node_that_comes_back_within_the_grace_starts_its_grace_again() {
        let start = Instant::now();
        let mut book = PruneBook::default();
        let gone = view(&["n1"], &["n1"], &[("router", &["n1", "n2"])]);
        let back = view(&["n1", "n2"], &["n1"], &[("router", &["n1", "n2"])]);
        assert!(book.due("n1", &gone, start).is_empty());
        assert!(book.due("n1", &back, start + GRACE / 2).is_empty());
        assert!(
            book.due("n1", &gone, start + GRACE).is_empty(),
            "absent again only now"
        );
        assert!(book.due("n1", &gone, start + GRACE + GRACE / 2).is_empty());
        assert_eq!(book.due("n1", &gone, start + GRACE * 2).len(), 1);
    }

    #[test]
    fn only_the_first_live_speaker_with_a_node_prunes_and_one_that_takes_over_needs_no_new_grace() {
        let start = Instant::now();
        let peers: &[(&str, &[&str])] = &[("router", &["a", "b", "c", "gone"])];
        // "0-dead" is live by membership but its Node is gone: it does not count.
        let both = view(&["a", "b", "c"], &["0-dead", "a", "b"], peers);
        let mut a = PruneBook::default();
        let mut b = PruneBook::default();
        for at in [start, start + GRACE] {
            assert!(b.due("b", &both, at).is_empty(), "b is not first");
        }
        assert_eq!(
            a.due("a", &both, start + GRACE).len(),
            0,
            "a: grace not over"
        );
        let a_died = view(&["a", "b", "c"], &["b"], peers);
        let due = b.due("b", &a_died, start + GRACE + CHECK);
        assert_eq!(removed(&due), [("router".into(), vec![(3, "gone".into())])]);
        assert!(is_pruner("a", &names(&["a", "b"]), &BTreeSet::new()));
        assert!(!is_pruner("b", &names(&["a", "b"]), &names(&["a"])));
        assert!(
            !is_pruner("x", &names(&["a"]), &names(&["x"])),
            "a speaker whose own Node is gone does not prune"
        );
    }

    #[test]
    fn without_membership_every_speaker_prunes_and_the_patches_guard_each_removal() {
        let start = Instant::now();
        let view = view(&["a", "b"], &[], &[("router", &["gone-1", "a", "gone-2"])]);
        let mut a = PruneBook::default();
        let mut b = PruneBook::default();
        a.due("a", &view, start);
        b.due("b", &view, start);
        let from_a = a.due("a", &view, start + GRACE);
        assert_eq!(from_a, b.due("b", &view, start + GRACE));
        assert_eq!(
            removed(&from_a),
            [(
                "router".into(),
                vec![(2, "gone-2".into()), (0, "gone-1".into())]
            )]
        );
        assert_eq!(
            patch_operations(&from_a[0]),
            json!([
                {"op": "test", "path": "/status/sessions/2/node", "value": "gone-2"},
                {"op": "test", "path": "/status/sessions/2/lastTransitionTime", "value": "2026-01-02T03:04:05Z"},
                {"op": "remove", "path": "/status/sessions/2"},
                {"op": "test", "path": "/status/sessions/0/node", "value": "gone-1"},
                {"op": "test", "path": "/status/sessions/0/lastTransitionTime", "value": "2026-01-02T03:04:05Z"},
                {"op": "remove", "path": "/status/sessions/0"},
            ])
        );
    }

    #[test]
    fn a_bgppeer_is_patched_at_most_once_per_retry_interval() {
        let start = Instant::now();
        let mut book = PruneBook::default();
        let stale = view(&["n1"], &["n1"], &[("router", &["n1", "n2"])]);
        book.due("n1", &stale, start);
        assert_eq!(book.due("n1", &stale, start + GRACE).len(), 1);
        // The patch lost a race: the watch still shows the entry.
        assert!(book.due("n1", &stale, start + GRACE + CHECK).is_empty());
        assert_eq!(book.due("n1", &stale, start + GRACE + RETRY).len(), 1);
        // The entry is gone: nothing more, and nothing remembered.
        let clean = view(&["n1"], &["n1"], &[("router", &["n1"])]);
        assert!(book.due("n1", &clean, start + GRACE * 4).is_empty());
        assert!(book.absent_since.is_empty() && book.last_patch.is_empty());
    }

    #[test]
    fn the_view_takes_node_names_and_entries_as_the_speakers_wrote_them() {
        let node = |name: &str| Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let time = Timestamp::from_second(1_767_323_045).expect("time");
        let spec = || {
            serde_json::from_value(
                json!({"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.1"}),
            )
            .expect("spec")
        };
        let mut peer = BGPPeer::new("router", spec());
        peer.status = Some(BGPPeerStatus {
            sessions: vec![BGPSessionStatus {
                node: "n2".into(),
                state: BGPSessionState::Established,
                last_transition_time: Some(Time(time)),
                last_error: None,
                advertised_prefixes: Some(1),
            }],
            ..Default::default()
        });
        let without_status = BGPPeer::new("new", spec());
        let snapshot = Snapshot {
            nodes: vec![node("n1")],
            peers: vec![peer, without_status],
            ..Default::default()
        };
        let view = ClusterView::new(&snapshot, &names(&["n1"]));
        assert_eq!(view.nodes, names(&["n1"]));
        assert_eq!(
            view.peers,
            [PeerEntries {
                peer: "router".into(),
                entries: vec![EntryView {
                    node: "n2".into(),
                    last_transition_time: Some(json!("2026-01-02T03:04:05Z")),
                }],
            }]
        );
        // No status entry anywhere (BGP not in use): nothing is copied.
        let unused = Snapshot {
            nodes: vec![node("n1")],
            peers: vec![BGPPeer::new("new", spec())],
            ..Default::default()
        };
        assert_eq!(
            ClusterView::new(&unused, &names(&["n1"])),
            ClusterView::default()
        );
    }
}
