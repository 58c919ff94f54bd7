//! The layer-2 executor's Kubernetes edge: reading the current-announcer records, writing
//! them, and publishing Events and conditions on Services.
//!
//! I/O only, no decisions: a metadata-only watch of Services (annotations are all the
//! records need) that publishes [`Records`] on a `watch` channel once the first list is
//! complete, and a writer task that performs [`ApiRequest`]s one after another. Nothing
//! here is awaited by the announcing path: the executor queues requests and moves on, so a
//! slow or unreachable API server never delays a failover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::decide::RecordWrite;
use super::metrics::{L2Metrics, ResultLabel};
use super::record::{Records, record_key};
use crate::model::ServiceKey;

/// Field manager of the speaker's server-side applies.
pub const FIELD_MANAGER: &str = herald_crds::names::FIELD_MANAGER_SPEAKER;
/// Longest one API request may take before it is given up (and retried later).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Something to write to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// Set or remove one record annotation.
    Record(RecordWrite),
    /// Publish an Event on the Service.
    Event {
        service: ServiceKey,
        warning: bool,
        reason: &'static str,
        note: String,
    },
    /// Server-side apply one condition in the Service's status.
    Condition {
        service: ServiceKey,
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: String,
    },
}

/// The running watch and writer; both stop when this is dropped.
#[derive(Debug)]
pub struct KubeEdge {
    requests: mpsc::UnboundedSender<ApiRequest>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeEdge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeEdge {
    /// Starts the Service metadata watch (records go to `records`, `None` until the first
    /// list is complete) and the writer.
    pub fn start(
        client: Client,
        node: &str,
        records: watch::Sender<Option<Records>>,
        metrics: L2Metrics,
    ) -> Self {
        let (reader, writer) = reflector::store::<PartialObjectMeta<Service>>();
        let stream = watcher(
            Api::<PartialObjectMeta<Service>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer);
        let watch_reader = reader.clone();
        let watch_task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut errors: u64 = 0;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(
                        watcher::Event::InitDone
                        | watcher::Event::Apply(_)
                        | watcher::Event::Delete(_),
                    ) => {
                        if watch_reader.wait_until_ready().await.is_ok() {
                            let current = records_of(&watch_reader);
                            records.send_if_modified(|old| {
                                let changed = old.as_ref() != Some(&current);
                                *old = Some(current);
                                changed
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            tracing::warn!(%error, errors, "watching Service annotations for layer-2 records failed; retrying");
                        }
                    }
                }
            }
        });
        let (requests, queue) = mpsc::unbounded_channel();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(node.to_owned()),
            },
        );
        let writer_task = tokio::spawn(write_loop(client, recorder, reader, queue, metrics));
        KubeEdge {
            requests,
            tasks: vec![watch_task, writer_task],
        }
    }

    /// Queues a request (never waits).
    pub fn send(&self, request: ApiRequest) {
        // Fails only when the writer has stopped, i.e. during shutdown.
        let _ = self.requests.send(request);
    }
}

fn records_of(store: &Store<PartialObjectMeta<Service>>) -> Records {
    let services: Vec<(ServiceKey, BTreeMap<String, String>)> = store
        .state()
        .iter()
        .filter_map(|service| {
            let annotations = service.metadata.annotations.as_ref()?;
            let ours: BTreeMap<String, String> = annotations
                .iter()
                .filter(|(key, _)| key.starts_with(super::record::RECORD_ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if ours.is_empty() {
                return None;
            }
            Some((
                ServiceKey::new(
                    service.metadata.namespace.clone().unwrap_or_default(),
                    service.metadata.name.clone().unwrap_or_default(),
                ),
                ours,
            ))
        })
        .collect();
    Records::from_annotations(services.iter().map(|(key, map)| (key.clone(), map)))
}

async fn write_loop(
    client: Client,
    recorder: Recorder,
    services: Store<PartialObjectMeta<Service>>,
    mut queue: mpsc::UnboundedReceiver<ApiRequest>,
    metrics: L2Metrics,
) {
    let services = Arc::new(services);
    let mut told_conditions_forbidden = false;
    while let Some(request) = queue.recv().await {
        let what = format!("{request:?}");
        let is_condition = matches!(request, ApiRequest::Condition { .. });
        let outcome = tokio::time::timeout(
            REQUEST_TIMEOUT,
            perform(&client, &recorder, &services, request, &metrics),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {}
            // The chart leaves Service status to the controller; conflicts still reach
            // people through Events, metrics and logs.
            Ok(Err(error)) if is_condition && is_forbidden(&error) => {
                if !told_conditions_forbidden {
                    told_conditions_forbidden = true;
                    tracing::info!(
                        "not allowed to write Service status conditions; conflicts are reported by Events only"
                    );
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, request = %what, "layer-2 API write failed"),
            Err(_) => tracing::warn!(request = %what, "layer-2 API write timed out"),
        }
    }
}

async fn perform(
    client: &Client,
    recorder: &Recorder,
    services: &Store<PartialObjectMeta<Service>>,
    request: ApiRequest,
    metrics: &L2Metrics,
) -> Result<(), kube::Error> {
    match request {
        ApiRequest::Record(write) => {
            let api: Api<Service> = Api::namespaced(client.clone(), &write.service.namespace);
            let value = write.record.as_ref().map(|r| r.encode());
            let patch = json!({"metadata": {"annotations": {record_key(write.address): value}}});
            let result = api
                .patch(
                    &write.service.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            let label = ResultLabel {
                result: if result.is_ok() { "ok" } else { "error" },
            };
            metrics.record_writes.get_or_create(&label).inc();
            match result {
                Ok(_) => {
                    tracing::debug!(service = %write.service, address = %write.address, record = ?value, "layer-2 record written");
                    Ok(())
                }
                Err(error) if is_not_found(&error) => Ok(()),
                Err(error) => Err(error),
            }
        }
        ApiRequest::Event {
            service,
            warning,
            reason,
            note,
        } => {
            let uid = services
                .get(&ObjectRef::new(&service.name).within(&service.namespace))
                .and_then(|s| s.metadata.uid.clone());
            let reference = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Service".to_owned()),
                name: Some(service.name.clone()),
                namespace: Some(service.namespace.clone()),
                uid,
                ..ObjectReference::default()
            };
            let event = Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: reason.to_owned(),
                note: Some(note),
                action: "Announce".to_owned(),
                secondary: None,
            };
            recorder.publish(&event, &reference).await
        }
        ApiRequest::Condition {
            service,
            type_,
            status,
            reason,
            message,
        } => {
            let api: Api<Service> = Api::namespaced(client.clone(), &service.namespace);
            let condition = Condition {
                type_: type_.to_owned(),
                status: if status { "True" } else { "False" }.to_owned(),
                reason: reason.to_owned(),
                message,
                last_transition_time: Time(Timestamp::now()),
                observed_generation: None,
            };
            let patch = json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service.name, "namespace": service.namespace},
                "status": {"conditions": [condition]},
            });
            match api
                .patch_status(
                    &service.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if is_not_found(&error) => Ok(()),
                Err(error) => Err(error),
            }
        }
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}
