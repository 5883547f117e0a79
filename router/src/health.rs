//! Passive health checks: what each instance's requests did, and which
//! instances are ejected for a while after failing repeatedly.
//!
//! The counters are kept for the URLs the route table holds, and only
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
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use gosd::Route;
use tokio::sync::watch;

use crate::telemetry::ServiceMetrics;

/// Consecutive failures that eject an instance.
pub(crate) const EJECT_AFTER: u64 = 3;
/// How long an ejected instance gets no traffic from this router, by default.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(10);

/// Counters of one instance, by URL.
pub(crate) struct Stats {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    consecutive_failures: AtomicU64,
    /// Nanoseconds after [`Health::epoch`] until which the instance is
    /// ejected; 0 when it never was. An atomic rather than a mutex, so that
    /// checking an instance takes no lock.
    ejected_until: AtomicU64,
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
    fn of_service(metrics: Arc<ServiceMetrics>) -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
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
    epoch: Instant,
    cooldown: Duration,
}

impl Health {
    pub(crate) fn new(cooldown: Duration) -> Self {
        Self {
            by_url: ArcSwap::default(),
            writer: Mutex::default(),
            synced: watch::Sender::new(0),
            epoch: Instant::now(),
            cooldown,
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
        for service in &services {
            for route in client.routes(service) {
                let stats = match current.get(&route) {
                    Some(s) => s.clone(),
                    None => Arc::new(Stats::of_service(metrics_of(&mut by_service, service))),
                };
                next.insert(route, stats);
            }
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

    pub(crate) fn succeeded(&self, s: &Stats) {
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure of `url`; ejects it after [`EJECT_AFTER`] in a row.
    pub(crate) fn failed(&self, url: &str, s: &Stats) {
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.errors.fetch_add(1, Ordering::Relaxed);
        let failures = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= EJECT_AFTER {
            s.consecutive_failures.store(0, Ordering::Relaxed);
            let until = self
                .nanos(Instant::now())
                .saturating_add(nanos(self.cooldown));
            s.ejected_until.store(until, Ordering::Relaxed);
            s.metrics.ejected();
            tracing::warn!(url, failures, cooldown = ?self.cooldown, "instance ejected after repeated failures");
        }
    }

    pub(crate) fn is_ejected(&self, s: &Stats, now: Instant) -> bool {
        s.ejected_until.load(Ordering::Relaxed) > self.nanos(now)
    }

    pub(crate) fn ejected_for(&self, s: &Stats, now: Instant) -> Option<Duration> {
        let until = s.ejected_until.load(Ordering::Relaxed);
        let now = self.nanos(now);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// `at` as nanoseconds after the epoch.
    fn nanos(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch))
    }
}

/// `d` in nanoseconds; u64 holds 584 years of them, and saturates beyond.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_eject_for_the_cooldown() {
        let cooldown = Duration::from_secs(10);
        let health = Health::new(cooldown);
        let s = Stats::default();
        assert!(!health.is_ejected(&s, Instant::now()));
        health.failed("http://a", &s);
        health.failed("http://a", &s);
        health.succeeded(&s);
        health.failed("http://a", &s);
        health.failed("http://a", &s);
        assert!(
            !health.is_ejected(&s, Instant::now()),
            "a success resets the run"
        );
        let before = Instant::now();
        health.failed("http://a", &s);
        let after = Instant::now();
        // Ejected from the third failure, which came between the two, for
        // exactly the cooldown.
        assert!(health.is_ejected(&s, after));
        assert!(health.is_ejected(&s, before + cooldown - Duration::from_nanos(1)));
        assert!(!health.is_ejected(&s, after + cooldown));
        assert!(health.ejected_for(&s, after).is_some_and(|d| d <= cooldown));
        assert_eq!(health.ejected_for(&s, after + cooldown), None);
        assert_eq!(
            (
                s.requests.load(Ordering::Relaxed),
                s.errors.load(Ordering::Relaxed)
            ),
            (6, 5)
        );
    }

    #[test]
    fn a_cooldown_too_long_to_represent_saturates_instead_of_panicking() {
        let health = Health::new(Duration::MAX);
        let s = Stats::default();
        for _ in 0..EJECT_AFTER {
            health.failed("http://a", &s);
        }
        assert!(health.is_ejected(&s, Instant::now()));
    }
}
