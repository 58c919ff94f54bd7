//! The API writer's queue: bounded, coalescing by object key, retrying with back-off (pure).
//!
//! Plain data, time passed in; the runner in [`super`] performs what [`WriteQueue::next`]
//! hands out and reports back with [`WriteQueue::succeeded`] or [`WriteQueue::retry`].
//!
//! - A write about an object (a status entry, an annotation, a condition) carries its key:
//!   the latest write for a key replaces an older one still queued, in the older one's place
//!   (what the object should become is all that matters; the queue never holds two writes to
//!   one object).
//! - An Event has no key: each is sent. Events are bounded by count; when full the oldest
//!   queued Event is dropped (issue 11: "Events are queued and sent later, bounded").
//! - Keyed writes are bounded too (one per object, so the bound is only reached with very
//!   many objects); when full the oldest keyed write is dropped and handed back, so that its
//!   owner can write it again later.
//! - A write that failed because the API is unavailable goes back to the front (it is older
//!   than everything queued since) unless a newer write for its key arrived meanwhile, and the
//!   whole queue waits, doubling the wait after each failure up to a cap; a success resets it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::runtime::debounce::RetryBackoff;

/// Bounds and back-off of a [`WriteQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most keyed writes (objects) queued at once.
    pub max_writes: usize,
    /// Most Events queued at once.
    pub max_events: usize,
    /// First wait after a failure.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_writes: 10_000,
            max_events: 512,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// A queued write with its coalescing key (`None`: an Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued<T> {
    pub key: Option<String>,
    pub write: T,
}

/// What [`WriteQueue::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed<T> {
    /// Appended.
    Queued,
    /// Took the place of an older write for the same key (returned, never performed).
    Replaced(T),
    /// Appended; the queue was full, so the oldest write of the same kind (returned) was
    /// dropped.
    DroppedOldest(T),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<T> {
    /// Perform this write now.
    Ready(Queued<T>),
    /// Wait (the API failed recently) until then.
    WaitUntil(Instant),
    /// Nothing queued.
    Empty,
}

/// What [`WriteQueue::retry`] did with a failed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried<T> {
    /// Back at the front; the next attempt is at the given time.
    Requeued(Instant),
    /// A newer write for the same key is queued: the failed one is dropped (returned).
    Superseded(T),
    /// Requeued, but the Events were then over their bound and the oldest (returned) was
    /// dropped.
    DroppedOldest(T),
}

/// The queue (see the module header).
#[derive(Debug, Clone)]
pub struct WriteQueue<T> {
    limits: QueueLimits,
    entries: VecDeque<Queued<T>>,
    events: usize,
    backoff: RetryBackoff,
}

