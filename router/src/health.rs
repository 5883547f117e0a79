//! What each instance's requests did: the counters the status page and
//! the metrics show. Which instances are ejected after failing repeatedly
//! is the gosd client's outlier detector's to say (`gosd::Client::report`),
//! so that the router and every other caller in the process share one view.
//!
//! The counters are kept for the URLs the route table holds (its
//! instances, ejected ones included, and its manual routes), and only
//! those: a task woken by each table change (see `Router::new`) rebuilds
//! the map from the table, keeping the counters of every URL still in it
//! (an ejected instance that is still registered stays ejected) and
//! dropping the rest. Without that, every URL ever seen (each ephemeral
//! port of instances that came and went) would stay for the router's life.
//!
//! Requests never lock: the map is an immutable snapshot behind an
//! [`ArcSwap`], rebuilt whole like the route table itself, and each
//! instance's counters are atomics behind an `Arc` a request looks up once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};
use gosd::Route;
use tokio::sync::watch;

use crate::telemetry::ServiceMetrics;

/// Counters of one instance, by URL.
pub(crate) struct Stats {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// The metric handles of the instance's service.
    pub(crate) metrics: Arc<ServiceMetrics>,
}

impl Default for Stats {
    /// Counters of no service's: their metrics record nothing.
    fn default() -> Self {
        Self::of_service(Arc::default())
    }
}

impl Stats {
    /// Counts a request the instance answered.
    pub(crate) fn succeeded(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request the instance did not answer.
    pub(crate) fn failed(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn of_service(metrics: Arc<ServiceMetrics>) -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            metrics,
        }
    }
}

/// Every service's metric handles, by name: made once per service, kept
/// while the table holds the service.
type ByService = HashMap<String, Arc<ServiceMetrics>>;

/// Every URL of the table, with its counters.
pub(crate) type Known = HashMap<Route, Arc<Stats>>;

/// Every instance's counters.
pub(crate) struct Health {
    by_url: ArcSwap<Known>,
    /// Serialises the writers (a table sync, a request inserting a URL the
    /// sync has not reached yet), so that neither loses the other's entry,
    /// and holds the services' metric handles, which only writers touch.
    /// Requests that find their URL never take it.
    writer: Mutex<ByService>,
    /// The table version (a value of `gosd::Client::changes`) the map
    /// last followed, for whoever waits until it has.
    synced: watch::Sender<u64>,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            by_url: ArcSwap::default(),
            writer: Mutex::default(),
            synced: watch::Sender::new(0),
        }
    }

    /// The map as it is now. No lock; drop it before awaiting.
    pub(crate) fn known(&self) -> Guard<Arc<Known>> {
        self.by_url.load()
    }

    /// How many URLs have counters.
    pub(crate) fn len(&self) -> usize {
        self.by_url.load().len()
    }

    /// Waits until the map has followed table version `version` or a
    /// later one.
    pub(crate) async fn synced(&self, version: u64) {
        let mut synced = self.synced.subscribe();
        // `self` holds the sender, so the wait cannot end in an error.
        let _ = synced.wait_for(|v| *v >= version).await;
    }

    /// The counters of `route`, a route of `service` taken from `client`'s
    /// table. Found in `known` unless the table gained `route` since the
    /// last sync; then it is added, provided the table still holds it.
    pub(crate) fn of(
        &self,
        known: &Known,
        client: &gosd::Client,
        service: &str,
        route: &Route,
    ) -> Arc<Stats> {
        if let Some(s) = known.get(route) {
            return s.clone();
        }
        let mut by_service = lock(&self.writer);
        let current = self.by_url.load();
        if let Some(s) = current.get(route) {
            return s.clone();
        }
        let stats = Arc::new(Stats::of_service(metrics_of(&mut by_service, service)));
        // A route that left the table since it was picked gets counters no
        // one keeps: the next sync would drop them anyway.
        if client.routes(service).contains(route) {
            let mut next = Known::clone(&current);
            next.insert(route.clone(), stats.clone());
            self.by_url.store(Arc::new(next));
        }
        stats
    }

    /// Makes the map hold exactly the URLs of `client`'s table, keeping
    /// the counters of those it already had. `version` is the table version
    /// read before the table was.
    pub(crate) fn sync(&self, client: &gosd::Client, version: u64) {
        let mut by_service = lock(&self.writer);
        let current = self.by_url.load();
        let mut next = Known::with_capacity(current.len());
        let services = client.services();
        let mut keep = |service: &str, route: Route| {
            if next.contains_key(&route) {
                return;
            }
            let stats = match current.get(&route) {
                Some(s) => s.clone(),
                None => Arc::new(Stats::of_service(metrics_of(&mut by_service, service))),
            };
            next.insert(route, stats);
        };
        for service in &services {
            for route in client.routes(service) {
                keep(service, route);
            }
        }
        // The instances ejected from the picks are not in `routes`, and
        // keep their counters while they are out.
        for instance in client.instances() {
            keep(&instance.service, instance.url);
        }
        by_service.retain(|service, _| services.binary_search(service).is_ok());
        let (before, after) = (current.len(), next.len());
        drop(current);
        self.by_url.store(Arc::new(next));
        drop(by_service);
        tracing::trace!(before, after, version, "instance counters follow the table");
        self.synced.send_if_modified(|synced| {
            let newer = version > *synced;
            if newer {
                *synced = version;
            }
            newer
        });
    }
}

/// `service`'s metric handles, made on first use.
fn metrics_of(by_service: &mut ByService, service: &str) -> Arc<ServiceMetrics> {
    if let Some(m) = by_service.get(service) {
        return m.clone();
    }
    let m = Arc::new(ServiceMetrics::new(service));
    by_service.insert(service.to_owned(), m.clone());
    m
}

/// Locks the writers' mutex. A panicked holder leaves at worst a missing
/// service entry, made again on next use.
fn lock(m: &Mutex<ByService>) -> MutexGuard<'_, ByService> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
