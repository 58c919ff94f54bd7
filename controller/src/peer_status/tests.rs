//! Tests of the pruning decisions (moved with them from the speaker, where a "first live
//! speaker by name" election chose the pruner; the leader controller is the one pruner now).

use herald_crds::api::{BFDSessionStatus, BGPPeerStatus, BGPSessionState, BGPSessionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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

/// Nodes `nodes` exist; each BGPPeer `peer` has session entries of `entries`.
fn view(nodes: &[&str], peers: &[(&str, &[&str])]) -> ClusterView {
    ClusterView {
        nodes: names(nodes),
        peers: peers
            .iter()
            .map(|(peer, entries)| PeerEntries {
                peer: peer.to_string(),
                sessions: entries.iter().map(|n| entry(n)).collect(),
                bfd_sessions: Vec::new(),
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
                .map(|(_, i, e)| (*i, e.node.clone()))
                .collect();
            (p.peer.clone(), entries)
        })
        .collect()
}

#[test]
fn an_entry_of_a_deleted_node_is_pruned_after_the_grace_and_entries_of_existing_nodes_never() {
    let start = Instant::now();
    let mut book = PruneBook::default();
    // n2 is deleted; n3 exists but its speaker is down.
    let view = view(
        &["n1", "n3"],
        &[("router", &["n1", "n2", "n3"]), ("other", &["n3"])],
    );
    assert!(book.due(&view, start).is_empty(), "not before the grace");
    assert!(book.due(&view, start + GRACE / 2).is_empty());
    let due = book.due(&view, start + GRACE);
    assert_eq!(removed(&due), [("router".into(), vec![(1, "n2".into())])]);
    assert_eq!(due[0].nodes(), ["n2"]);
}

#[test]
fn a_node_that_comes_back_within_the_grace_starts_its_grace_again() {
    let start = Instant::now();
    let mut book = PruneBook::default();
    let gone = view(&["n1"], &[("router", &["n1", "n2"])]);
    let back = view(&["n1", "n2"], &[("router", &["n1", "n2"])]);
    assert!(book.due(&gone, start).is_empty());
    assert!(book.due(&back, start + GRACE / 2).is_empty());
    assert!(
        book.due(&gone, start + GRACE).is_empty(),
        "absent again only now"
    );
    assert!(book.due(&gone, start + GRACE + GRACE / 2).is_empty());
    assert_eq!(book.due(&gone, start + GRACE * 2).len(), 1);
}

#[test]
fn every_entry_of_a_deleted_node_goes_in_one_guarded_patch_highest_index_first() {
    let start = Instant::now();
    let mut view = view(&["a", "b"], &[("router", &["gone-1", "a", "gone-2"])]);
    view.peers[0].bfd_sessions = vec![
        EntryView {
            node: "gone-2".into(),
            last_transition_time: None,
        },
        EntryView {
            node: "a".into(),
            last_transition_time: None,
        },
    ];
    let mut book = PruneBook::default();
    book.due(&view, start);
    let due = book.due(&view, start + GRACE);
    assert_eq!(
        removed(&due),
        [(
            "router".into(),
            vec![
                (2, "gone-2".into()),
                (0, "gone-1".into()),
                (0, "gone-2".into())
            ]
        )]
    );
    assert_eq!(due[0].nodes(), ["gone-1", "gone-2"]);
    assert_eq!(
        patch_operations(&due[0]),
        json!([
            {"op": "test", "path": "/status/sessions/2/node", "value": "gone-2"},
            {"op": "test", "path": "/status/sessions/2/lastTransitionTime", "value": "2026-01-02T03:04:05Z"},
            {"op": "remove", "path": "/status/sessions/2"},
            {"op": "test", "path": "/status/sessions/0/node", "value": "gone-1"},
            {"op": "test", "path": "/status/sessions/0/lastTransitionTime", "value": "2026-01-02T03:04:05Z"},
            {"op": "remove", "path": "/status/sessions/0"},
            {"op": "test", "path": "/status/bfdSessions/0/node", "value": "gone-2"},
            {"op": "remove", "path": "/status/bfdSessions/0"},
        ])
    );
}

#[test]
fn a_bgppeer_is_patched_at_most_once_per_retry_interval() {
    let start = Instant::now();
    let mut book = PruneBook::default();
    let stale = view(&["n1"], &[("router", &["n1", "n2"])]);
    book.due(&stale, start);
    assert_eq!(book.due(&stale, start + GRACE).len(), 1);
    // The patch lost a race: the watch still shows the entry.
    assert!(book.due(&stale, start + GRACE + CHECK).is_empty());
    assert_eq!(book.due(&stale, start + GRACE + RETRY).len(), 1);
    // The entry is gone: nothing more, and nothing remembered.
    let clean = view(&["n1"], &[("router", &["n1"])]);
    assert!(book.due(&clean, start + GRACE * 4).is_empty());
    assert!(book.absent_since.is_empty() && book.last_patch.is_empty());
}

#[test]
fn the_view_takes_node_names_and_entries_as_the_speakers_wrote_them() {
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
        bfd_sessions: vec![
            serde_json::from_value::<BFDSessionStatus>(json!({"node": "n2", "state": "up"}))
                .expect("bfd entry"),
        ],
    });
    let without_status = BGPPeer::new("new", spec());
    let view = ClusterView::new(["n1"], &[peer, without_status]);
    assert_eq!(view.nodes, names(&["n1"]));
    assert_eq!(
        view.peers,
        [PeerEntries {
            peer: "router".into(),
            sessions: vec![EntryView {
                node: "n2".into(),
                last_transition_time: Some(json!("2026-01-02T03:04:05Z")),
            }],
            bfd_sessions: vec![EntryView {
                node: "n2".into(),
                last_transition_time: None,
            }],
        }]
    );
    // No status entry anywhere (BGP not in use): nothing is copied.
    assert_eq!(
        ClusterView::new(["n1"], &[BGPPeer::new("new", spec())]),
        ClusterView::default()
    );
}
