//! Damping of BFD flaps before they reach BGP (RFC 5882 §3.2 leaves the policy to the client).
//!
//! Owns: the "is the path usable" signal a BGP session acts on. Down passes through at once
//! (that is the point of BFD); Up after repeated flaps is held back for a delay that doubles
//! with each flap, so a link that bounces does not churn BGP sessions. A session that stays Up
//! for `stable_after` forgets its flaps. Pure: time is passed in.

use std::time::{Duration, Instant};

/// Damping policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DampingConfig {
    /// Hold-down after the second flap within `stable_after`; doubles with each further one.
    pub initial: Duration,
    pub max: Duration,
    /// An Up that lasts this long resets the flap count.
    pub stable_after: Duration,
}

impl Default for DampingConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// The damped view of one BFD session.
#[derive(Debug, Clone)]
pub struct Damper {
    config: DampingConfig,
    reported_up: bool,
    up_since: Option<Instant>,
    release_at: Option<Instant>,
    flaps: u32,
}

impl Damper {
    pub fn new(config: DampingConfig) -> Damper {
        Damper {
            config,
            reported_up: false,
            up_since: None,
            release_at: None,
            flaps: 0,
        }
    }

    /// The damped state: true when BGP may use the path.
    pub fn is_up(&self) -> bool {
        self.reported_up
    }

    /// Takes a new policy; flaps counted so far are kept, an Up already held back keeps its
    /// release time.
    pub fn set_config(&mut self, config: DampingConfig) {
        self.config = config;
    }

    /// Consecutive flaps counted so far.
    pub fn flaps(&self) -> u32 {
        self.flaps
    }

    /// When a held-back Up is due; call [`Damper::timer`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.release_at
    }

    /// The raw BFD session went Up (`true`) or left Up (`false`). Returns the new damped state
    /// when it changed.
    pub fn update(&mut self, now: Instant, up: bool) -> Option<bool> {
        if up {
            if self.up_since.is_some() {
                return None;
            }
            self.up_since = Some(now);
            let delay = self.hold_down();
            if delay.is_zero() {
                return self.report(true);
            }
            self.release_at = Some(now + delay);
            None
        } else {
            let since = self.up_since.take()?;
            self.release_at = None;
            self.flaps = if now.saturating_duration_since(since) >= self.config.stable_after {
                1
            } else {
                self.flaps.saturating_add(1)
            };
            self.report(false)
        }
    }

    /// Releases a held-back Up whose delay has passed.
    pub fn timer(&mut self, now: Instant) -> Option<bool> {
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_at = None;
            return self.report(true);
        }
        None
    }

    /// No delay after a single failure; `initial × 2^(flaps−2)` after repeated ones.
    fn hold_down(&self) -> Duration {
        if self.flaps <= 1 {
            return Duration::ZERO;
        }
        let exponent = (self.flaps - 2).min(20);
        self.config
            .initial
            .saturating_mul(1u32 << exponent)
            .min(self.config.max)
    }

    fn report(&mut self, up: bool) -> Option<bool> {
        (self.reported_up != up).then(|| {
            self.reported_up = up;
            up
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DampingConfig {
        DampingConfig {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(10),
            stable_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_first_up_and_every_down_pass_at_once() {
        let t0 = Instant::now();
        let mut d = Damper::new(config());
        assert_eq!(d.update(t0, true), Some(true));
        assert_eq!(d.update(t0, true), None);
        assert_eq!(d.update(t0 + Duration::from_secs(1), false), Some(false));
        assert_eq!(d.update(t0 + Duration::from_secs(1), false), None);
    }

    #[test]
    fn an_up_after_a_single_failure_passes_at_once() {
        let t0 = Instant::now();
        let mut d = Damper::new(config());
        d.update(t0, true);
        d.update(t0 + Duration::from_secs(1), false);
        assert_eq!(d.update(t0 + Duration::from_secs(2), true), Some(true));
    }

    #[test]
    fn repeated_flaps_hold_the_up_back_for_a_doubling_delay_up_to_the_maximum() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Damper::new(config());
        let mut now = t0;
        let mut delays = Vec::new();
        d.update(now, true);
        for _ in 0..6 {
            now += s(1);
            d.update(now, false);
            now += s(1);
            match d.update(now, true) {
                Some(true) => delays.push(Duration::ZERO),
                _ => {
                    let due = d.poll_timeout().expect("held back");
                    assert_eq!(d.timer(due - Duration::from_millis(1)), None);
                    assert_eq!(d.timer(due), Some(true));
                    delays.push(due - now);
                    now = due;
                }
            }
        }
        assert_eq!(delays, vec![s(0), s(2), s(4), s(8), s(10), s(10)]);
    }

    /// A damper that went Up, Down, Up, Down at t0 + 0..3 s: two flaps, the next Up is held.
    fn flapped_twice(t0: Instant) -> Damper {
        let mut d = Damper::new(config());
        for (second, up) in [(0, true), (1, false), (2, true), (3, false)] {
            d.update(t0 + Duration::from_secs(second), up);
        }
        assert_eq!(d.flaps(), 2);
        d
    }

    #[test]
    fn a_down_during_the_hold_down_cancels_the_held_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = flapped_twice(t0);
        assert_eq!(d.update(t0 + s(4), true), None);
        assert_eq!(d.update(t0 + s(5), false), None);
        assert_eq!(d.poll_timeout(), None);
        assert!(!d.is_up());
    }

    #[test]
    fn an_up_that_lasts_past_stable_after_forgets_the_flaps() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = flapped_twice(t0);
        d.update(t0 + s(4), true);
        d.timer(t0 + s(10));
        assert!(d.is_up());
        d.update(t0 + s(100), false);
        assert_eq!(d.flaps(), 1);
        assert_eq!(d.update(t0 + s(101), true), Some(true));
    }
}
