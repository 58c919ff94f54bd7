//! Event rate limiting: at most one identical Event per object per window, so a Service that
//! fails on every retry (or a flapping pool) cannot flood the apiserver with Events.
//!
//! Pure bookkeeping over a caller-supplied clock (`now` is a parameter); the kube edge asks
//! [`EventLimiter::admit`] before publishing. Memory is bounded: entries older than the window
//! are dropped, and past [`EventLimiter::capacity`] the oldest ones go first.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What makes two Events "identical": the object, the reason and the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    /// The object, e.g. `Service ns/name` (with its uid, so a re-created object starts fresh).
    pub object: String,
    /// The Event's reason.
    pub reason: String,
    /// The Event's message.
    pub message: String,
}

/// Admits at most one identical Event per window.
#[derive(Debug, Clone)]
pub struct EventLimiter {
    window: Duration,
    capacity: usize,
    last_sent: HashMap<EventKey, (Instant, u64)>,
    /// (time, sequence) of each entry, oldest first, for eviction.
    by_age: BTreeMap<(Instant, u64), EventKey>,
    sequence: u64,
    suppressed: u64,
}

impl EventLimiter {
    /// A limiter admitting one identical Event per `window`, remembering at most `capacity`
    /// distinct Events (at least 1).
    pub fn new(window: Duration, capacity: usize) -> Self {
        EventLimiter {
            window,
            capacity: capacity.max(1),
            last_sent: HashMap::new(),
            by_age: BTreeMap::new(),
            sequence: 0,
            suppressed: 0,
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many distinct Events are remembered at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many Events were refused so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Whether the Event may be published at `now`; if so it is recorded as sent.
    pub fn admit(&mut self, key: EventKey, now: Instant) -> bool {
        self.expire(now);
        if let Some((sent, _)) = self.last_sent.get(&key)
            && now.saturating_duration_since(*sent) < self.window
        {
            self.suppressed += 1;
            return false;
        }
        if let Some((sent, sequence)) = self.last_sent.remove(&key) {
            self.by_age.remove(&(sent, sequence));
        }
        while self.last_sent.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.last_sent.remove(&oldest);
        }
        self.sequence += 1;
        self.by_age.insert((now, self.sequence), key.clone());
        self.last_sent.insert(key, (now, self.sequence));
        true
    }

    /// Forgets everything older than the window.
    fn expire(&mut self, now: Instant) {
        while let Some((&(sent, _), _)) = self.by_age.first_key_value() {
            if now.saturating_duration_since(sent) < self.window {
                break;
            }
            if let Some((_, key)) = self.by_age.pop_first() {
                self.last_sent.remove(&key);
            }
        }
    }

    /// How many distinct Events are remembered now.
    pub fn len(&self) -> usize {
        self.last_sent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.last_sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(object: &str, message: &str) -> EventKey {
        EventKey {
            object: object.into(),
            reason: "AllocationFailed".into(),
            message: message.into(),
        }
    }

    #[test]
    fn an_identical_event_within_the_window_is_suppressed() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(300), 100);
        assert!(limiter.admit(key("svc a", "pool full"), t0));
        assert!(!limiter.admit(key("svc a", "pool full"), t0 + Duration::from_secs(1)));
        assert!(!limiter.admit(key("svc a", "pool full"), t0 + Duration::from_secs(299)));
        assert_eq!(limiter.suppressed(), 2);
    }

    #[test]
    fn the_same_event_is_admitted_again_once_the_window_has_passed() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(300), 100);
        assert!(limiter.admit(key("svc a", "pool full"), t0));
        assert!(limiter.admit(key("svc a", "pool full"), t0 + Duration::from_secs(300)));
        assert!(!limiter.admit(key("svc a", "pool full"), t0 + Duration::from_secs(301)));
    }

    #[test]
    fn different_objects_or_messages_are_not_identical() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(300), 100);
        assert!(limiter.admit(key("svc a", "pool full"), t0));
        assert!(limiter.admit(key("svc b", "pool full"), t0));
        assert!(limiter.admit(key("svc a", "address in use"), t0));
        let mut other_reason = key("svc a", "pool full");
        other_reason.reason = "AddressAssigned".into();
        assert!(limiter.admit(other_reason, t0));
    }

    #[test]
    fn an_event_storm_of_retries_yields_one_event_per_window() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(600), 1000);
        // A failing Service retried every 100 ms for an hour.
        let admitted = (0..36_000u64)
            .filter(|i| {
                limiter.admit(
                    key("svc a", "pool full"),
                    t0 + Duration::from_millis(i * 100),
                )
            })
            .count();
        assert_eq!(admitted, 6);
    }

    #[test]
    fn memory_stays_bounded_by_capacity_and_the_oldest_entry_goes_first() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(600), 3);
        for (i, object) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(limiter.admit(key(object, "m"), t0 + Duration::from_secs(i as u64)));
        }
        assert_eq!(limiter.len(), 3);
        // "a" was evicted, so it is admitted again; "d" is still remembered.
        assert!(limiter.admit(key("a", "m"), t0 + Duration::from_secs(5)));
        assert!(!limiter.admit(key("d", "m"), t0 + Duration::from_secs(5)));
    }

    #[test]
    fn entries_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut limiter = EventLimiter::new(Duration::from_secs(10), 100);
        for object in ["a", "b", "c"] {
            limiter.admit(key(object, "m"), t0);
        }
        assert!(limiter.admit(key("z", "m"), t0 + Duration::from_secs(11)));
        assert_eq!(limiter.len(), 1);
    }
}
