//! One queued writer to the Kubernetes API for every executor.
//!
//! The executors never wait for the API server: they hand each write (a BGPPeer status
//! entry, a Service annotation, a layer-2 record, a condition, an Event) to the
//! [`ApiWriter`] and move on. One task performs the writes one after another:
//!
//! - [`queue`] (pure) decides the order: coalescing by object key, bounds (the oldest Event
//!   dropped and counted when full), the back-off while the API is unavailable;
//! - this module is the I/O shell: it runs each write with a deadline ([`REQUEST_TIMEOUT`]),
//!   feeds the outcome back to the queue, keeps receiving writes while one is in flight or
//!   while it waits, and answers [`ApiWriter::flush`] once everything queued before is done —
//!   which shutdown uses to drain within a deadline.
//!
//! What a write does is its own ([`ApiWrite`], implemented in each executor's `kube_edge`):
//! it performs the request and tells its owner how it ended; the writer only asks whether
//! the API was unavailable (retry) or the write is done (success or a final refusal).

pub mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};

use self::queue::{Next, Pushed, QueueLimits, Queued, Retried, WriteQueue};
pub use crate::metric_group::ResultLabel;
use crate::metric_group::metric_group;
use crate::task::TaskHandle;

/// Longest one API request may take before it counts as the API being unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How one attempt of a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Done: written, or refused for good (the write has told its owner).
    Done,
    /// The API is unavailable (timeout, connection error, 5xx, 429): try again later.
    Unavailable(String),
}

impl Attempt {
    /// Classifies a kube result: answers 5xx and 429, transport and credential errors are
    /// [`Attempt::Unavailable`]; anything else (success, an answer refusing the write, a
    /// request that cannot be built) is [`Attempt::Done`], so that one bad write never
    /// holds the queue up.
    pub fn of<T>(result: &Result<T, kube::Error>) -> Self {
        match result {
            Ok(_) => Attempt::Done,
            Err(kube::Error::Api(status)) if status.code < 500 && status.code != 429 => {
                Attempt::Done
            }
            Err(
                error @ (kube::Error::Api(_)
                | kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::ReadEvents(_)
                | kube::Error::Auth(_)),
            ) => Attempt::Unavailable(error.to_string()),
            Err(_) => Attempt::Done,
        }
    }
}

/// One write to the API, as an executor defines it.
pub trait ApiWrite: Send + Sync + std::fmt::Debug + 'static {
    /// The object it writes, for coalescing (the latest write for a key replaces an older
    /// queued one); `None` for an Event, which is always sent.
    fn key(&self) -> Option<String>;

    /// Performs the request once. On [`Attempt::Done`] the write has reported its outcome
    /// to its owner; on [`Attempt::Unavailable`] it is tried again later.
    fn perform(&self) -> BoxFuture<'_, Attempt>;

    /// The write will never be performed (dropped from a full queue, or left over when the
    /// writer stopped): tell the owner, who may write it again later. Not called for a
    /// write replaced by a newer one for its key.
    fn abandoned(&self) {}
}

/// Sets (or with `None` removes) one annotation of a Service with a merge patch.
pub async fn patch_service_annotation(
    client: &kube::Client,
    service: &crate::model::ServiceKey,
    key: &str,
    value: Option<&str>,
) -> Result<k8s_openapi::api::core::v1::Service, kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), &service.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(
        &service.name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
}

/// The usual shape of an [`ApiWrite`]: a request and what performing it needs (the client,
/// the owner's outcome channel, ...), shared by every write of one owner.
pub struct WriteWith<R, C> {
    pub request: R,
    pub context: Arc<C>,
}

impl<R: std::fmt::Debug, C> std::fmt::Debug for WriteWith<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.request.fmt(f)
    }
}

/// Label: what kind of queued write was dropped (`event`, `object`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

metric_group! {
    /// The writer's metrics (prefix `herald_speaker_api_writer_`).
    pub struct ApiWriterMetrics, prefix "api_writer" {
        /// Writes to the API server waiting to be sent
        queued: Gauge,
        /// Attempts to write to the API server, by result (done, unavailable)
        attempts: Family<ResultLabel, Counter>,
        /// Queued writes replaced by a newer write to the same object
        coalesced: Counter,
        /// Queued writes dropped because the queue was full (the oldest Events first), by kind
        dropped: Family<KindLabel, Counter>,
    }
}

/// What an executor needs to talk to the API: the client (reads, watches) and the shared
/// writer (every write).
#[derive(Clone)]
pub struct ApiAccess {
    pub client: kube::Client,
    pub writer: ApiWriter,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess").finish_non_exhaustive()
    }
}

