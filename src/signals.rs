//! SIGINT/SIGTERM: deregister first, then exit with the conventional status
//! (130, 143), unless the app took over shutdown with `shutdown_signal()`.
//!
//! Installing a Tokio signal handler disables the default "exit on signal",
//! so exiting is our job once we listen.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::client::Inner;

/// Starts listening. The handlers are registered before this returns, so
/// no signal can slip in between and kill the process still registered.
pub(crate) fn install(inner: &Arc<Inner>) {
    if inner.signals_installed.swap(true, Ordering::SeqCst) {
        return;
    }
    match Signals::new() {
        // Not one of the client's tasks, which die with it: Tokio never
        // uninstalls a signal handler, so after the client is gone this
        // task is what still makes a signal end the process.
        Ok(signals) => drop(
            inner
                .runtime()
                .spawn(listen(signals, Arc::downgrade(inner))),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for signals; deregistration on signal is off")
        }
    }
}

/// Resolves on the next SIGINT or SIGTERM (for `shutdown_signal()` with
/// nothing to deregister).
pub(crate) async fn any_signal() {
    match Signals::new() {
        Ok(mut signals) => {
            signals.next().await;
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn listen(mut signals: Signals, weak: Weak<Inner>) {
    let code = signals.next().await;
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

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal; returns the exit status it calls for.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => 143,
            _ = self.int.recv() => 130,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> i32 {
        let _ = tokio::signal::ctrl_c().await;
        130
    }
}
