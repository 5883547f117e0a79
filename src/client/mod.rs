//! The instance-level client: everything the global functions do, on a
//! value you own.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use gosd_driver::{
    Driver, DriverError, DynDriver, Event, EventSink, Fetched, InstanceName, Renewal, Version,
};
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::backoff::backoff;
use crate::config::{Config, DriverKind};
use crate::error::{Error, Result};
use crate::naming::{check_service, check_url, new_instance_name};
use crate::outliers::Outliers;
use crate::registration::{CurrentName, Deregister, Registration};
use crate::route::Route;
use crate::route_future::{Pick, RouteFuture, SlowPath};
use crate::selector::Selector;
use crate::signals::{OnSignal, SignalState};
use crate::snapshot::SharedTable;
use crate::table::{Applied, RouteTable, Sources, Touched};

mod builder;
mod changes;
mod freshness;
mod health;
mod membership;
mod report;
mod stream;
mod telemetry;

pub use builder::ClientBuilder;
use freshness::maintain;
pub use health::IntoHealth;
use membership::heartbeat;

/// How long deregistration may take at shutdown before gosd gives up and
/// lets the lease expire instead.
pub(crate) const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(1);

/// A lease is checked a little after it should have run out, so that the
/// registry has certainly reaped it.
const EXPIRY_GRACE: Duration = Duration::from_millis(15);

/// A subscription that lasted this long counts as having worked.
const STABLE_SUBSCRIPTION: Duration = Duration::from_secs(5);

/// How many fresh names registration tries before giving up.
const NAME_ATTEMPTS: u32 = 10;

/// A discovery client: a route table kept fresh in the background, and at
/// most one registered instance.
///
/// The global functions ([`gosd::start`](crate::start) and friends) are thin
/// wrappers over one `Client`; use a `Client` directly in tests, in
/// libraries, or to run several in one process. Clones share everything.
///
/// What it does in the background, on the Tokio runtime it was built on:
/// - renews its instance's lease every [`Config::heartbeat`], writing the
///   entry again if the registry lost it;
/// - refreshes the table when the earliest lease of another instance runs
///   out, so a crashed instance leaves the table within its TTL;
/// - refreshes the table on the [`Config::cron`] cadence;
/// - after a failure, retries with capped exponential backoff and jitter,
///   logging once when the registry is lost and once when it is back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gosd::Error> {
/// let registry = gosd::MemoryDriver::new();
/// let provider = gosd::Client::builder().driver(registry.clone()).build().await?;
/// let me = provider.register("provider", "http://localhost:3333").await?;
///
/// let consumer = gosd::Client::builder().driver(registry).build().await?;
/// let route = consumer.iterate_service_route("provider").await?;
/// assert_eq!(&*route, "http://localhost:3333");
/// drop(me); // deregisters
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("backend", &self.inner.driver.backend())
            .field("registered", &self.inner.own().map(|o| o.name.to_string()))
            .finish_non_exhaustive()
    }
}

/// One registered instance, as [`Client::instances`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Instance {
    /// The unique name, `<service>-<id>`.
    pub name: String,
    /// The service part of the name.
    pub service: String,
    /// Where it serves.
    pub url: Route,
    /// Its status and metadata: up with none for an entry Go gosd wrote.
    pub meta: gosd_driver::Meta,
}

pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn DynDriver>,
    pub(crate) config: Config,
    runtime: Handle,
    /// The background loops, aborted with the client.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    fresh: Freshness,
    cron: CronClock,
    membership: Membership,
    signals: SignalState,
    outliers: Outliers,
}

/// The table and what keeps it fresh.
struct Freshness {
    table: SharedTable,
    sources: Mutex<Sources>,
    /// Refreshes apply in the order they read the registry.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Wakes the maintenance loop when the table changed.
    wake: Arc<Notify>,
    /// A fetch asked for by events is queued: more events need no other.
    fetch_queued: AtomicBool,
    /// Counts table versions, for `Client::changes`.
    changes: watch::Sender<u64>,
    /// Whether the last registry call failed: logs state changes only.
    registry_down: AtomicBool,
    /// A refusal (not an outage) was logged since the registry was last
    /// fine: logged once however the failures alternate with it.
    refusal_logged: AtomicBool,
    /// Whether push updates are down: logs state changes only.
    watch_down: AtomicBool,
}

