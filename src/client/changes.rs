//! Watching the table change: a version counter, and streams of
//! instance changes for one service or all, as load balancers and status
//! pages want them.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Client, lock};
use crate::service_watch::ServiceWatch;

impl Client {
    /// Notified each time the route table changes; the value counts table
    /// versions. For watching routes change without polling:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gosd::Error> {
    /// # let client = gosd::Client::builder().driver(gosd::MemoryDriver::new()).build().await?;
    /// let mut changes = client.changes();
    /// client.add_service_manually("legacy", "http://legacy:80")?;
    /// changes.changed().await.expect("the client is alive");
    /// assert_eq!(client.routes("legacy").len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.fresh.changes.subscribe()
    }

    /// The instances of `service` that take new requests as a stream of
    /// [`Change`](crate::Change)s: an [`Insert`](crate::Change::Insert) for
    /// each one there is now, then one change per instance as this
    /// client's table takes changes in. For load balancers such as tower's
    /// `Discover`; see [`ServiceWatch`].
    ///
    /// It follows the picks' rule: an instance set draining or down while
    /// another instance of the service is up is removed, and inserted
    /// again once it is up (or once none is: fail open). See
    /// [`watch_selected`](Self::watch_selected), which this is with a
    /// selector that matches every instance.
    pub fn watch_service(&self, service: &str) -> ServiceWatch {
        self.watch_selected(&crate::selector::Selector::new(service))
    }

    /// Every instance of every service as one stream of
    /// [`Change`](crate::Change)s, as [`watch_service`](Self::watch_service)
    /// gives for one: an [`Insert`](crate::Change::Insert) for each instance
    /// there is now, then one change per instance as the table takes them
    /// in. [`InstanceName::service`](crate::InstanceName::service) tells
    /// which service a change is of. For status pages and registry-wide
    /// tools, it has every instance, whatever its status (see
    /// [`instances`](Self::instances) for each one's); a balancer wants
    /// one service's, which has only those that take new requests.
    pub fn watch_all_services(&self) -> ServiceWatch {
        let inner = Arc::downgrade(&self.inner);
        let read = Box::new(move || {
            let inner = inner.upgrade()?;
            Some(lock(&inner.fresh.sources).instances())
        });
        ServiceWatch::new(read, self.inner.fresh.changes.subscribe())
    }
}
