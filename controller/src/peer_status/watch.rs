//! The I/O edge of [`super`]: while this replica leads, watch the BGPPeers of the install
//! namespace, read the term's Node cache every [`CHECK`], and send the JSON Patches
//! [`PruneBook::due`] asks for to the status subresource. Every patch checks the write gate
//! first; a patch that lost a race (404/409/422) is left for the next check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use herald_crds::api::BGPPeer;
use herald_crds::names;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::{CHECK, ClusterView, Prune, PruneBook, patch_operations};
use crate::metrics::Metrics;
use crate::reconciler::WriteGate;

/// Longest wait for one patch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until the term ends (the caller drops the future): a BGPPeer watch of `namespace`
/// and the check loop over it and `nodes` (the term's complete Node cache).
pub async fn run(
    client: Client,
    namespace: String,
    nodes: Store<Node>,
    gate: Arc<WriteGate>,
    metrics: Arc<Metrics>,
) {
    let api: Api<BGPPeer> = Api::namespaced(client, &namespace);
    let (peers, writer) = reflector::store();
    let watch = reflector::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .modify(|peer| peer.metadata.managed_fields = None),
    )
    .for_each(|_| future::ready(()));
    let prune = async {
        if peers.wait_until_ready().await.is_err() {
            return;
        }
        let mut book = PruneBook::default();
        let mut tick = tokio::time::interval(CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let peer_objects = peers.state();
            let node_objects = nodes.state();
            let view = ClusterView::new(
                node_objects
                    .iter()
                    .filter_map(|node| node.metadata.name.as_deref()),
                peer_objects.iter().map(|peer| peer.as_ref()),
            );
            for prune in book.due(&view, Instant::now()) {
                if !gate.is_open() {
                    break;
                }
                if send(&api, &namespace, &prune).await {
                    metrics
                        .status_entries_pruned
                        .inc_by(prune.entries.len() as u64);
                    tracing::info!(peer = %prune.peer, nodes = ?prune.nodes(), "removed the BGPPeer status entries of deleted Nodes");
                }
            }
        }
    };
    tokio::select! {
        () = watch => tracing::warn!("the BGPPeer watch ended"),
        () = prune => {}
    }
}

/// Sends one guarded JSON Patch; true when the entries were removed.
async fn send(api: &Api<BGPPeer>, namespace: &str, prune: &Prune) -> bool {
    let params = PatchParams {
        field_manager: Some(names::FIELD_MANAGER_CONTROLLER.to_owned()),
        ..PatchParams::default()
    };
    // kube's `Patch::Json` holds a `json_patch::Patch`, deserialized from the operations.
    let patch = match serde_json::from_value(patch_operations(prune)) {
        Ok(patch) => patch,
        Err(error) => {
            tracing::error!(%error, "cannot build the JSON Patch removing status entries");
            return false;
        }
    };
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        api.patch_status(&prune.peer, &params, &Patch::Json::<()>(patch)),
    )
    .await;
    let peer = format!("{namespace}/{}", prune.peer);
    match sent {
        Ok(Ok(_)) => true,
        // 422: a `test` failed (or an index is out of range); 409: the write conflicted; 404:
        // the BGPPeer is gone.
        Ok(Err(kube::Error::Api(status))) if matches!(status.code, 404 | 409 | 422) => {
            tracing::debug!(code = status.code, message = %status.message, %peer, "BGPPeer status changed before the entries of deleted Nodes were removed; checking again later");
            false
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, %peer, "removing BGPPeer status entries of deleted Nodes failed; will retry");
            false
        }
        Err(_) => {
            tracing::warn!(%peer, "removing BGPPeer status entries of deleted Nodes timed out; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{EntryView, StatusList};
    use super::*;

    #[test]
    fn the_removal_of_entries_of_deleted_nodes_is_a_json_patch_kube_accepts() {
        let prune = Prune {
            peer: "router".into(),
            entries: vec![(
                StatusList::Sessions,
                1,
                EntryView {
                    node: "gone".into(),
                    last_transition_time: Some(json!("2026-01-02T03:04:05Z")),
                },
            )],
        };
        let patch: Patch<()> = Patch::Json(
            serde_json::from_value(patch_operations(&prune)).expect("a valid JSON Patch"),
        );
        let Patch::Json(ops) = &patch else {
            panic!("a JSON Patch: {patch:?}");
        };
        let ops = serde_json::to_value(ops).expect("serializes");
        assert_eq!(ops, patch_operations(&prune));
    }
}
