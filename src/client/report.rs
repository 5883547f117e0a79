//! What a caller tells of a request it made through a picked route: the
//! outlier detector's verdict, and the ejection from the picks (and the
//! return to them) it may bring.

use std::sync::Arc;
use std::time::Duration;

use super::{Client, lock, telemetry};
use crate::outliers::{Outcome, Verdict};
use crate::route::Route;
use crate::table::Touched;

impl Client {
    /// Tells the outlier detector what a request to `route` (a route this
    /// client picked) did. After [`Config::eject_after`](crate::Config::eject_after) failures in a row
    /// the instance gets no picks from this client (from any caller in the
    /// process that uses it) for [`Config::eject_for`](crate::Config::eject_for); then it is back.
    /// The last pickable instance of a service is never taken out: better
    /// a request that may fail than none that can succeed (logged once).
    ///
    /// Picks do not look at the detector: an ejection rebuilds the route
    /// lists, and picks stay lock- and allocation-free. A success while
    /// nothing fails costs one atomic load.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gosd::Error> {
    /// use gosd::Outcome;
    /// let client = gosd::Client::builder().driver(gosd::MemoryDriver::new()).build().await?;
    /// client.add_service_manually("api", "http://10.0.0.1:80")?;
    /// client.add_service_manually("api", "http://10.0.0.2:80")?;
    /// let dead = client.next_route("api").unwrap();
    /// for _ in 0..3 {
    ///     client.report(&dead, Outcome::ConnectFailure);
    /// }
    /// assert!(!client.routes("api").contains(&dead), "ejected for 10 s");
    /// let last = client.next_route("api").unwrap();
    /// for _ in 0..3 {
    ///     client.report(&last, Outcome::Timeout);
    /// }
    /// assert_eq!(client.routes("api"), [last], "the last one stays");
    /// # Ok(()) }
    /// ```
    pub fn report(&self, route: &Route, outcome: Outcome) {
        let inner = &self.inner;
        if outcome == Outcome::Success {
            inner.outliers.success(route);
            return;
        }
        // The services whose pick lists hold `route`, and whether each
        // keeps another route without it.
        let (services, can_eject) = inner.fresh.table.with(|t| {
            let mut services = Vec::new();
            let mut can_eject = !inner.config.eject_for.is_zero();
            for service in t.services() {
                let routes = t.routes(service);
                if routes.contains(route) {
                    can_eject &= routes.len() > 1;
                    services.push(Box::<str>::from(service));
                }
            }
            (services, can_eject)
        });
        if services.is_empty() {
            return; // not (or no longer) routed to: nothing to take out
        }
        let in_table = |r: &Route| {
            inner
                .fresh
                .table
                .with(|t| t.services().any(|s| t.routes(s).contains(r)))
        };
        match inner.outliers.failure(route, can_eject, in_table) {
            Verdict::Nothing => {}
            Verdict::KeepLast => tracing::warn!(
                url = %route,
                ?outcome,
                "failing, but the last instance of its service: still routed to (fail open)"
            ),
            Verdict::Eject => {
                let cooldown = inner.config.eject_for;
                tracing::warn!(
                    url = %route,
                    ?outcome,
                    failures = inner.config.eject_after,
                    "ejected: no picks for {}",
                    humantime::format_duration(cooldown)
                );
                services.iter().for_each(|s| telemetry::ejected(s));
                let touched = Touched::services(services);
                {
                    let mut sources = lock(&inner.fresh.sources);
                    sources.set_ejected(route, true);
                    inner.rebuild(&mut sources, &touched);
                }
                let weak = Arc::downgrade(inner);
                let route = route.clone();
                // Not kept in `tasks`, which would grow with each ejection:
                // it holds the client weakly, so it ends with it.
                inner.runtime.spawn(async move {
                    tokio::time::sleep(cooldown).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let mut sources = lock(&inner.fresh.sources);
                    sources.set_ejected(&route, false);
                    inner.rebuild(&mut sources, &touched);
                    drop(sources);
                    inner.outliers.restored(&route);
                    tracing::info!(url = %route, "ejection over: routed to again");
                });
            }
        }
    }

    /// How much longer `route` gets no picks from this client, when the
    /// outlier detector has ejected it ([`report`](Self::report)); `None`
    /// when it is routed to. For status pages: picks already skip it.
    pub fn ejected_for(&self, route: &Route) -> Option<Duration> {
        self.inner.outliers.ejected_for(route)
    }
}
