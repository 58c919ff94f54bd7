//! The BGP executor's Kubernetes edge: password Secrets (from watches, [`super::secrets`]),
//! listing what an earlier run wrote, and writing BGPPeer status entries and Service
//! annotations.
//!
//! I/O only, no decisions. Writes are queued and performed one after another by a writer
//! task, each bounded in time; their outcomes go back to the executor, whose books
//! ([`super::report`]) decide about retries. Nothing on the announcing path waits for the
//! API server.
//!
//! Each node applies its BGPPeer status entry with its own field manager,
//! `herald-speaker/<node>`: `status.sessions` is a list map keyed by node, and under
//! server-side apply a manager owns exactly the entries it applied last — one shared
//! manager name would make every node's apply delete the other nodes' entries.
//!
//! For the same reason an apply cannot remove another node's entry: the entries of deleted
//! Nodes are removed by the leader controller with a guarded JSON Patch instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_crds::api::BGPPeer;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::report::{AnnotationWrite, StatusWrite};
use super::secrets::SecretWatches;
use crate::model::{SecretKeyRef, ServiceKey};

/// Longest one API request may take before it is given up (and retried later).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Page size when listing Services or BGPPeers.
const LIST_PAGE: u32 = 500;
/// Longest field manager name the API server accepts.
const FIELD_MANAGER_MAX: usize = 128;

/// The field manager of `node`'s status applies.
pub fn field_manager(node: &str) -> String {
    let mut name = format!("{}/{node}", herald_crds::names::FIELD_MANAGER_SPEAKER);
    // Node names are ASCII (DNS subdomains), so byte truncation keeps a valid string.
    name.truncate(FIELD_MANAGER_MAX);
    name
}

/// A queued write.
#[derive(Debug)]
pub enum Request {
    Status(StatusWrite),
    Annotation(AnnotationWrite),
    /// Answered once every earlier request is done.
    Flush(oneshot::Sender<()>),
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    /// The object does not exist (any more).
    Gone,
    Failed,
}

/// The outcome of one write, for the books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status {
        peer: String,
        result: WriteResult,
    },
    Annotation {
        service: ServiceKey,
        result: WriteResult,
    },
}

/// The writer task and what the reads need; the task stops when this is dropped.
pub struct KubeEdge {
    client: Client,
    namespace: String,
    node: String,
    annotation_key: String,
    requests: mpsc::UnboundedSender<Request>,
    writer: JoinHandle<()>,
    secrets: SecretWatches,
}

impl std::fmt::Debug for KubeEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEdge")
            .field("namespace", &self.namespace)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Drop for KubeEdge {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl KubeEdge {
    /// Starts the writer. BGPPeers live in `namespace` (the install namespace); outcomes
    /// of writes go to `outcomes`.
    pub fn start(
        client: Client,
        namespace: &str,
        node: &str,
        annotation_key: String,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(
            client.clone(),
            namespace.to_string(),
            node.to_string(),
            annotation_key.clone(),
            queue,
            outcomes,
        ));
        Self {
            secrets: SecretWatches::new(client.clone()),
            client,
            namespace: namespace.to_string(),
            node: node.to_string(),
            annotation_key,
            requests,
            writer,
        }
    }

    /// This node's Service annotation key.
    pub fn annotation_key(&self) -> &str {
        &self.annotation_key
    }

    /// Queues a write (never waits).
    pub fn send(&self, request: Request) {
        // Fails only when the writer has stopped, i.e. during shutdown.
        let _ = self.requests.send(request);
    }

    /// Waits (at most `timeout`) until every queued write is done; returns whether it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        self.send(Request::Flush(done));
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(())))
    }

    /// The TCP-MD5 password a BGPPeer's `passwordSecret` points at, from the Secret's
    /// watch (last-known-good, see [`super::secrets`]), or a sentence saying why it cannot
    /// be had.
    pub async fn read_password(&self, secret: &SecretKeyRef) -> Result<String, String> {
        self.secrets.password(secret).await
    }

    /// Stops watching the Secrets no peer names any more.
    pub fn retain_secrets(&self, named: &BTreeSet<&SecretKeyRef>) {
        self.secrets.retain(named);
    }

    /// Services carrying this node's annotation `key`, with its value (all namespaces).
    pub async fn existing_annotations(
        &self,
        key: &str,
    ) -> Result<BTreeMap<ServiceKey, String>, kube::Error> {
        let api: Api<Service> = Api::all(self.client.clone());
        let mut out = BTreeMap::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        // Bounded: a list of at most 10,000 pages of 500.
        for _ in 0..10_000 {
            let page = api.list_metadata(&params).await?;
            for service in &page.items {
                let value = service
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key));
                if let Some(value) = value {
                    out.insert(
                        ServiceKey::new(
                            service.metadata.namespace.clone().unwrap_or_default(),
                            service.metadata.name.clone().unwrap_or_default(),
                        ),
                        value.clone(),
                    );
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(out)
    }

    /// Names of the BGPPeers whose status holds an entry of this node.
    pub async fn existing_status_entries(&self) -> Result<Vec<String>, kube::Error> {
        let api: Api<BGPPeer> = Api::namespaced(self.client.clone(), &self.namespace);
        let peers = api.list(&ListParams::default()).await?;
        Ok(peers
            .items
            .iter()
            .filter(|peer| {
                peer.status
                    .as_ref()
                    .is_some_and(|s| s.sessions.iter().any(|e| e.node == self.node))
            })
            .filter_map(|peer| peer.metadata.name.clone())
            .collect())
    }
}

