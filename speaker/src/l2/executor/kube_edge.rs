//! The layer-2 executor's Kubernetes edge: reading the current-announcer records, writing
//! them, and publishing Events and conditions on Services.
//!
//! I/O only, no decisions: a metadata-only watch of Services (annotations are all the
//! records need) that publishes [`Records`] on a `watch` channel once the first list is
//! complete, and each [`ApiRequest`] as a write of the speaker's one queued writer
//! ([`crate::api_writer`]: coalesced per object, Events bounded, retried while the API is
//! unavailable). Nothing here is awaited by the announcing path: the executor queues
//! requests and moves on, so a slow or unreachable API server never delays a failover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
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
use tokio::sync::watch;

use super::decide::RecordWrite;
use super::metrics::{L2Metrics, ResultLabel};
use super::record::{Records, record_key};
use crate::api_writer::{
    ApiAccess, ApiWrite, ApiWriter, Attempt, WriteWith, patch_service_annotation,
};
use crate::model::ServiceKey;
use crate::task::TaskHandle;

/// Field manager of the speaker's server-side applies.
pub const FIELD_MANAGER: &str = herald_crds::names::FIELD_MANAGER_SPEAKER;

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

/// The running watch (stopped when this is dropped) and the handle of the shared writer.
pub struct KubeEdge {
    writer: ApiWriter,
    context: Arc<WriteContext>,
    _watch: TaskHandle,
}

impl std::fmt::Debug for KubeEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEdge").finish_non_exhaustive()
    }
}

impl KubeEdge {
    /// Starts the Service metadata watch (records go to `records`, `None` until the first
    /// list is complete); writes go through the shared writer.
    pub fn start(
        api: ApiAccess,
        node: &str,
        records: watch::Sender<Option<Records>>,
        metrics: L2Metrics,
    ) -> Self {
        let ApiAccess { client, writer } = api;
        let (reader, store_writer) = reflector::store::<PartialObjectMeta<Service>>();
        let stream = watcher(
            Api::<PartialObjectMeta<Service>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(store_writer);
        let watch_reader = reader.clone();
        let watch_task = TaskHandle::spawn(async move {
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
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(node.to_owned()),
            },
        );
        KubeEdge {
            writer,
            context: Arc::new(WriteContext {
                client,
                recorder,
                services: reader,
                metrics,
                told_conditions_forbidden: AtomicBool::new(false),
            }),
            _watch: watch_task,
        }
    }

    /// Queues a request (never waits).
    pub fn send(&self, request: ApiRequest) {
        self.writer.send(L2Write {
            request,
            context: Arc::clone(&self.context),
        });
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

/// What every write needs.
struct WriteContext {
    client: Client,
    recorder: Recorder,
    services: Store<PartialObjectMeta<Service>>,
    metrics: L2Metrics,
    told_conditions_forbidden: AtomicBool,
}

/// One [`ApiRequest`] as a write of the shared [`ApiWriter`].
type L2Write = WriteWith<ApiRequest, WriteContext>;

impl ApiWrite for L2Write {
    /// A record per Service and address, a condition per Service and type; Events are
    /// never coalesced.
    fn key(&self) -> Option<String> {
        match &self.request {
            ApiRequest::Record(write) => {
                Some(format!("l2-record/{}/{}", write.service, write.address))
            }
            ApiRequest::Event { .. } => None,
            ApiRequest::Condition { service, type_, .. } => {
                Some(format!("condition/{service}/{type_}"))
            }
        }
    }

    fn perform(&self) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let context = &self.context;
            let is_condition = matches!(self.request, ApiRequest::Condition { .. });
            let result = perform(
                &context.client,
                &context.recorder,
                &context.services,
                self.request.clone(),
                &context.metrics,
            )
            .await;
            match (Attempt::of(&result), result) {
                (Attempt::Unavailable(reason), _) => {
                    tracing::debug!(request = ?self.request, %reason, "layer-2 API write: API unavailable; retrying");
                    return Attempt::Unavailable(reason);
                }
                (Attempt::Done, Ok(())) => {}
                // The chart leaves Service status to the controller; conflicts still reach
                // people through Events, metrics and logs.
                (Attempt::Done, Err(error)) if is_condition && is_forbidden(&error) => {
                    if !context
                        .told_conditions_forbidden
                        .swap(true, Ordering::Relaxed)
                    {
                        tracing::info!(
                            "not allowed to write Service status conditions; conflicts are reported by Events only"
                        );
                    }
                }
                (Attempt::Done, Err(error)) => {
                    tracing::warn!(%error, request = ?self.request, "layer-2 API write failed")
                }
            }
            Attempt::Done
        })
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
            let value = write.record.as_ref().map(|r| r.encode());
            let key = record_key(write.address);
            let result =
                patch_service_annotation(client, &write.service, &key, value.as_deref()).await;
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
