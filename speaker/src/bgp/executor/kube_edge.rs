//! The BGP executor's Kubernetes edge: password Secrets (from watches, [`super::secrets`]),
//! listing what an earlier run wrote, and writing BGPPeer status entries and Service
//! annotations.
//!
//! I/O only, no decisions. Writes are [`ApiWrite`]s of the speaker's one queued writer
//! ([`crate::api_writer`]), which coalesces them per object, retries them while the API is
//! unavailable and bounds each attempt; their outcomes go back to the executor, whose books
//! ([`super::report`]) decide about rewrites. Nothing on the announcing path waits for the
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
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use herald_crds::api::BGPPeer;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use super::report::{AnnotationWrite, StatusWrite};
use super::secrets::SecretWatches;
use crate::api_writer::{
    ApiAccess, ApiWrite, ApiWriter, Attempt, WriteWith, patch_service_annotation,
};
use crate::model::{SecretKeyRef, ServiceKey};

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

/// What the reads need and the handle of the shared writer.
pub struct KubeEdge {
    client: Client,
    namespace: String,
    node: String,
    annotation_key: String,
    writer: ApiWriter,
    context: Arc<WriteContext>,
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

impl KubeEdge {
    /// BGPPeers live in `namespace` (the install namespace); writes go through the shared
    /// writer and their outcomes to `outcomes`.
    pub fn start(
        api: ApiAccess,
        namespace: &str,
        node: &str,
        annotation_key: String,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> Self {
        let ApiAccess { client, writer } = api;
        let context = Arc::new(WriteContext {
            peers: Api::namespaced(client.clone(), namespace),
            client: client.clone(),
            namespace: namespace.to_string(),
            manager: field_manager(node),
            annotation_key: annotation_key.clone(),
            outcomes,
        });
        Self {
            secrets: SecretWatches::new(client.clone()),
            client,
            namespace: namespace.to_string(),
            node: node.to_string(),
            annotation_key,
            writer,
            context,
        }
    }

    /// This node's Service annotation key.
    pub fn annotation_key(&self) -> &str {
        &self.annotation_key
    }

    /// Queues a write (never waits).
    pub fn send(&self, request: Request) {
        self.writer.send(BgpWrite {
            request,
            context: Arc::clone(&self.context),
        });
    }

    /// Waits (at most `timeout`) until every queued write is done; returns whether it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.writer.flush(timeout).await
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

/// What every write needs.
struct WriteContext {
    client: Client,
    peers: Api<BGPPeer>,
    namespace: String,
    /// This node's field manager.
    manager: String,
    annotation_key: String,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// One [`Request`] as a write of the shared [`ApiWriter`].
type BgpWrite = WriteWith<Request, WriteContext>;

impl ApiWrite for BgpWrite {
    fn key(&self) -> Option<String> {
        let namespace = &self.context.namespace;
        Some(match &self.request {
            Request::Status(StatusWrite::Set { peer, .. } | StatusWrite::Remove { peer }) => {
                format!("bgppeer-status/{namespace}/{peer}/{}", self.context.manager)
            }
            Request::Annotation(write) => {
                format!(
                    "annotation/{}/{}",
                    write.service, self.context.annotation_key
                )
            }
        })
    }

    fn perform(&self) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let context = &self.context;
            let outcome = match &self.request {
                Request::Status(write) => {
                    let result = apply_status(context, write).await;
                    let peer = match write {
                        StatusWrite::Set { peer, .. } | StatusWrite::Remove { peer } => peer,
                    };
                    if let unavailable @ Attempt::Unavailable(_) = Attempt::of(&result) {
                        return unavailable;
                    }
                    let result = classify(result, || {
                        format!("status of BGPPeer {}/{peer}", context.namespace)
                    });
                    Outcome::Status {
                        peer: peer.clone(),
                        result,
                    }
                }
                Request::Annotation(write) => {
                    let result = patch_service_annotation(
                        &context.client,
                        &write.service,
                        &context.annotation_key,
                        write.value.as_deref(),
                    )
                    .await;
                    if let unavailable @ Attempt::Unavailable(_) = Attempt::of(&result) {
                        return unavailable;
                    }
                    let result = classify(result, || {
                        format!("annotation of Service {}", write.service)
                    });
                    Outcome::Annotation {
                        service: write.service.clone(),
                        result,
                    }
                }
            };
            // Nobody listens once the executor has shut down; its removals are still written.
            let _ = context.outcomes.send(outcome);
            Attempt::Done
        })
    }

    /// Dropped unwritten: the books write it again when due.
    fn abandoned(&self) {
        let outcome = match &self.request {
            Request::Status(StatusWrite::Set { peer, .. } | StatusWrite::Remove { peer }) => {
                Outcome::Status {
                    peer: peer.clone(),
                    result: WriteResult::Failed,
                }
            }
            Request::Annotation(write) => Outcome::Annotation {
                service: write.service.clone(),
                result: WriteResult::Failed,
            },
        };
        let _ = self.context.outcomes.send(outcome);
    }
}

/// Server-side applies this node's entry of one BGPPeer's status (or gives it up).
async fn apply_status(context: &WriteContext, write: &StatusWrite) -> Result<BGPPeer, kube::Error> {
    let namespace = &context.namespace;
    let (peer, status) = match write {
        // Without a BFD entry this manager gives up the one it owned, if any.
        StatusWrite::Set { peer, entry, bfd } => (
            peer,
            match bfd {
                Some(bfd) => json!({"sessions": [entry], "bfdSessions": [bfd]}),
                None => json!({"sessions": [entry]}),
            },
        ),
        // Applying no entry gives up the one this manager owned.
        StatusWrite::Remove { peer } => (peer, json!({})),
    };
    let body = json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": peer, "namespace": namespace},
        "status": status,
    });
    let params = PatchParams::apply(&context.manager).force();
    context
        .peers
        .patch_status(peer, &params, &Patch::Apply(&body))
        .await
}

/// A finished write (the API answered): how it ended, logged when refused.
fn classify<T>(result: Result<T, kube::Error>, what: impl FnOnce() -> String) -> WriteResult {
    match result {
        Ok(_) => WriteResult::Ok,
        Err(kube::Error::Api(status)) if status.code == 404 => WriteResult::Gone,
        Err(error) => {
            tracing::warn!(%error, what = %what(), "BGP API write refused; will retry");
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