/// When the next cron refresh is due, claimable by one caller per tick.
struct CronClock {
    epoch: Instant,
    /// Milliseconds after `epoch` when the next cron refresh is due;
    /// `u64::MAX` when the cron is off.
    cron_due_ms: AtomicU64,
}

/// This client's own registration, if any.
#[derive(Default)]
struct Membership {
    own: Mutex<Option<Own>>,
    /// One registration at a time: a second concurrent `register` must see
    /// the first one's result, not race it.
    registering: tokio::sync::Mutex<()>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// One renewal at a time: a status change and a heartbeat that read
    /// the metadata before it must not land in the other order.
    renewing: tokio::sync::Mutex<()>,
    /// The builder's health check, if it was given one (set once, before
    /// any registration).
    health_check: std::sync::OnceLock<health::Check>,
}

#[derive(Clone)]
pub(crate) struct Own {
    pub(crate) name: CurrentName,
    pub(crate) url: String,
    /// What renewals write: see [`Published`].
    pub(crate) meta: Arc<Mutex<Published>>,
}

/// This instance's status and metadata as renewals write them.
#[derive(Debug)]
pub(crate) struct Published {
    /// The config's metadata, with the status [`Registration::set_status`]
    /// last set (up until then).
    pub(crate) by_hand: gosd_driver::Meta,
    /// The health check's verdict (never, without one).
    pub(crate) unhealthy: bool,
}

