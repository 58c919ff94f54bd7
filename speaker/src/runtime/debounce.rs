//! Coalescing bursts of changes, and backing off after failures.
//!
//! Owns two small timing decisions of the reconcile loop: when a burst of watch events has
//! settled enough to reconcile once for all of it ([`Debouncer`]), and how long to wait
//! before retrying a reconcile whose executors failed ([`RetryBackoff`]). Pure: every
//! instant is passed in, nothing sleeps here; the loop in `runtime::reconcile` does the
//! waiting.

use std::time::{Duration, Instant};

/// Quiet time after the last change before reconciling.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(50);
/// Longest a change waits while changes keep arriving.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(100);

/// Fires once a burst of changes has been quiet for `quiet`, and never later than
/// `max_delay` after the burst's first change, so a steady stream of events cannot starve
/// the reconcile.
#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    max_delay: Duration,
    first_change: Option<Instant>,
    last_change: Option<Instant>,
}

impl Default for Debouncer {
    fn default() -> Self {
        Self::new(DEFAULT_QUIET, DEFAULT_MAX_DELAY)
    }
}

impl Debouncer {
    /// `max_delay` shorter than `quiet` is raised to `quiet`.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay: max_delay.max(quiet),
            first_change: None,
            last_change: None,
        }
    }

    /// Records a change seen at `now`.
    pub fn note_change(&mut self, now: Instant) {
        self.first_change.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// Whether a change is waiting to be reconciled.
    pub fn is_pending(&self) -> bool {
        self.first_change.is_some()
    }

    /// When the pending changes should be reconciled; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let first = self.first_change?;
        let last = self.last_change.unwrap_or(first);
        Some((last + self.quiet).min(first + self.max_delay))
    }

    /// True (and the burst is consumed) when the deadline has passed at `now`.
    pub fn take_if_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.clear();
                true
            }
            _ => false,
        }
    }

    /// Forgets pending changes (a full reconcile just covered them).
    pub fn clear(&mut self) {
        self.first_change = None;
        self.last_change = None;
    }
}

/// Exponential back-off for retrying a failed reconcile: `initial`, doubling, capped at
/// `max`; a success resets it.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    retry_at: Option<Instant>,
}

impl RetryBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            next: initial,
            retry_at: None,
        }
    }

    /// Records a failure at `now`; returns the delay until the retry.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Records a success: no retry pending, the next failure starts from `initial` again.
    pub fn succeeded(&mut self) {
        self.next = self.initial;
        self.retry_at = None;
    }

    /// When to retry, if a failure is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Consumes the pending retry once its time has come.
    pub fn take_if_due(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if now >= at => {
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_is_due_before_any_change() {
        let mut debouncer = Debouncer::default();
        assert_eq!(debouncer.deadline(), None);
        assert!(!debouncer.take_if_due(Instant::now()));
    }

    #[test]
    fn a_single_change_fires_after_the_quiet_time() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(50 * MS, 100 * MS);
        debouncer.note_change(start);
        assert_eq!(debouncer.deadline(), Some(start + 50 * MS));
        assert!(!debouncer.take_if_due(start + 49 * MS));
        assert!(debouncer.take_if_due(start + 50 * MS));
        assert!(!debouncer.is_pending());
    }

    #[test]
    fn a_burst_coalesces_into_one_firing_after_it_settles() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(50 * MS, 1000 * MS);
        for step in 0..5 {
            debouncer.note_change(start + step * 20 * MS);
            assert!(!debouncer.take_if_due(start + step * 20 * MS));
        }
        assert_eq!(debouncer.deadline(), Some(start + 130 * MS));
        assert!(debouncer.take_if_due(start + 130 * MS));
        assert!(!debouncer.take_if_due(start + 200 * MS));
    }

    #[test]
    fn a_never_ending_stream_of_changes_still_fires_by_the_max_delay() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(50 * MS, 100 * MS);
        let mut fired_at = None;
        for step in 0..20 {
            let now = start + step * 10 * MS;
            if debouncer.take_if_due(now) {
                fired_at = Some(now);
                break;
            }
            debouncer.note_change(now);
        }
        assert_eq!(fired_at, Some(start + 100 * MS));
    }

    #[test]
    fn a_max_delay_below_the_quiet_time_is_raised_to_it() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(50 * MS, 10 * MS);
        debouncer.note_change(start);
        assert_eq!(debouncer.deadline(), Some(start + 50 * MS));
    }

    #[test]
    fn retries_double_up_to_the_cap_and_reset_on_success() {
        let now = Instant::now();
        let mut backoff = RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.failed(now).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
        assert_eq!(backoff.retry_at(), Some(now + Duration::from_secs(5)));
        backoff.succeeded();
        assert_eq!(backoff.retry_at(), None);
        assert_eq!(backoff.failed(now), Duration::from_secs(1));
    }

    #[test]
    fn a_retry_is_taken_once_when_due() {
        let now = Instant::now();
        let mut backoff = RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(30));
        backoff.failed(now);
        assert!(!backoff.take_if_due(now));
        assert!(backoff.take_if_due(now + Duration::from_secs(1)));
        assert!(!backoff.take_if_due(now + Duration::from_secs(2)));
    }
}