enum Message {
    Write(Box<dyn ApiWrite>),
    Flush(oneshot::Sender<()>),
}

/// The handle every executor writes through. Clones share one writer task, which stops
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ApiWriter {
    messages: mpsc::UnboundedSender<Message>,
    _task: Arc<TaskHandle>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Write(write) => write.fmt(f),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl ApiWriter {
    /// Starts the writer task (needs a tokio runtime).
    pub fn start(limits: QueueLimits, metrics: ApiWriterMetrics) -> Self {
        let (messages, inbox) = mpsc::unbounded_channel();
        let task = TaskHandle::spawn(run(WriteQueue::new(limits), inbox, metrics));
        Self {
            messages,
            _task: Arc::new(task),
        }
    }

    /// Queues a write (never waits).
    pub fn send(&self, write: impl ApiWrite) {
        // Fails only when the task is gone, i.e. after shutdown.
        let _ = self.messages.send(Message::Write(Box::new(write)));
    }

    /// Waits (at most `timeout`) until every write queued before is done; returns whether
    /// it was. Writes that keep failing are retried until then.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.messages.send(Message::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(())))
    }
}

/// The writer task: queue, perform, retry, answer flushes.
async fn run(
    mut queue: WriteQueue<Box<dyn ApiWrite>>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
    metrics: ApiWriterMetrics,
) {
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    loop {
        metrics
            .queued
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        let next = queue.next(Instant::now());
        let wait_until = match next {
            Next::Ready(queued) => {
                open &= perform(queued, &mut queue, &mut inbox, &mut flushes, &metrics).await;
                continue;
            }
            Next::WaitUntil(at) => Some(at),
            Next::Empty => {
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
                if !open {
                    return;
                }
                None
            }
        };
        let sleep = async {
            match wait_until {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = inbox.recv(), if open => match message {
                Some(message) => accept(message, &mut queue, &mut flushes, &metrics),
                None => open = false,
            },
            () = sleep => {}
        }
    }
}

/// Performs one write while still accepting new ones; returns whether the inbox is open.
async fn perform(
    queued: Queued<Box<dyn ApiWrite>>,
    queue: &mut WriteQueue<Box<dyn ApiWrite>>,
    inbox: &mut mpsc::UnboundedReceiver<Message>,
    flushes: &mut Vec<oneshot::Sender<()>>,
    metrics: &ApiWriterMetrics,
) -> bool {
    let mut open = true;
    let outcome = {
        let attempt = tokio::time::timeout(REQUEST_TIMEOUT, queued.write.perform());
        let mut attempt = std::pin::pin!(attempt);
        loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                message = inbox.recv(), if open => match message {
                    Some(message) => accept(message, queue, flushes, metrics),
                    None => open = false,
                },
            }
        }
    };
    let outcome = outcome.unwrap_or_else(|_| Attempt::Unavailable("timed out".into()));
    let result = match outcome {
        Attempt::Done => {
            queue.succeeded();
            "done"
        }
        Attempt::Unavailable(reason) => {
            tracing::debug!(write = ?queued.write, %reason, "API unavailable; the write is retried");
            match queue.retry(queued, Instant::now()) {
                Retried::Requeued(_) => {}
                Retried::Superseded(_) => {
                    metrics.coalesced.inc();
                }
                Retried::DroppedOldest(dropped) => note_dropped(dropped.as_ref(), metrics),
            }
            "unavailable"
        }
    };
    metrics
        .attempts
        .get_or_create(&ResultLabel { result })
        .inc();
    open
}

fn accept(
    message: Message,
    queue: &mut WriteQueue<Box<dyn ApiWrite>>,
    flushes: &mut Vec<oneshot::Sender<()>>,
    metrics: &ApiWriterMetrics,
) {
    match message {
        Message::Flush(done) => flushes.push(done),
        Message::Write(write) => match queue.push(write.key(), write) {
            Pushed::Queued => {}
            Pushed::Replaced(_) => {
                metrics.coalesced.inc();
            }
            Pushed::DroppedOldest(dropped) => note_dropped(dropped.as_ref(), metrics),
        },
    }
}

