//! SIGINT/SIGTERM: deregister first, then exit with the conventional status
//! (130, 143), unless the app took over shutdown with `shutdown_signal()`.
//!
//! Installing a Tokio signal handler disables the default "exit on signal",
//! so exiting is our job once we listen.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::watch;

/// What a signal acts on: a client, seen only through this trait so that
/// this module needs nothing of the client's insides.
pub(crate) trait OnSignal: Send + Sync + 'static {
    /// The client's signal bookkeeping.
    fn signal_state(&self) -> &SignalState;
    /// Deregisters, waiting for a registration under way to land first.
    fn deregister_on_signal(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// One client's side of signal handling.
pub(crate) struct SignalState {
    /// A listener delivers to this client already.
    installed: AtomicBool,
    /// The app called `shutdown_signal()`: it exits, not gosd.
    app_owns_shutdown: AtomicBool,
    /// Set once a signal was handled (deregistered).
    signalled: watch::Sender<bool>,
}

impl Default for SignalState {
    fn default() -> Self {
        Self {
            installed: AtomicBool::new(false),
            app_owns_shutdown: AtomicBool::new(false),
            signalled: watch::Sender::new(false),
        }
    }
}

impl SignalState {
    /// Hands the exit to the app, now; the future resolves once a signal
    /// was handled.
    pub(crate) fn hand_exit_to_app(&self) -> impl Future<Output = ()> + use<> {
        self.app_owns_shutdown.store(true, Ordering::SeqCst);
        let mut signalled = self.signalled.subscribe();
        async move {
            let _ = signalled.wait_for(|s| *s).await;
        }
    }
}

type Target = Arc<Mutex<Option<Weak<dyn OnSignal>>>>;

/// A SIGINT/SIGTERM listener, started before there is a client: from the
/// moment it exists a signal no longer kills the process outright. Until
/// [`deliver_to`](Self::deliver_to) names a client, a signal exits with
/// 130/143 and touches no registry.
#[derive(Clone)]
pub(crate) struct SignalListener {
    target: Target,
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

    /// From now on a signal deregisters `client`'s instance (waiting for a
    /// registration under way) before exiting.
    pub(crate) fn deliver_to<C: OnSignal>(&self, client: &Arc<C>) {
        client
            .signal_state()
            .installed
            .store(true, Ordering::SeqCst);
        let weak: Weak<dyn OnSignal> = Arc::downgrade(client) as Weak<dyn OnSignal>;
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(weak);
    }
}

/// Starts listening for `client`, once per client, on `runtime`.
pub(crate) fn install<C: OnSignal>(client: &Arc<C>, runtime: &Handle) {
    if client.signal_state().installed.swap(true, Ordering::SeqCst) {
        return;
    }
    let _enter = runtime.enter();
    if let Some(listener) = SignalListener::start() {
        listener.deliver_to(client);
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

async fn listen(mut signals: Signals, target: Target) {
    let code = signals.next().await;
    let client = target
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(Weak::upgrade);
    let Some(client) = client else {
        std::process::exit(code)
    };
    let started = Instant::now();
    client.deregister_on_signal().await; // logs its own failure
    tracing::info!(status = code, elapsed = ?started.elapsed(), "shutting down on signal");
    let state = client.signal_state();
    state.signalled.send_replace(true);
    if !state.app_owns_shutdown.load(Ordering::SeqCst) {
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
        if !first_signal() {
            tracing::debug!(
                "cannot record the first signal; two at once exit with either's status"
            );
        }
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal; returns the exit status the process's
    /// first signal calls for.
    ///
    /// Not the stream that woke: when SIGINT and SIGTERM both arrive before
    /// this task runs, both streams are ready and `select!` picks one at
    /// random. The hook in [`first_signal`] saw which came first.
    async fn next(&mut self) -> i32 {
        let woke = tokio::select! {
            _ = self.term.recv() => 143,
            _ = self.int.recv() => 130,
        };
        match FIRST.load(Ordering::SeqCst) {
            0 => woke,
            first => first,
        }
    }
}

/// The exit status of the process's first SIGINT/SIGTERM; 0 before one.
#[cfg(unix)]
static FIRST: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Records the first signal's status in [`FIRST`], from inside the signal
/// handler, so that the order is the kernel's delivery order. Installed once
/// per process; `false` when it could not be.
#[cfg(unix)]
fn first_signal() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        [(libc::SIGTERM, 143), (libc::SIGINT, 130)]
            .into_iter()
            .all(|(signal, status)| {
                let record = move || {
                    let _ = FIRST.compare_exchange(0, status, Ordering::SeqCst, Ordering::SeqCst);
                };
                // SAFETY: the action only does an atomic compare-exchange,
                // which is async-signal-safe: no allocation, no lock, no
                // panic.
                unsafe { signal_hook_registry::register(signal, record) }.is_ok()
            })
    })
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
