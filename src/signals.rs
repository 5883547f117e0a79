//! SIGINT/SIGTERM: deregister first, then exit with the conventional status
//! (130, 143), unless the app took over shutdown with `shutdown_signal()`.
//!
//! Installing a Tokio signal handler disables the default "exit on signal",
//! so exiting is our job once we listen.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::client::Inner;

pub(crate) fn install(inner: &Arc<Inner>) {
    if inner.signals_installed.swap(true, Ordering::SeqCst) {
        return;
    }
    inner.spawn(listen(Arc::downgrade(inner)));
}

async fn listen(weak: Weak<Inner>) {
    let Some(code) = next_signal().await else {
        return;
    };
    let Some(inner) = weak.upgrade() else {
        std::process::exit(code)
    };
    let started = Instant::now();
    let _ = inner.finish().await; // logs its own failure
    tracing::info!(status = code, elapsed = ?started.elapsed(), "shutting down on signal");
    inner.signalled.send_replace(true);
    if !inner.app_owns_shutdown.load(Ordering::SeqCst) {
        std::process::exit(code);
    }
}

/// Waits for SIGINT or SIGTERM; returns the exit status it calls for.
#[cfg(unix)]
async fn next_signal() -> Option<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners =
        signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    let (mut term, mut int) = match listeners {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for signals; deregistration on signal is off");
            return None;
        }
    };
    tokio::select! {
        _ = term.recv() => Some(143),
        _ = int.recv() => Some(130),
    }
}

#[cfg(not(unix))]
async fn next_signal() -> Option<i32> {
    tokio::signal::ctrl_c().await.ok().map(|()| 130)
}
