use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gosd_driver::{InstanceName, Status};

use crate::error::Result;

/// What a [`Registration`] deregisters through: the client that made it.
/// A trait, so that this module needs nothing of the client's insides.
pub(crate) trait Deregister: Send + Sync {
    /// Deregisters now; idempotent.
    fn finish(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    /// Writes a new status now, and in every renewal after.
    fn set_status(&self, status: Status) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    /// Deregisters from synchronous code (`Drop`), bounded in time.
    fn finish_blocking(&self);
}

/// This instance's entry in the registry; dropping it deregisters.
///
/// Returned by [`gosd::start`](crate::start) and [`Client::register`](crate::Client::register).
/// It displays as the unique name, `<service>-<id>`.
///
/// - **Drop** deregisters at once, bounded by one second, on a thread and
///   runtime of its own: it works when `main` returns, on any runtime
///   flavour, and while the runtime shuts down. (It blocks the dropping
///   thread for that one round trip.)
/// - [`finish`](Self::finish) does the same asynchronously and reports
///   failure.
/// - A process killed without either leaves its entry until the lease
///   runs out (`GOSD_TTL`, 10 s by default); consumers stop routing to it
///   then.
///
/// Bind it to a name for as long as the service runs: `let _ = gosd::start(…)`
/// drops it, and so deregisters, at once.
#[must_use = "dropping a Registration deregisters the instance at once; bind it: `let me = ...`"]
pub struct Registration {
    owner: Arc<dyn Deregister>,
    name: CurrentName,
}

/// The instance's name as it is now, one value shared by its
/// [`Registration`] and the heartbeat: after another URL took the name
/// (`Renewal::Conflict`) the heartbeat registers under a new one, and the
/// `Registration` must name that one, not the name it was born with.
#[derive(Clone)]
pub(crate) struct CurrentName(Arc<ArcSwap<InstanceName>>);

impl CurrentName {
    pub(crate) fn new(name: InstanceName) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(name)))
    }

    pub(crate) fn get(&self) -> Arc<InstanceName> {
        self.0.load_full()
    }

    pub(crate) fn set(&self, name: InstanceName) {
        self.0.store(Arc::new(name));
    }
}

impl fmt::Display for CurrentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.load().as_str())
    }
}

impl Registration {
    pub(crate) fn new(owner: Arc<dyn Deregister>, name: CurrentName) -> Self {
        Self { owner, name }
    }

    /// The unique instance name, `<service>-<id>`, e.g.
    /// `provider-20261121190255.46985214`: the current one, which changes
    /// if another URL took this name in the registry and gosd had to
    /// register again under a new one.
    pub fn name(&self) -> String {
        self.name.to_string()
    }

    /// The service part of the name (the same under every name).
    pub fn service(&self) -> String {
        self.name.get().service().to_owned()
    }

    /// Sets this instance's status and writes it to the registry now;
    /// consumers see it as any other change (pushed within milliseconds
    /// when they watch). `Draining` and `Down` take the instance out of
    /// their picks while it keeps its lease (unless no instance of the
    /// service is up: then picks fail open to all of them); `Up` brings it
    /// back. Every heartbeat writes it again, so it survives a registry
    /// that lost its data.
    ///
    /// # Errors
    /// [`Error::Unreachable`](crate::Error::Unreachable) when the registry
    /// could not be reached: the status is still set, and the next
    /// heartbeat writes it.
    pub async fn set_status(&self, status: Status) -> Result<()> {
        self.owner.set_status(status).await
    }

    /// Deregisters now. Idempotent with every other way of deregistering.
    pub async fn finish(self) -> Result<()> {
        self.owner.finish().await
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.name, f)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registration")
            .field(&self.name.get())
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.owner.finish_blocking();
    }
}