impl Published {
    /// What the registry should hold: a failing health check makes an
    /// instance that is up by hand down; draining or down by hand stands.
    pub(crate) fn meta(&self) -> gosd_driver::Meta {
        let mut m = self.by_hand.clone();
        if self.unhealthy && m.status == gosd_driver::Status::Up {
            m.status = gosd_driver::Status::Down;
        }
        m
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: None,
            driver: None,
            handle_signals: false,
            metadata: Vec::new(),
            health_check: None,
        }
    }

    /// A client configured from the environment ([`Config::from_env`]),
    /// connected, registering nothing.
    pub async fn from_env() -> Result<Self> {
        Self::builder().config(Config::from_env()?).build().await
    }

    pub(crate) fn with_parts(config: Config, driver: Arc<dyn DynDriver>, runtime: Handle) -> Self {
        let inner = Arc::new(Inner {
            driver,
            runtime,
            tasks: Mutex::default(),
            fresh: Freshness {
                table: SharedTable::new(),
                // A TTL and a heartbeat: the longest a restored lease of
                // a deregistered instance runs on (the scripts move a
                // stalled lease by at most one heartbeat).
                sources: Mutex::new(Sources::remembering_removals_for(
                    config.ttl + config.heartbeat,
                )),
                refresh_lock: tokio::sync::Mutex::new(()),
                wake: Arc::default(),
                fetch_queued: AtomicBool::new(false),
                changes: watch::Sender::new(0),
                registry_down: AtomicBool::new(false),
                refusal_logged: AtomicBool::new(false),
                watch_down: AtomicBool::new(false),
            },
            cron: CronClock {
                epoch: Instant::now(),
                cron_due_ms: AtomicU64::new(u64::MAX),
            },
            membership: Membership::default(),
            signals: SignalState::default(),
            outliers: Outliers::new(config.eject_after, config.eject_for),
            config,
        });
        lock(&inner.fresh.sources).set_zone(inner.config.zone());
        inner
            .cron
            .cron_due_ms
            .store(inner.next_cron_ms(), Ordering::Relaxed);
        Self { inner }
    }

    /// Registers this instance as `service` at `url` under a fresh unique
    /// name `<service>-<id>`, and keeps its lease alive until the returned
    /// [`Registration`] is dropped or [`finish`](Self::finish) is called.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidUrl`], [`Error::AlreadyRegistered`];
    /// [`Error::Unreachable`] when the registry cannot be reached after
    /// `TryRefreshAmount` attempts.
    pub async fn register(&self, service: &str, url: &str) -> Result<Registration> {
        check_service(service)?;
        check_url(url)?;
        // Held from before the registry write until `own` names what was
        // written: a signal handler waits on it (`Inner::finish_on_signal`),
        // so a signal mid-registration still deregisters.
        let one_at_a_time = self.inner.membership.registering.lock().await;
        if let Some(own) = self.inner.own() {
            return Err(Error::AlreadyRegistered(own.name.to_string()));
        }
        let meta = self.inner.config.metadata.clone();
        let name = CurrentName::new(self.inner.register_fresh(service, url, &meta).await?);
        *lock(&self.inner.membership.own) = Some(Own {
            name: name.clone(),
            url: url.to_owned(),
            meta: Arc::new(Mutex::new(Published {
                by_hand: meta,
                unhealthy: false,
            })),
        });
        let heartbeat = self
            .inner
            .runtime
            .spawn(heartbeat(Arc::downgrade(&self.inner)));
        *lock(&self.inner.membership.heartbeat) = Some(heartbeat);
        drop(one_at_a_time);
        tracing::info!(instance = %name, url, "registered");
        // The registration stands even if this first refresh fails: the
        // background refresher retries, and failing here would leave an
        // instance registered with no Registration to deregister it.
        if let Err(e) = self.inner.refresh().await {
            tracing::warn!(error = %e, "registered, but the first refresh failed; retrying in the background");
        }
        Ok(Registration::new(self.inner.clone(), name))
    }

    /// Refreshes the route table now, retrying `TryRefreshAmount` times
    /// with backoff. If every try fails it returns the error and keeps the
    /// last good table.
    pub async fn get(&self) -> Result<()> {
        self.inner.refresh().await
    }

    /// Starts one background refresh if the cron cadence says one is due;
    /// otherwise returns at once, with no I/O. Never blocks. Call it from
    /// middleware on every request: concurrent callers start at most one
    /// refresh per tick.
    pub fn update_by_cron(&self) {
        if self.inner.claim_cron() {
            let inner = self.inner.clone();
            self.inner
                .runtime
                .spawn(async move { inner.refresh_once().await });
        }
    }

    /// The next URL of `service`, round-robin over its instances.
    ///
    /// Round-robin per thread: each thread keeps its own rotation, so that
    /// threads picking the same service at once do not slow each other
    /// down. Picks from one thread alternate strictly; across threads each
    /// instance's share is within the number of threads of an even split.
    ///
    /// When it has none, refreshes and looks again, up to
    /// `TryFindServiceAmount` times, `TryFindServiceDelay` apart (other
    /// services may still be starting).
    ///
    /// The future does nothing until polled. Polled again after it is
    /// ready, it picks again (and may search again).
    ///
    /// # Errors
    /// [`Error::NoRoute`] naming the service.
    pub fn iterate_service_route<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Future<Output = Result<Route>> + Send + 'a {
        RouteFuture::new(self, service)
    }

    /// The slow path: refresh and look again, `TryFindServiceAmount` times.
    pub(crate) async fn find_route(&self, service: &str) -> Result<Route> {
        let attempts = self.inner.config.try_find_service_amount.max(1);
        for attempt in 1..=attempts {
            if let Err(e) = self.inner.refresh().await {
                tracing::debug!(service, error = %e, "refresh while looking for a route failed");
            }
            if let Some(route) = self.next_route(service) {
                return Ok(route);
            }
            if attempt < attempts {
                tokio::time::sleep(self.inner.config.try_find_service_delay).await;
            }
        }
        Err(Error::NoRoute(service.to_owned()))
    }

    /// The next URL of `service` from the table as it is now, round-robin;
    /// `None` when it has none. Never waits, never refreshes, never
    /// allocates: for synchronous code and hot paths.
    // Out of line on purpose: the pick returns its route in two registers,
    // whatever the caller. Inlined into an awaited pick it made the
    // caller's future spill around it (BENCHMARKS.md, "the pick path's
    // shape").
    #[inline(never)]
    pub fn next_route(&self, service: &str) -> Option<Route> {
        self.inner.fresh.table.pick(service)
    }

    /// The next route of the instances `selector` matches, with the same
    /// rules as [`next_route`](Self::next_route): up ones by weight,
    /// this client's zone first, all matching ones when none is up.
    /// `None` when none matches. Never waits, never refreshes.
    pub fn pick(&self, selector: &Selector) -> Option<Route> {
        self.inner.fresh.table.pick_selected(selector)
    }

    /// [`pick`](Self::pick), refreshing once when nothing matches.
    pub(crate) async fn pick_or_refresh(&self, selector: &Selector) -> Result<Route> {
        if let Some(r) = self.pick(selector) {
            return Ok(r);
        }
        self.get().await?;
        self.pick(selector)
            .ok_or_else(|| Error::NoRoute(selector.service().to_owned()))
    }

    /// Every route `service` has now, sorted by instance name: the
    /// draining and down ones too (picks skip them; see
    /// [`instances`](Self::instances) for each one's status), but not those
    /// the outlier detector has ejected ([`report`](Self::report)).
    pub fn routes(&self, service: &str) -> Vec<Route> {
        self.inner.fresh.table.with(|t| t.routes(service).to_vec())
    }

    /// Every registered instance this client knows of, sorted by name (not
    /// the manual routes, which have no instance behind them).
    pub fn instances(&self) -> Vec<Instance> {
        lock(&self.inner.fresh.sources)
            .instances_with_meta()
            .into_iter()
            .map(|(name, url, meta)| Instance {
                service: name.service().to_owned(),
                name: name.to_string(),
                url,
                meta,
            })
            .collect()
    }

    /// Time left on every live lease in the registry, by instance name;
    /// instances without a lease (Go gosd's) are absent. One read from the
    /// registry: for status pages, not for every request.
    pub async fn leases(&self) -> Result<std::collections::HashMap<String, Duration>> {
        Ok(self.inner.driver.leases().await?.into_iter().collect())
    }

    /// The services that have at least one route now, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .fresh
            .table
            .with(|t| t.services().map(str::to_owned).collect());
        names.sort();
        names
    }

    /// Stops routing to `url` now, in this client.
    ///
    /// In the registry, it removes entries with that URL **only** when they
    /// have no live lease (expired, or written by Go gosd or by hand): a
    /// consumer cannot take a healthy provider out for everyone. A healthy
    /// one comes back into this client's table with the next refresh,
    /// which reads the registry whole.
    pub async fn delete_service_with_url(&self, url: &str) -> Result<()> {
        {
            let mut sources = lock(&self.inner.fresh.sources);
            sources.remove_url(url);
            self.inner.rebuild(&mut sources, &Touched::All);
        }
        let removed = self.inner.driver.remove_stale(url).await?;
        if removed > 0 {
            tracing::info!(url, removed, "removed stale registry entries");
        }
        Ok(())
    }

    /// Adds a local route that every refresh keeps. It is not written to
    /// the registry.
    ///
    /// # Errors
    /// [`Error::InvalidName`] or [`Error::InvalidUrl`].
    pub fn add_service_manually(&self, service: &str, url: &str) -> Result<()> {
        check_service(service)?;
        check_url(url)?;
        let mut sources = lock(&self.inner.fresh.sources);
        sources.add_manual(service, Route::new(url));
        self.inner.rebuild(&mut sources, &Touched::service(service));
        Ok(())
    }

    /// Sets this client's instance's status, if it has one; see
    /// [`Registration::set_status`].
    ///
    /// # Errors
    /// As [`Registration::set_status`].
    pub async fn set_status(&self, status: gosd_driver::Status) -> Result<()> {
        self.inner.set_status(status).await
    }

    /// Deregisters this client's instance now, if it has one. Idempotent.
    ///
    /// # Errors
    /// [`Error::Driver`] when the registry could not be told; the lease
    /// then runs out within the TTL.
    pub async fn finish(&self) -> Result<()> {
        self.inner.finish().await
    }

    /// Resolves on SIGINT or SIGTERM, after this client's instance has
    /// deregistered. Calling it hands the exit to the app: gosd then does
    /// not exit the process on a signal. Made for graceful shutdown, e.g.
    /// axum's `with_graceful_shutdown(client.shutdown_signal())`.
    pub async fn shutdown_signal(&self) {
        // Before installing: a signal handled in between must not exit.
        let shutdown = self.inner.signals.hand_exit_to_app();
        crate::signals::install(&self.inner, &self.inner.runtime);
        shutdown.await;
    }

    /// The instance this client registered, if any: `<service>-<id>`.
    pub fn instance_name(&self) -> Option<String> {
        self.inner.own().map(|o| o.name.to_string())
    }
}

