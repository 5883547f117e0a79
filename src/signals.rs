//! SIGINT/SIGTERM: deregister first, then exit with the conventional status
//! (130, 143), unless the app took over shutdown with `shutdown_signal()`.
//!
//! Installing a Tokio signal handler disables the default "exit on signal",
//! so exiting is our job once we listen.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::client::Inner;

/// A SIGINT/SIGTERM listener, started before there is a client: from the
/// moment it exists a signal no longer kills the process outright. Until
/// [`deliver_to`](Self::deliver_to) names a client, a signal exits with
/// 130/143 and touches no registry.
#[derive(Clone)]
pub(crate) struct SignalListener {
    target: Arc<Mutex<Weak<Inner>>>,
}

impl SignalListener {
    /// Starts listening on the current runtime. The handlers are registered
    /// before this returns, so no signal can slip in after it. `None`
    /// (logged) when the process cannot listen for signals.
    pub(crate) fn start() -> Option<Self> {
        match Signals::new() {
            Ok(signals) => {
                let listener = Self {
                    target: Arc::default(),
                };
                // Not one of the client's tasks, which die with it: Tokio
                // never uninstalls a signal handler, so after the client is
                // gone this task is what still makes a signal end the process.
                drop(tokio::spawn(listen(signals, listener.target.clone())));
                Some(listener)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for signals; deregistration on signal is off");
                None
            }
        }
    }

    /// From now on a signal deregisters `inner`'s instance (waiting for a
    /// registration under way) before exiting.
    pub(crate) fn deliver_to(&self, inner: &Arc<Inner>) {
        inner.signals_installed.store(true, Ordering::SeqCst);
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(inner);
    }
}

/// Starts listening for `inner`, once per client.
pub(crate) fn install(inner: &Arc<Inner>) {
    if inner.signals_installed.swap(true, Ordering::SeqCst) {
        return;
    }
    let _enter = inner.runtime().enter();
    if let Some(listener) = SignalListener::start() {
        listener.deliver_to(inner);
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

async fn listen(mut signals: Signals, target: Arc<Mutex<Weak<Inner>>>) {
    let code = signals.next().await;
    let inner = target.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
    let Some(inner) = inner else {
        std::process::exit(code)
    };
    let started = Instant::now();
    let _ = inner.finish_on_signal().await; // logs its own failure
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
