//! BGPPeer status entries of deleted Nodes: which to remove, when, and the JSON Patch that
//! removes them. Pure (time passed in); the leader's task in [`watch`] feeds it the Node and
//! BGPPeer caches and sends the patches.
//!
//! Every speaker applies its own entries in each BGPPeer's `status.sessions` and
//! `status.bfdSessions` and gives them up on SIGTERM. A speaker killed without SIGTERM on a
//! node that is then deleted for good leaves its entries behind, and their owner never comes
//! back; under server-side apply another field manager cannot remove them either. The leader
//! controller, which watches Nodes anyway, removes such entries with a JSON Patch (RFC 6902)
//! of the status subresource.
//!
//! - **What** ([`PruneBook::due`]): an entry whose `node` has had no Node object for at
//!   least [`GRACE`], as seen in complete lists. Never the entry of a Node that exists, even
//!   if its speaker is down: that entry is real information (its state says the session is
//!   not being kept up).
//! - **Why the grace**: BGPPeers and Nodes are two watches; a new node's entry can be seen
//!   before its Node, a Node can be deleted and created again, and a cache may lag behind.
//!   An absence that lasts [`GRACE`] is not one of those.
//! - **Who**: the leader only (one writer; leader election closes the write gate on loss).
//!   Each patch still `test`s every entry it removes (index, node, last transition time), so
//!   a list that changed since it was read (a speaker that came back and rewrote its entry)
//!   makes the whole patch fail (422), harmlessly; the next check reads the list again.
//! - **When**: every [`CHECK`], at most one patch per BGPPeer per [`RETRY`].

pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use herald_crds::api::BGPPeer;
use serde_json::{Value, json};

/// How long a node must be without a Node object before its entries are removed.
pub const GRACE: Duration = Duration::from_secs(30);
/// How often the entries are checked.
pub const CHECK: Duration = Duration::from_secs(5);
/// Shortest time between two patches of one BGPPeer (a patch that lost a race is tried
/// again with the list as the watch shows it then).
pub const RETRY: Duration = Duration::from_secs(30);

/// The per-node lists of a BGPPeer's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusList {
    /// `status.sessions`: one BGP session per node.
    Sessions,
    /// `status.bfdSessions`: one BFD session per node.
    BfdSessions,
}

impl StatusList {
    /// The field name under `status`.
    pub fn field(self) -> &'static str {
        match self {
            StatusList::Sessions => "sessions",
            StatusList::BfdSessions => "bfdSessions",
        }
    }
}

impl fmt::Display for StatusList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// What pruning needs from the watches: the Node names and every BGPPeer's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Names of every Node object (a complete list).
    pub nodes: BTreeSet<String>,
    pub peers: Vec<PeerEntries>,
}

/// The status entries of one BGPPeer, each list in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerEntries {
    pub peer: String,
    /// `status.sessions`, in list order.
    pub sessions: Vec<EntryView>,
    /// `status.bfdSessions`, in list order.
    pub bfd_sessions: Vec<EntryView>,
}

impl PeerEntries {
    fn lists(&self) -> [(StatusList, &[EntryView]); 2] {
        [
            (StatusList::Sessions, &self.sessions),
            (StatusList::BfdSessions, &self.bfd_sessions),
        ]
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.bfd_sessions.is_empty()
    }
}

/// One entry of a status list, as much of it as a patch `test`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub node: String,
    /// `lastTransitionTime` exactly as the speakers write it (BGP sessions only).
    pub last_transition_time: Option<Value>,
}

impl ClusterView {
    /// The view of the caches. Without any status entry (no BGP in use) there is nothing to
    /// prune and the Node names are not copied.
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
        peers: impl IntoIterator<Item = &'a BGPPeer>,
    ) -> Self {
        let peers: Vec<PeerEntries> = peers.into_iter().filter_map(peer_entries).collect();
        if peers.iter().all(PeerEntries::is_empty) {
            return Self::default();
        }
        Self {
            nodes: nodes.into_iter().map(str::to_owned).collect(),
            peers,
        }
    }
}

fn peer_entries(peer: &BGPPeer) -> Option<PeerEntries> {
    let status = peer.status.as_ref()?;
    let sessions = status.sessions.iter().map(|entry| EntryView {
        node: entry.node.clone(),
        last_transition_time: entry
            .last_transition_time
            .as_ref()
            .and_then(|time| serde_json::to_value(time).ok()),
    });
    let bfd_sessions = status.bfd_sessions.iter().map(|entry| EntryView {
        node: entry.node.clone(),
        last_transition_time: None,
    });
    Some(PeerEntries {
        peer: peer.metadata.name.clone()?,
        sessions: sessions.collect(),
        bfd_sessions: bfd_sessions.collect(),
    })
}

/// One patch: entries of one BGPPeer to remove, by list and index, highest index first
/// within a list (so that each removal leaves the indices of the next ones in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub peer: String,
    pub entries: Vec<(StatusList, usize, EntryView)>,
}

impl Prune {
    /// The nodes whose entries this patch removes (each once).
    pub fn nodes(&self) -> Vec<String> {
        let nodes: BTreeSet<&str> = self
            .entries
            .iter()
            .map(|(_, _, entry)| entry.node.as_str())
            .collect();
        nodes.into_iter().map(str::to_owned).collect()
    }
}

/// The JSON Patch (RFC 6902) of a [`Prune`]: per entry, `test` its node and its last
/// transition time at its index, then `remove` it. A patch is applied whole or not at all
/// (RFC 6902 §5), so if the list changed since it was read nothing is removed.
pub fn patch_operations(prune: &Prune) -> Value {
    let mut ops = Vec::new();
    for (list, index, entry) in &prune.entries {
        let path = format!("/status/{list}/{index}");
        ops.push(json!({"op": "test", "path": format!("{path}/node"), "value": entry.node}));
        if let Some(time) = &entry.last_transition_time {
            ops.push(
                json!({"op": "test", "path": format!("{path}/lastTransitionTime"), "value": time}),
            );
        }
        ops.push(json!({"op": "remove", "path": path}));
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
    /// due: one per BGPPeer with entries of nodes absent for at least [`GRACE`], unless that
    /// BGPPeer was patched less than [`RETRY`] ago.
    pub fn due(&mut self, view: &ClusterView, now: Instant) -> Vec<Prune> {
        let named: BTreeSet<&str> = view
            .peers
            .iter()
            .flat_map(|peer| peer.sessions.iter().chain(&peer.bfd_sessions))
            .map(|entry| entry.node.as_str())
            .collect();
        self.absent_since
            .retain(|node, _| named.contains(node.as_str()) && !view.nodes.contains(node));
        for node in named {
            if !view.nodes.contains(node) {
                self.absent_since.entry(node.to_owned()).or_insert(now);
            }
        }
        self.last_patch
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY);
        let mut due = Vec::new();
        for peer in &view.peers {
            let mut entries = Vec::new();
            for (list, list_entries) in peer.lists() {
                let expired = list_entries.iter().enumerate().filter(|(_, entry)| {
                    self.absent_since
                        .get(&entry.node)
                        .is_some_and(|since| now.saturating_duration_since(*since) >= GRACE)
                });
                let mut found: Vec<_> = expired
                    .map(|(index, entry)| (list, index, entry.clone()))
                    .collect();
                found.reverse();
                entries.extend(found);
            }
            if entries.is_empty() || self.last_patch.contains_key(&peer.peer) {
                continue;
            }
            self.last_patch.insert(peer.peer.clone(), now);
            due.push(Prune {
                peer: peer.peer.clone(),
                entries,
            });
        }
        due
    }
}