impl Inner {
    pub(crate) fn own(&self) -> Option<Own> {
        lock(&self.membership.own).clone()
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        lock(&self.tasks).push(self.runtime.spawn(task));
    }
}

impl Pick for Client {
    #[inline(always)]
    fn next_route(&self, service: &str) -> Option<Route> {
        Client::next_route(self, service)
    }

    /// Out of line: the search's future is large, and building it inside
    /// `poll` would make every caller reserve room for it.
    #[inline(never)]
    fn search<'a>(&'a self, service: &'a str) -> SlowPath<'a> {
        Box::pin(self.find_route(service))
    }
}

impl OnSignal for Inner {
    fn signal_state(&self) -> &SignalState {
        &self.signals
    }

    fn deregister_on_signal(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.finish_on_signal().await; // logs its own failure
        })
    }
}

impl Deregister for Inner {
    fn finish(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(Inner::finish(self))
    }

    fn set_status(
        &self,
        status: gosd_driver::Status,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(Inner::set_status(self, status))
    }

    fn finish_blocking(&self) {
        Inner::finish_blocking(self);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(h) = lock(&self.membership.heartbeat).take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cadence whose next tick is months away, so no real tick can fall
    /// inside the test.
    fn yearly() -> Config {
        Config {
            cron: Some("0 0 0 1 1 *".parse().unwrap()),
            ..Config::default()
        }
    }

    /// A client without its background tasks, whose maintain loop would
    /// otherwise be one more (legitimate) claimant of the tick.
    fn without_tasks(config: Config) -> Client {
        Client::with_parts(
            config,
            Arc::new(gosd_memory::MemoryDriver::new()),
            Handle::current(),
        )
    }

    /// Whether the maintain loop was woken since the last look (the
    /// notification is a stored permit).
    fn woken(inner: &Inner) -> bool {
        let notified = std::pin::pin!(inner.fresh.wake.notified());
        let waker = std::task::Waker::noop();
        notified
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }

    #[tokio::test]
    async fn a_pushed_change_wakes_the_maintain_loop_only_for_a_sooner_check() {
        let client = without_tasks(Config {
            cron: None,
            ..Config::default()
        });
        let inner = &client.inner;
        inner.refresh_once().await.unwrap();
        woken(inner);
        let known = lock(&inner.fresh.sources).version().unwrap();
        let mut at = known;
        let mut put = |id: &str, lease: u64| {
            let since = at.revision;
            at.revision += 1;
            at.entries += 1;
            Event::Put {
                version: at,
                since,
                entry: gosd_driver::Entry {
                    field: format!("svc-{id}"),
                    url: format!("http://h{id}:1"),
                    meta: Default::default(),
                },
                lease: Some(Duration::from_secs(lease)),
            }
        };
        let (first, later, sooner) = (put("1", 60), put("2", 3600), put("3", 1));
        inner.on_event(first);
        assert!(
            woken(inner),
            "the first lease: a check where there was none"
        );
        inner.on_event(later);
        assert!(!woken(inner), "a later lease moves no check");
        inner.on_event(sooner);
        assert!(woken(inner), "a shorter lease: a sooner check");
        assert_eq!(client.routes("svc").len(), 3, "all three applied");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_due_tick_is_claimed_exactly_once_by_concurrent_callers() {
        let client = without_tasks(yearly());
        let inner = &client.inner;
        assert!(!inner.claim_cron(), "not due yet: no claim, no I/O");
        inner.cron.cron_due_ms.store(0, Ordering::Release); // the tick is due now
        let claims = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if inner.claim_cron() {
                            claims.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(claims.into_inner(), 1);
        assert!(
            inner.cron_due().unwrap() > Instant::now(),
            "the next tick is scheduled"
        );
    }

    #[tokio::test]
    async fn cron_off_never_claims() {
        let client = without_tasks(Config {
            cron: None,
            ..Config::default()
        });
        assert!(client.inner.cron_due().is_none());
        assert!(!client.inner.claim_cron());
    }
}