fn note_dropped(write: &dyn ApiWrite, metrics: &ApiWriterMetrics) {
    let kind = if write.key().is_none() {
        "event"
    } else {
        "object"
    };
    metrics.dropped.get_or_create(&KindLabel { kind }).inc();
    tracing::warn!(
        ?write,
        "the API write queue is full; dropped the oldest {kind}"
    );
    write.abandoned();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A fake API: records what it was sent; unavailable while `down` is set.
    #[derive(Debug, Default)]
    struct FakeApi {
        down: AtomicBool,
        written: Mutex<Vec<String>>,
        abandoned: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct FakeWrite {
        api: Arc<FakeApi>,
        key: Option<&'static str>,
        value: &'static str,
    }

    impl ApiWrite for FakeWrite {
        fn key(&self) -> Option<String> {
            self.key.map(str::to_string)
        }

        fn perform(&self) -> BoxFuture<'_, Attempt> {
            Box::pin(async move {
                if self.api.down.load(Ordering::SeqCst) {
                    return Attempt::Unavailable("down".into());
                }
                self.api
                    .written
                    .lock()
                    .expect("lock")
                    .push(self.value.to_string());
                Attempt::Done
            })
        }

        fn abandoned(&self) {
            self.api
                .abandoned
                .lock()
                .expect("lock")
                .push(self.value.to_string());
        }
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            max_writes: 10,
            max_events: 2,
            retry_initial: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
        }
    }

    fn write(api: &Arc<FakeApi>, key: Option<&'static str>, value: &'static str) -> FakeWrite {
        FakeWrite {
            api: Arc::clone(api),
            key,
            value,
        }
    }

    fn written(api: &FakeApi) -> Vec<String> {
        api.written.lock().expect("lock").clone()
    }

    #[test]
    fn server_errors_and_throttling_are_retried_and_refusals_are_not() {
        let answer = |code: u16| -> Result<(), kube::Error> {
            Err(kube::Error::Api(Box::new(
                kube::core::Status::failure("no", "Test").with_code(code),
            )))
        };
        for code in [500, 503, 504, 429] {
            assert!(
                matches!(Attempt::of(&answer(code)), Attempt::Unavailable(_)),
                "{code}"
            );
        }
        for code in [400, 403, 404, 409, 422] {
            assert_eq!(Attempt::of(&answer(code)), Attempt::Done, "{code}");
        }
        assert_eq!(Attempt::of(&Ok::<(), kube::Error>(())), Attempt::Done);
        let unbuildable: Result<(), kube::Error> =
            Err(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert_eq!(Attempt::of(&unbuildable), Attempt::Done);
    }

    #[tokio::test]
    async fn writes_queued_while_the_api_is_down_are_sent_coalesced_once_it_answers() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let metrics = ApiWriterMetrics::default();
        let writer = ApiWriter::start(limits(), metrics.clone());
        writer.send(write(&api, Some("svc-a"), "a1"));
        writer.send(write(&api, None, "event1"));
        writer.send(write(&api, Some("svc-a"), "a2"));
        writer.send(write(&api, None, "event2"));
        writer.send(write(&api, None, "event3"));
        assert!(
            !writer.flush(Duration::from_millis(100)).await,
            "nothing can be written while the API is down"
        );
        assert!(written(&api).is_empty());
        api.down.store(false, Ordering::SeqCst);
        assert!(writer.flush(Duration::from_secs(10)).await);
        // a2 replaced a1 (still queued: a1 was being retried); event1 was the oldest Event
        // when the third arrived.
        assert_eq!(written(&api), ["a2", "event2", "event3"]);
        assert_eq!(*api.abandoned.lock().expect("lock"), ["event1"]);
        assert_eq!(
            metrics
                .dropped
                .get_or_create(&KindLabel { kind: "event" })
                .get(),
            1
        );
        assert_eq!(metrics.coalesced.get(), 1);
        assert!(
            metrics
                .attempts
                .get_or_create(&ResultLabel {
                    result: "unavailable"
                })
                .get()
                >= 1
        );
        assert_eq!(metrics.queued.get(), 0);
    }

    #[tokio::test]
    async fn a_flush_waits_for_the_writes_queued_before_it() {
        let api = Arc::new(FakeApi::default());
        let writer = ApiWriter::start(limits(), ApiWriterMetrics::default());
        for value in ["s1", "s2", "s3"] {
            writer.send(write(&api, None, value));
            writer.send(write(&api, Some(value), value));
        }
        assert!(writer.flush(Duration::from_secs(10)).await);
        assert_eq!(written(&api), ["s1", "s1", "s2", "s2", "s3", "s3"]);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_writer() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let writer = ApiWriter::start(limits(), ApiWriterMetrics::default());
        writer.send(write(&api, Some("a"), "a1"));
        let clone = writer.clone();
        drop(writer);
        assert!(!clone.flush(Duration::from_millis(20)).await);
        let messages = clone.messages.clone();
        drop(clone);
        // The task is aborted: its inbox closes.
        tokio::time::timeout(Duration::from_secs(10), messages.closed())
            .await
            .expect("the writer task stopped");
        api.down.store(false, Ordering::SeqCst);
        assert!(written(&api).is_empty());
    }
}
