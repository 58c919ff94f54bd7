//! Leader election over a `coordination.k8s.io/v1` Lease in the install namespace, with
//! kube-lease-manager. Only the leader writes: the moment the lease is lost (or cannot be
//! renewed), the [`WriteGate`] closes, before anyone is told.
//!
//! I/O edge. The decision of what a lease outcome means for the gate is
//! [`gate_after`], a pure function.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{DurationSeconds, LeaseManagerBuilder};
use tokio::sync::watch;

use crate::reconciler::WriteGate;

/// How often a standby re-reads the Lease (a released Lease is taken within this).
const STANDBY_POLL: Duration = Duration::from_secs(2);

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The install namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long the lease is valid after a renewal.
    pub duration: DurationSeconds,
    /// The holder renews this long before expiry.
    pub grace: DurationSeconds,
}

/// What a lease outcome means: `Ok(true)` leads, anything else (lost, or an error that leaves
/// the holder unsure it still holds the lease) stops writing.
pub fn gate_after<E>(outcome: &Result<bool, E>) -> bool {
    matches!(outcome, Ok(true))
}

/// Runs the election until `shutdown` turns true, then releases the lease. `leading` follows
/// the gate.
pub async fn elect(
    client: Client,
    settings: LeaseSettings,
    gate: Arc<WriteGate>,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let stopping = *shutdown.borrow();
        if stopping {
            return;
        }
        let built = LeaseManagerBuilder::new(client.clone(), &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_field_manager(format!("herald-controller-{}", settings.identity))
            .with_duration(settings.duration)
            .with_grace(settings.grace)
            .build()
            .await;
        let manager = match built {
            Ok(manager) => manager,
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, lease = %settings.name, "cannot use the Lease; retrying");
                if sleep_or_shutdown(retry_delay(failures), &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        let mut leading_now = false;
        let mut reread = false;
        loop {
            tokio::select! {
                // A standby re-reads the Lease every STANDBY_POLL (as client-go's retry
                // period does) with a fresh manager: one keeps its cached view of the Lease
                // until the old holder's expiry, even after a clean release.
                () = tokio::time::sleep(STANDBY_POLL), if !leading_now => {
                    reread = true;
                    break;
                }
                outcome = manager.changed() => {
                    let lead = gate_after(&outcome);
                    leading_now = lead;
                    if lead {
                        gate.open();
                        failures = 0;
                        tracing::info!(identity = %settings.identity, "became the leader");
                    } else {
                        gate.close();
                    }
                    leading.send_replace(lead);
                    match outcome {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            identity = %settings.identity,
                            "not the leader (lost or never held the lease); writes stopped"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "lease renewal failed; writes stopped");
                            break;
                        }
                    }
                }
                () = stopped(&mut shutdown) => {
                    gate.close();
                    leading.send_replace(false);
                    match manager.release().await {
                        Ok(()) => tracing::info!("lease released"),
                        Err(error) => tracing::warn!(%error, "releasing the lease failed"),
                    }
                    return;
                }
            }
        }
        if reread {
            continue;
        }
        failures = failures.saturating_add(1);
        if sleep_or_shutdown(retry_delay(failures), &mut shutdown).await {
            return;
        }
    }
}

/// `1s, 2s, 4s`, then every 8 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(3))
}

/// Sleeps `delay`; true when shutdown came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = stopped(shutdown) => true,
    }
}

/// Resolves once `shutdown` is true (or its sender is gone). Returns no watch guard, so the
/// future stays `Send`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _stopped_or_closed = shutdown.wait_for(|stop| *stop).await.is_ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_confirmed_lease_opens_the_gate() {
        assert!(gate_after::<()>(&Ok(true)));
        assert!(!gate_after::<()>(&Ok(false)));
        assert!(!gate_after(&Err("renewal failed")));
    }

    #[test]
    fn retries_back_off_to_eight_seconds() {
        let delays: Vec<u64> = (1..=6).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 8, 8]);
    }
}
