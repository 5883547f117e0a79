//! The change stream of the instances that take new requests, for
//! balancers (tower's `Discover`, tonic's `balance_channel`): it follows
//! the picks' rule, so that a balancer avoids what a pick avoids.

use std::sync::Arc;

use gosd_driver::Meta;

use super::{Client, lock};
use crate::pick_order::taking_requests;
use crate::service_watch::ServiceWatch;

impl Client {
    /// The instances `selector` matches that take new requests, as a
    /// stream of [`Change`](crate::Change)s, as [`watch_service`](Self::watch_service)
    /// gives them for all of a service's instances: for a balancer over
    /// one version, say.
    ///
    /// The rule is a pick's, among the matching instances: those that are
    /// up; all of them when none is (fail open). A matching instance set
    /// draining or down while another matching one is up is removed, and
    /// inserted again when it is up or when no matching one is. Weights and
    /// zones, which order picks, leave the stream alone: a balancer has a
    /// policy of its own. So does the outlier detector
    /// ([`report`](Self::report)), whose ejections are this process's and
    /// short: a balancer already steers away from an instance that fails
    /// its requests, and a removal would cost it the instance's connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gosd::Error> {
    /// use gosd::{Change, Status};
    /// let registry = gosd::MemoryDriver::new();
    /// let mut canaries = Vec::new();
    /// for (url, version) in [("http://canary-1:80", "2.1.0"), ("http://canary-2:80", "2.1.0"), ("http://stable:80", "2.0.0")] {
    ///     let provider = gosd::Client::builder()
    ///         .driver(registry.clone())
    ///         .metadata("version", version)
    ///         .build()
    ///         .await?;
    ///     let me = provider.register("provider", url).await?;
    ///     canaries.push((provider, me));
    /// }
    /// let client = gosd::Client::builder().driver(registry).build().await?;
    /// let mut v21 = client.watch_selected(&gosd::Selector::new("provider").with("version", "2.1.0"));
    /// let mut first = Vec::new();
    /// for _ in 0..2 {
    ///     let Some(Change::Insert(_, route)) = v21.next().await else { panic!() };
    ///     first.push(route.to_string()); // in the order of the instances' names
    /// }
    /// first.sort();
    /// assert_eq!(first, ["http://canary-1:80", "http://canary-2:80"]);
    /// canaries[0].1.set_status(Status::Draining).await?;
    /// client.get().await?;
    /// let Some(Change::Remove(name)) = v21.next().await else { panic!() };
    /// assert_eq!(name.as_str(), canaries[0].1.name());
    /// # Ok(()) }
    /// ```
    pub fn watch_selected(&self, selector: &crate::selector::Selector) -> ServiceWatch {
        let inner = Arc::downgrade(&self.inner);
        let selector = selector.clone();
        let read = Box::new(move || {
            let inner = inner.upgrade()?;
            let all = lock(&inner.fresh.sources).instances_of(selector.service());
            let matching: Vec<_> = all
                .into_iter()
                .filter(|(_, _, meta)| selector.matches(meta))
                .collect();
            let metas: Vec<&Meta> = matching.iter().map(|(_, _, meta)| meta).collect();
            let (taking, _) = taking_requests(&metas);
            let taking = taking
                .into_iter()
                .map(|i| (matching[i].0.clone(), matching[i].1.clone()));
            Some(taking.collect())
        });
        ServiceWatch::new(read, self.inner.fresh.changes.subscribe())
    }
}
