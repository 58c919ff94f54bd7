//! Termination signals: both binaries stop cleanly on the first SIGTERM (kubelet) or SIGINT
//! (a terminal).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT with the signal's name. If the handlers cannot be
/// installed, only Ctrl-C (through tokio's portable handler) is waited for.
pub async fn termination() -> &'static str {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; only Ctrl-C will stop the process");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
