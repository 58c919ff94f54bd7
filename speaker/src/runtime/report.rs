//! Rate limiting of repeated complaints (conversion problems, plan warnings, watch errors).
//!
//! The reconcile loop sees the same bad object on every pass; logging it every time would
//! flood the logs (MetalLB's event storms are a known complaint). [`RepeatLimiter`] decides
//! which complaints to log now: a new one at once, one still present only every
//! `repeat_after`, and it reports complaints that went away so their resolution is logged
//! once. Pure: the caller passes the current set of complaints and the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a complaint that persists is logged again.
pub const DEFAULT_REPEAT_AFTER: Duration = Duration::from_secs(300);

/// What to log for one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<T> {
    /// Complaints to log now (new, or due for a reminder).
    pub log: Vec<T>,
    /// Complaints logged earlier that are no longer present.
    pub resolved: Vec<T>,
}

/// Remembers when each complaint was last logged.
#[derive(Debug, Clone)]
pub struct RepeatLimiter<T: Ord + Clone> {
    repeat_after: Duration,
    last_logged: BTreeMap<T, Instant>,
}

impl<T: Ord + Clone> RepeatLimiter<T> {
    pub fn new(repeat_after: Duration) -> Self {
        Self {
            repeat_after,
            last_logged: BTreeMap::new(),
        }
    }

    /// Decides what to log given every complaint that holds at `now`.
    pub fn observe<'a>(
        &mut self,
        now: Instant,
        current: impl IntoIterator<Item = &'a T>,
    ) -> Verdict<T>
    where
        T: 'a,
    {
        let mut seen: BTreeMap<T, Instant> = BTreeMap::new();
        let mut log = Vec::new();
        for complaint in current {
            if seen.contains_key(complaint) {
                continue;
            }
            let logged_at = match self.last_logged.get(complaint) {
                Some(at) if now.saturating_duration_since(*at) < self.repeat_after => *at,
                _ => {
                    log.push(complaint.clone());
                    now
                }
            };
            seen.insert(complaint.clone(), logged_at);
        }
        let resolved = self
            .last_logged
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        self.last_logged = seen;
        Verdict { log, resolved }
    }

    /// How many distinct complaints currently hold.
    pub fn active(&self) -> usize {
        self.last_logged.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_complaint_is_logged_at_once_and_then_held_back() {
        let start = Instant::now();
        let mut limiter = RepeatLimiter::new(Duration::from_secs(60));
        let current = strings(&["pool a: bad CIDR"]);
        assert_eq!(limiter.observe(start, &current).log, current);
        let later = limiter.observe(start + Duration::from_secs(10), &current);
        assert!(later.log.is_empty());
        assert!(later.resolved.is_empty());
        assert_eq!(limiter.active(), 1);
    }

    #[test]
    fn a_persisting_complaint_is_repeated_after_the_interval() {
        let start = Instant::now();
        let mut limiter = RepeatLimiter::new(Duration::from_secs(60));
        let current = strings(&["x"]);
        limiter.observe(start, &current);
        limiter.observe(start + Duration::from_secs(59), &current);
        assert_eq!(
            limiter
                .observe(start + Duration::from_secs(60), &current)
                .log,
            current
        );
        assert!(
            limiter
                .observe(start + Duration::from_secs(61), &current)
                .log
                .is_empty()
        );
    }

    #[test]
    fn a_complaint_that_goes_away_is_reported_resolved_once_and_logged_again_if_it_returns() {
        let start = Instant::now();
        let mut limiter = RepeatLimiter::new(Duration::from_secs(60));
        let current = strings(&["x", "y"]);
        limiter.observe(start, &current);
        let only_y = strings(&["y"]);
        let verdict = limiter.observe(start + Duration::from_secs(1), &only_y);
        assert_eq!(verdict.resolved, strings(&["x"]));
        assert!(verdict.log.is_empty());
        assert!(
            limiter
                .observe(start + Duration::from_secs(2), &only_y)
                .resolved
                .is_empty()
        );
        let back = limiter.observe(start + Duration::from_secs(3), &current);
        assert_eq!(back.log, strings(&["x"]));
    }

    #[test]
    fn duplicates_within_one_pass_are_logged_once() {
        let mut limiter = RepeatLimiter::new(Duration::from_secs(60));
        let current = strings(&["x", "x"]);
        assert_eq!(
            limiter.observe(Instant::now(), &current).log,
            strings(&["x"])
        );
    }
}
