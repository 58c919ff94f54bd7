//! Owned tasks: a spawned task lives exactly as long as the value that holds its handle.
//!
//! [`TaskHandle`] wraps a tokio task and aborts it when dropped, so a struct that starts a
//! task needs no `Drop` impl of its own: dropping the struct drops the handle. It can also be
//! awaited (bounded, e.g. with `tokio::time::timeout(limit, &mut handle)`) for the task to
//! end by itself, as shutdown paths do before giving up and dropping it.
//!
//! [`ThreadHandle`] does the same for a std thread: on drop it raises the thread's stop flag
//! and joins it. The thread's loop must check the flag regularly (a bounded read timeout).
//!
//! No I/O beyond spawning.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

/// A tokio task that is aborted when this value is dropped.
#[derive(Debug)]
pub struct TaskHandle(JoinHandle<()>);

impl TaskHandle {
    /// Spawns `future` on the current tokio runtime.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(future))
    }

    /// Stops the task now (it will not run past its next await point).
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Whether the task has ended (returned, panicked or been aborted).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl From<JoinHandle<()>> for TaskHandle {
    fn from(handle: JoinHandle<()>) -> Self {
        Self(handle)
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when the task ends; dropping the handle (e.g. after a timeout) still aborts it.
impl Future for TaskHandle {
    type Output = Result<(), JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// A std thread that is told to stop and joined when this value is dropped.
#[derive(Debug)]
pub struct ThreadHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadHandle {
    /// Starts a named thread running `body`, which gets the stop flag to poll.
    pub fn spawn(
        name: impl Into<String>,
        body: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for ThreadHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panicking thread has already reported; nothing more to do with it here.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// A value dropped when the task is torn down: tells `dropped` so.
    struct Canary(Option<oneshot::Sender<()>>);

    impl Drop for Canary {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    #[tokio::test]
    async fn dropping_a_task_handle_stops_the_task() {
        let (tx, dropped) = oneshot::channel();
        let handle = TaskHandle::spawn(async move {
            let _canary = Canary(Some(tx));
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        drop(handle);
        // The task's state (the canary) is dropped once the abort takes effect.
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the task stopped")
            .expect("the canary reported");
    }

    #[tokio::test]
    async fn a_task_handle_can_be_awaited_until_the_task_returns() {
        let mut handle = TaskHandle::spawn(async {});
        tokio::time::timeout(Duration::from_secs(10), &mut handle)
            .await
            .expect("returned in time")
            .expect("not aborted");
        assert!(handle.is_finished());
    }

    #[tokio::test]
    async fn an_awaited_task_that_does_not_end_in_time_is_still_stopped_on_drop() {
        let (tx, dropped) = oneshot::channel();
        let mut handle = TaskHandle::spawn(async move {
            let _canary = Canary(Some(tx));
            std::future::pending::<()>().await;
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut handle)
                .await
                .is_err()
        );
        drop(handle);
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the task stopped")
            .expect("the canary reported");
    }

    #[test]
    fn dropping_a_thread_handle_stops_and_joins_the_thread() {
        let ran = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&ran);
        let handle = ThreadHandle::spawn("herald-test", move |stop| {
            // Bounded: at most 10 s even if the flag were never raised.
            for _ in 0..1000 {
                if stop.load(Ordering::Relaxed) {
                    seen.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("spawns");
        assert!(!handle.is_finished());
        drop(handle);
        assert!(
            ran.load(Ordering::Relaxed),
            "the thread saw the stop flag before it was joined"
        );
    }
}