async fn write_loop(
    client: Client,
    namespace: String,
    node: String,
    annotation_key: String,
    mut queue: mpsc::UnboundedReceiver<Request>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let manager = field_manager(&node);
    let peers: Api<BGPPeer> = Api::namespaced(client.clone(), &namespace);
    while let Some(request) = queue.recv().await {
        let outcome = match request {
            Request::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Request::Status(write) => {
                let (peer, body) = match &write {
                    // Without a BFD entry this manager gives up the one it owned, if any.
                    StatusWrite::Set { peer, entry, bfd } => (
                        peer.clone(),
                        json!({
                            "apiVersion": "herald.dev/v1alpha1",
                            "kind": "BGPPeer",
                            "metadata": {"name": peer, "namespace": namespace},
                            "status": match bfd {
                                Some(bfd) => json!({"sessions": [entry], "bfdSessions": [bfd]}),
                                None => json!({"sessions": [entry]}),
                            },
                        }),
                    ),
                    // Applying no entry gives up the one this manager owned.
                    StatusWrite::Remove { peer } => (
                        peer.clone(),
                        json!({
                            "apiVersion": "herald.dev/v1alpha1",
                            "kind": "BGPPeer",
                            "metadata": {"name": peer, "namespace": namespace},
                            "status": {},
                        }),
                    ),
                };
                let params = PatchParams::apply(&manager).force();
                let result = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    peers.patch_status(&peer, &params, &Patch::Apply(&body)),
                )
                .await;
                let result = classify(result, || format!("status of BGPPeer {namespace}/{peer}"));
                Outcome::Status { peer, result }
            }
            Request::Annotation(write) => {
                let api: Api<Service> = Api::namespaced(client.clone(), &write.service.namespace);
                let patch = json!({"metadata": {"annotations": {&annotation_key: write.value}}});
                let result = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    api.patch(
                        &write.service.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    ),
                )
                .await;
                let result = classify(result, || {
                    format!("annotation of Service {}", write.service)
                });
                Outcome::Annotation {
                    service: write.service,
                    result,
                }
            }
        };
        // Nobody listens for outcomes once the executor shuts down; the writes queued then
        // (this node's removals) must still be performed, so only a closed queue ends the loop.
        let _ = outcomes.send(outcome);
    }
}

fn classify<T>(
    result: Result<Result<T, kube::Error>, tokio::time::error::Elapsed>,
    what: impl FnOnce() -> String,
) -> WriteResult {
    match result {
        Ok(Ok(_)) => WriteResult::Ok,
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => WriteResult::Gone,
        Ok(Err(error)) => {
            tracing::warn!(%error, what = %what(), "BGP API write failed; will retry");
            WriteResult::Failed
        }
        Err(_) => {
            tracing::warn!(what = %what(), "BGP API write timed out; will retry");
            WriteResult::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_applies_with_its_own_field_manager_within_the_length_limit() {
        assert_eq!(field_manager("n1"), "herald-speaker/n1");
        assert_ne!(field_manager("n1"), field_manager("n2"));
        assert_eq!(field_manager(&"a".repeat(300)).len(), 128);
    }
}
