use std::fmt;
use std::sync::Arc;

use gosd_driver::InstanceName;

use crate::client::Inner;
use crate::error::Result;

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
    inner: Arc<Inner>,
    name: InstanceName,
}

impl Registration {
    pub(crate) fn new(inner: Arc<Inner>, name: InstanceName) -> Self {
        Self { inner, name }
    }

    /// The unique instance name, `<service>-<id>`, e.g.
    /// `provider-20261121190255.46985214`.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The service part of the name.
    pub fn service(&self) -> &str {
        self.name.service()
    }

    /// Deregisters now. Idempotent with every other way of deregistering.
    pub async fn finish(self) -> Result<()> {
        self.inner.finish().await
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registration").field(&self.name).finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.finish_blocking();
    }
}
