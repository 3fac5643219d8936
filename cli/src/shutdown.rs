//! Turns Ctrl-C and SIGTERM into one cancellation token that every service in the process watches,
//! so that in-flight work finishes and the outboxes flush before the process exits.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C or SIGTERM. A second signal while shutting down exits
/// at once: an operator who presses Ctrl-C twice means it.
pub(crate) fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            tracing::warn!("could not listen for SIGTERM; only Ctrl-C stops moss cleanly");
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stopping: finishing in-flight work (press Ctrl-C again to exit at once)");
        cancel.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        std::process::exit(130);
    });
    token
}
