//! Whether the API server answers: the speaker's "running on stale state since T".
//!
//! Watches alone cannot tell: a watch on a frozen or partitioned API server is silent, not
//! failing, and silence is also what a quiet cluster looks like. So a small request (the
//! server's version) is sent every [`PROBE_INTERVAL`], bounded by [`PROBE_TIMEOUT`]; the
//! first failure marks the speaker stale from that moment ([`Health`]: `/readyz` body and
//! `herald_speaker_api_stale_since_seconds`), the next success clears it. Nothing here
//! changes what is announced or forwarded: the desired state only follows observed changes
//! (issue 11). I/O: one GET per probe.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::Client;

use crate::metrics::Metrics;
use crate::observability::Health;
use crate::task::TaskHandle;

/// How often the API server is asked.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe may take before the API server counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes until the returned task is aborted.
pub fn spawn(client: Client, health: Arc<Health>, metrics: Arc<Metrics>) -> TaskHandle {
    TaskHandle::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let answered = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await,
                Ok(Ok(_))
            );
            record(answered, unix_now(), &health, &metrics);
        }
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One probe's result into the health flags, the metrics and the log.
fn record(answered: bool, now: u64, health: &Health, metrics: &Metrics) {
    if answered {
        if let Some(since) = health.api_reachable() {
            tracing::info!(
                stale_for_secs = now.saturating_sub(since),
                "the API server answers again; leaving stale state"
            );
        }
        metrics.api_stale_since.set(0);
    } else if health.api_unreachable(now) {
        metrics.api_outages.inc();
        metrics
            .api_stale_since
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        tracing::warn!(
            "the API server does not answer; running on stale state (announcements, sessions and forwarding kept as last known)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_stale_from_its_first_failed_probe_until_the_next_answer() {
        let health = Health::default();
        let metrics = Metrics::new();
        record(true, 100, &health, &metrics);
        assert_eq!(health.api_stale_since(), None);
        record(false, 105, &health, &metrics);
        record(false, 110, &health, &metrics);
        assert_eq!(health.api_stale_since(), Some(105));
        assert_eq!(metrics.api_stale_since.get(), 105);
        assert_eq!(metrics.api_outages.get(), 1);
        record(true, 115, &health, &metrics);
        assert_eq!(health.api_stale_since(), None);
        assert_eq!(metrics.api_stale_since.get(), 0);
        record(false, 120, &health, &metrics);
        assert_eq!(metrics.api_outages.get(), 2);
    }
}
