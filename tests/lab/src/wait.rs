//! Bounded waiting. Every loop in the lab that waits for the outside world goes through
//! [`poll_until`], which gives up after a deadline and reports the last thing it saw.
//! [`time_both`] polls two such conditions side by side, to time one change seen two ways.

use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// What one probe of [`poll_until`] found.
pub enum Poll<T> {
    /// The condition holds; stop waiting and return this value.
    Ready(T),
    /// Not yet; the string describes what was seen (reported if the wait times out).
    Pending(String),
}

/// Calls `probe` every `interval` until it returns [`Poll::Ready`], fails hard with an
/// error, or `timeout` passes. A probe that returns `Err` ends the wait at once.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let seen = match probe()? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(seen) => seen,
        };
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(LabError::WaitTimedOut {
                what: what.to_string(),
                timeout,
                last: Some(seen),
            });
        }
        std::thread::sleep(interval.min(timeout - elapsed));
    }
}

/// Like [`poll_until`], but errors from the probe count as "not yet" (their text becomes
/// the last observation). For conditions that are expected to fail for a while, such as
/// a server that is still starting.
pub fn poll_until_ok<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    poll_until(what, timeout, interval, || match probe() {
        Ok(result) => Ok(result),
        Err(err) => Ok(Poll::Pending(err.to_string())),
    })
}

/// Polls `first` (in a scoped thread) and `second` (here) side by side, each every
/// `interval` until it is ready or `timeout` passes, as [`poll_until`] does; returns how long
/// after `started` each was ready. For one change seen two ways, e.g. the API showing it and
/// the data plane following.
pub fn time_both(
    started: Instant,
    timeout: Duration,
    interval: Duration,
    first_what: &str,
    mut first: impl FnMut() -> Result<Poll<()>> + Send,
    second_what: &str,
    mut second: impl FnMut() -> Result<Poll<()>>,
) -> Result<(Duration, Duration)> {
    let elapsed = |poll: Poll<()>| match poll {
        Poll::Ready(()) => Poll::Ready(started.elapsed()),
        Poll::Pending(seen) => Poll::Pending(seen),
    };
    std::thread::scope(|scope| {
        let first =
            scope.spawn(move || poll_until(first_what, timeout, interval, || first().map(elapsed)));
        let second = poll_until(second_what, timeout, interval, || second().map(elapsed));
        let first = first
            .join()
            .map_err(|_| LabError::Invalid(format!("{first_what}: the poller panicked")))?;
        Ok((first?, second?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_returns_the_first_ready_value() -> Result<()> {
        let mut calls = 0;
        let value = poll_until("third call", Duration::from_secs(5), Duration::ZERO, || {
            calls += 1;
            Ok(if calls == 3 {
                Poll::Ready(calls)
            } else {
                Poll::Pending(format!("call {calls}"))
            })
        })?;
        assert_eq!(value, 3);
        Ok(())
    }

    #[test]
    fn polling_gives_up_at_the_deadline_and_reports_the_last_observation() {
        let started = Instant::now();
        let result: Result<()> = poll_until(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || Ok(Poll::Pending("still nothing".into())),
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("never"), "{message}");
        assert!(message.contains("still nothing"), "{message}");
    }

    #[test]
    fn time_both_reports_when_each_side_was_ready() -> Result<()> {
        let started = Instant::now();
        let (mut a, mut b) = (0, 0);
        let (first, second) = time_both(
            started,
            Duration::from_secs(5),
            Duration::from_millis(1),
            "first",
            || {
                a += 1;
                Ok(if a >= 2 {
                    Poll::Ready(())
                } else {
                    Poll::Pending(String::new())
                })
            },
            "second",
            || {
                b += 1;
                Ok(if b >= 20 {
                    Poll::Ready(())
                } else {
                    Poll::Pending(String::new())
                })
            },
        )?;
        // The second slept 19 intervals before it was ready; both are counted from `started`.
        assert!(second >= Duration::from_millis(19), "{second:?}");
        assert!(first <= started.elapsed() && second <= started.elapsed());
        assert_eq!((a, b), (2, 20));

        let timed_out = time_both(
            started,
            Duration::from_millis(20),
            Duration::from_millis(5),
            "ready",
            || Ok(Poll::Ready(())),
            "never",
            || Ok(Poll::Pending("still nothing".into())),
        );
        let message = timed_out.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("never") && message.contains("still nothing"),
            "{message}"
        );
        Ok(())
    }

    #[test]
    fn a_probe_error_ends_poll_until_but_not_poll_until_ok() {
        let hard: Result<()> = poll_until("x", Duration::from_secs(5), Duration::ZERO, || {
            Err(LabError::Invalid("boom".into()))
        });
        assert!(matches!(hard, Err(LabError::Invalid(_))));

        let mut calls = 0;
        let soft = poll_until_ok("y", Duration::from_secs(5), Duration::ZERO, || {
            calls += 1;
            if calls < 3 {
                Err(LabError::Invalid("not yet".into()))
            } else {
                Ok(Poll::Ready(calls))
            }
        });
        assert_eq!(soft.ok(), Some(3));
    }
}