impl<T> WriteQueue<T> {
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            backoff: RetryBackoff::new(limits.retry_initial, limits.retry_max),
            limits,
            entries: VecDeque::new(),
            events: 0,
        }
    }

    /// Writes queued (keyed and Events).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events queued.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Queues a write; see [`Pushed`].
    pub fn push(&mut self, key: Option<String>, write: T) -> Pushed<T> {
        if let Some(key) = &key
            && let Some(queued) = self
                .entries
                .iter_mut()
                .find(|q| q.key.as_ref() == Some(key))
        {
            return Pushed::Replaced(std::mem::replace(&mut queued.write, write));
        }
        let is_event = key.is_none();
        self.entries.push_back(Queued { key, write });
        if is_event {
            self.events += 1;
        }
        match self.drop_oldest_over_bound(is_event) {
            Some(dropped) => Pushed::DroppedOldest(dropped),
            None => Pushed::Queued,
        }
    }

    /// The next write to perform, or how long to wait. The write handed out is no longer
    /// queued: report it back with [`WriteQueue::succeeded`] or [`WriteQueue::retry`].
    pub fn next(&mut self, now: Instant) -> Next<T> {
        if self.entries.is_empty() {
            return Next::Empty;
        }
        if let Some(at) = self.backoff.retry_at()
            && now < at
        {
            return Next::WaitUntil(at);
        }
        match self.entries.pop_front() {
            Some(queued) => {
                if queued.key.is_none() {
                    self.events -= 1;
                }
                Next::Ready(queued)
            }
            None => Next::Empty,
        }
    }

    /// The last write handed out was done (or failed for good): no wait before the next.
    pub fn succeeded(&mut self) {
        self.backoff.succeeded();
    }

    /// The write handed out failed because the API is unavailable: see [`Retried`].
    pub fn retry(&mut self, failed: Queued<T>, now: Instant) -> Retried<T> {
        let delay = self.backoff.failed(now);
        if let Some(key) = &failed.key
            && self.entries.iter().any(|q| q.key.as_ref() == Some(key))
        {
            return Retried::Superseded(failed.write);
        }
        let is_event = failed.key.is_none();
        self.entries.push_front(failed);
        if is_event {
            self.events += 1;
        }
        match self.drop_oldest_over_bound(is_event) {
            Some(dropped) => Retried::DroppedOldest(dropped),
            None => Retried::Requeued(now + delay),
        }
    }

    /// Takes everything still queued (oldest first), e.g. what a drain left undone.
    pub fn take_all(&mut self) -> Vec<Queued<T>> {
        self.events = 0;
        self.entries.drain(..).collect()
    }

    /// Drops the oldest write of the kind just added if that kind is over its bound.
    fn drop_oldest_over_bound(&mut self, event: bool) -> Option<T> {
        let (count, bound) = if event {
            (self.events, self.limits.max_events)
        } else {
            (self.entries.len() - self.events, self.limits.max_writes)
        };
        if count <= bound {
            return None;
        }
        let index = self.entries.iter().position(|q| q.key.is_none() == event)?;
        let dropped = self.entries.remove(index)?;
        if event {
            self.events -= 1;
        }
        Some(dropped.write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits(max_writes: usize, max_events: usize) -> QueueLimits {
        QueueLimits {
            max_writes,
            max_events,
            retry_initial: 100 * MS,
            retry_max: 400 * MS,
        }
    }

    fn key(k: &str) -> Option<String> {
        Some(k.to_string())
    }

    /// The write ready at `now` (there must be one).
    fn ready(queue: &mut WriteQueue<&'static str>, now: Instant) -> Queued<&'static str> {
        match queue.next(now) {
            Next::Ready(queued) => queued,
            other => panic!("no write ready at {now:?}: {other:?}"),
        }
    }

    /// Hands out everything ready at `now`, in order.
    fn drain(queue: &mut WriteQueue<&'static str>, now: Instant) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Next::Ready(queued) = queue.next(now) {
            queue.succeeded();
            out.push(queued.write);
        }
        out
    }

    #[test]
    fn writes_come_out_in_the_order_they_were_queued() {
        let mut queue = WriteQueue::new(limits(10, 10));
        assert_eq!(queue.push(key("a"), "a1"), Pushed::Queued);
        assert_eq!(queue.push(None, "event"), Pushed::Queued);
        assert_eq!(queue.push(key("b"), "b1"), Pushed::Queued);
        assert_eq!(drain(&mut queue, Instant::now()), ["a1", "event", "b1"]);
        assert_eq!(queue.next(Instant::now()), Next::Empty);
    }

    #[test]
    fn the_latest_write_for_a_key_replaces_the_queued_one_in_its_place() {
        let mut queue = WriteQueue::new(limits(10, 10));
        queue.push(key("a"), "a1");
        queue.push(key("b"), "b1");
        assert_eq!(queue.push(key("a"), "a2"), Pushed::Replaced("a1"));
        assert_eq!(queue.len(), 2);
        assert_eq!(drain(&mut queue, Instant::now()), ["a2", "b1"]);
    }

    #[test]
    fn events_are_never_coalesced() {
        let mut queue = WriteQueue::new(limits(10, 10));
        queue.push(None, "e1");
        assert_eq!(queue.push(None, "e1"), Pushed::Queued);
        assert_eq!(queue.events(), 2);
        assert_eq!(drain(&mut queue, Instant::now()), ["e1", "e1"]);
        assert_eq!(queue.events(), 0);
    }

    #[test]
    fn when_the_events_are_full_the_oldest_event_is_dropped_and_writes_are_kept() {
        let mut queue = WriteQueue::new(limits(10, 2));
        queue.push(key("a"), "a1");
        queue.push(None, "e1");
        queue.push(None, "e2");
        assert_eq!(queue.push(None, "e3"), Pushed::DroppedOldest("e1"));
        assert_eq!(queue.events(), 2);
        assert_eq!(drain(&mut queue, Instant::now()), ["a1", "e2", "e3"]);
    }

    #[test]
    fn when_the_writes_are_full_the_oldest_write_is_handed_back_and_events_are_kept() {
        let mut queue = WriteQueue::new(limits(2, 10));
        queue.push(None, "e1");
        queue.push(key("a"), "a1");
        queue.push(key("b"), "b1");
        assert_eq!(queue.push(key("c"), "c1"), Pushed::DroppedOldest("a1"));
        // A replacement does not grow the queue, so nothing is dropped for it.
        assert_eq!(queue.push(key("b"), "b2"), Pushed::Replaced("b1"));
        assert_eq!(drain(&mut queue, Instant::now()), ["e1", "b2", "c1"]);
    }

    #[test]
    fn a_failed_write_goes_back_to_the_front_and_the_queue_waits_doubling_up_to_the_cap() {
        let start = Instant::now();
        let mut queue = WriteQueue::new(limits(10, 10));
        queue.push(key("a"), "a1");
        queue.push(key("b"), "b1");
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..4 {
            let first = ready(&mut queue, now);
            assert_eq!(first.write, "a1", "the failed write is retried first");
            let Retried::Requeued(at) = queue.retry(first, now) else {
                panic!("requeued");
            };
            assert_eq!(
                queue.next(now),
                Next::WaitUntil(at),
                "nothing before the retry"
            );
            waits.push(at - now);
            now = at;
        }
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 400 * MS]);
        // The API answers again: everything goes out, and the next failure waits briefly.
        assert_eq!(drain(&mut queue, now), ["a1", "b1"]);
        queue.push(key("c"), "c1");
        let c = ready(&mut queue, now);
        assert_eq!(queue.retry(c, now), Retried::Requeued(now + 100 * MS));
    }

    /// Queues `first`, hands it out, queues `meanwhile` while it is in flight, then fails
    /// it: what the retry did, and what is sent once the API answers again.
    fn fail_in_flight(
        queue: &mut WriteQueue<&'static str>,
        first: (Option<String>, &'static str),
        meanwhile: Vec<(Option<String>, &'static str)>,
    ) -> (Retried<&'static str>, Vec<&'static str>) {
        let now = Instant::now();
        queue.push(first.0, first.1);
        let in_flight = ready(queue, now);
        for (key, write) in meanwhile {
            queue.push(key, write);
        }
        let retried = queue.retry(in_flight, now);
        (retried, drain(queue, now + Duration::from_secs(1)))
    }

    #[test]
    fn a_failed_write_with_a_newer_one_queued_for_its_key_is_dropped() {
        let mut queue = WriteQueue::new(limits(10, 10));
        let meanwhile = vec![(key("b"), "b1"), (key("a"), "a2")];
        let (retried, sent) = fail_in_flight(&mut queue, (key("a"), "a1"), meanwhile);
        assert_eq!(retried, Retried::Superseded("a1"));
        assert_eq!(sent, ["b1", "a2"]);
    }

    #[test]
    fn a_retried_event_over_the_bound_is_the_oldest_and_is_dropped() {
        let mut queue = WriteQueue::new(limits(10, 2));
        let meanwhile = vec![(None, "e2"), (None, "e3")];
        let (retried, sent) = fail_in_flight(&mut queue, (None, "e1"), meanwhile);
        assert_eq!(retried, Retried::DroppedOldest("e1"));
        assert_eq!(sent, ["e2", "e3"]);
    }

    #[test]
    fn what_is_left_can_be_taken_oldest_first() {
        let mut queue = WriteQueue::new(limits(10, 10));
        queue.push(key("a"), "a1");
        queue.push(None, "e1");
        let left: Vec<&str> = queue.take_all().into_iter().map(|q| q.write).collect();
        assert_eq!(left, ["a1", "e1"]);
        assert!(queue.is_empty());
        assert_eq!(queue.events(), 0);
    }

    proptest::proptest! {
        /// Whatever is pushed, the bounds hold, no key is queued twice and the Event count
        /// is right.
        #[test]
        fn the_bounds_hold_and_keys_stay_unique(ops in proptest::collection::vec((0u8..6, proptest::bool::ANY), 0..200)) {
            let mut queue = WriteQueue::new(limits(3, 2));
            let now = Instant::now();
            for (k, pop) in ops {
                if pop {
                    if let Next::Ready(q) = queue.next(now) {
                        if k % 2 == 0 { queue.succeeded(); } else { let _ = queue.retry(q, now); }
                    }
                } else {
                    let key = (k < 5).then(|| format!("k{k}"));
                    queue.push(key, k);
                }
                let all = queue.clone().take_all();
                let events = all.iter().filter(|q| q.key.is_none()).count();
                let mut keys: Vec<&String> = all.iter().filter_map(|q| q.key.as_ref()).collect();
                proptest::prop_assert_eq!(events, queue.events());
                proptest::prop_assert!(events <= 2);
                proptest::prop_assert!(keys.len() <= 3);
                keys.sort();
                keys.dedup();
                proptest::prop_assert_eq!(keys.len(), all.len() - events);
            }
        }
    }
}
