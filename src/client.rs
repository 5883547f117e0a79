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
use crate::registration::{CurrentName, Deregister, Registration};
use crate::route::Route;
use crate::route_future::{Pick, RouteFuture, SlowPath};
use crate::service_watch::ServiceWatch;
use crate::signals::{OnSignal, SignalState};
use crate::snapshot::SharedTable;
use crate::table::{Applied, RouteTable, Sources, Touched};

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
}

/// Builds a [`Client`]: from [`Config::default`] unless you pass a config,
/// with the driver the config names unless you pass one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gosd::Error> {
/// let mut config = gosd::Config::from_env()?;
/// config.cron = None; // refresh on lease expiry and on demand only
/// let client = gosd::Client::builder()
///     .config(config)
///     .driver(gosd::MemoryDriver::new())
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until .build().await"]
pub struct ClientBuilder {
    config: Option<Config>,
    driver: Option<Arc<dyn DynDriver>>,
    handle_signals: bool,
}

impl ClientBuilder {
    /// Uses these settings instead of [`Config::default`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses this driver instead of the one [`Config::driver`] names.
    pub fn driver(mut self, driver: impl Driver) -> Self {
        self.driver = Some(Arc::new(driver));
        self
    }

    /// On SIGINT/SIGTERM, deregister and exit the process with status 130
    /// or 143 (unless the app called [`Client::shutdown_signal`]). Off by
    /// default for a `Client`; [`gosd::start`](crate::start) turns it on.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Connects: loads the route table (retrying `TryRefreshAmount` times
    /// with backoff) and starts the background refresher on the current
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Unreachable`] naming the registry's address when it cannot
    /// be reached; [`Error::Config`] when the config cannot be used.
    pub async fn build(self) -> Result<Client> {
        let config = self.config.unwrap_or_default();
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let driver = match self.driver {
            Some(d) => d,
            None => driver_for(&config)?,
        };
        let client = Client::with_parts(config, driver, runtime);
        client.inner.refresh().await?;
        client.inner.spawn(maintain(Arc::downgrade(&client.inner)));
        if client.inner.config.watch {
            client.inner.spawn(watch(Arc::downgrade(&client.inner)));
        }
        if self.handle_signals {
            crate::signals::install(&client.inner, &client.inner.runtime);
        }
        Ok(client)
    }
}

/// The driver a config names.
fn driver_for(config: &Config) -> Result<Arc<dyn DynDriver>> {
    match config.driver {
        DriverKind::Memory => Ok(Arc::new(crate::shared_memory::shared_memory_registry())),
        DriverKind::Redis => redis_driver(config),
        DriverKind::Etcd => etcd_driver(config),
    }
}

#[cfg(feature = "etcd")]
fn etcd_driver(config: &Config) -> Result<Arc<dyn DynDriver>> {
    let options = config.etcd_options()?;
    Ok(Arc::new(gosd_etcd::EtcdDriver::new(options)))
}

#[cfg(not(feature = "etcd"))]
fn etcd_driver(_: &Config) -> Result<Arc<dyn DynDriver>> {
    Err(Error::Config {
        var: "GOSD_DRIVER".into(),
        value: "etcd".into(),
        reason: "gosd was built without its `etcd` feature; enable it (features = [\"etcd\"])"
            .into(),
    })
}

#[cfg(feature = "redis")]
fn redis_driver(config: &Config) -> Result<Arc<dyn DynDriver>> {
    let options = config.redis_options()?;
    Ok(Arc::new(gosd_redis::RedisDriver::new(options)))
}

#[cfg(not(feature = "redis"))]
fn redis_driver(_: &Config) -> Result<Arc<dyn DynDriver>> {
    Err(Error::Config {
        var: "GOSD_DRIVER".into(),
        value: "redis".into(),
        reason: "gosd was built without its `redis` feature; enable it or use GOSD_DRIVER=memory"
            .into(),
    })
}

pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn DynDriver>,
    pub(crate) config: Config,
    table: SharedTable,
    sources: Mutex<Sources>,
    /// Refreshes apply in the order they read the registry.
    refresh_lock: tokio::sync::Mutex<()>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the next cron refresh is due;
    /// `u64::MAX` when the cron is off.
    cron_due_ms: AtomicU64,
    runtime: Handle,
    /// Wakes the maintenance loop when the table changed.
    wake: Arc<Notify>,
    own: Mutex<Option<Own>>,
    /// One registration at a time: a second concurrent `register` must see
    /// the first one's result, not race it.
    registering: tokio::sync::Mutex<()>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Whether the last registry call failed: logs state changes only.
    registry_down: AtomicBool,
    /// Whether push updates are down: logs state changes only.
    watch_down: AtomicBool,
    /// A fetch asked for by events is queued: more events need no other.
    fetch_queued: AtomicBool,
    /// Counts table versions, for `Client::changes`.
    changes: watch::Sender<u64>,
    signals: SignalState,
}

#[derive(Clone)]
pub(crate) struct Own {
    pub(crate) name: CurrentName,
    pub(crate) url: String,
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
            table: SharedTable::new(),
            sources: Mutex::default(),
            refresh_lock: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
            cron_due_ms: AtomicU64::new(u64::MAX),
            runtime,
            wake: Arc::default(),
            own: Mutex::default(),
            registering: tokio::sync::Mutex::new(()),
            heartbeat: Mutex::default(),
            tasks: Mutex::default(),
            registry_down: AtomicBool::new(false),
            watch_down: AtomicBool::new(false),
            fetch_queued: AtomicBool::new(false),
            changes: watch::Sender::new(0),
            signals: SignalState::default(),
            config,
        });
        inner
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
        let one_at_a_time = self.inner.registering.lock().await;
        if let Some(own) = self.inner.own() {
            return Err(Error::AlreadyRegistered(own.name.to_string()));
        }
        let name = CurrentName::new(self.inner.register_fresh(service, url).await?);
        *lock(&self.inner.own) = Some(Own {
            name: name.clone(),
            url: url.to_owned(),
        });
        let heartbeat = self
            .inner
            .runtime
            .spawn(heartbeat(Arc::downgrade(&self.inner)));
        *lock(&self.inner.heartbeat) = Some(heartbeat);
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
        self.inner.table.pick(service)
    }

    /// Every route `service` has now, in rotation order.
    pub fn routes(&self, service: &str) -> Vec<Route> {
        self.inner.table.with(|t| t.routes(service).to_vec())
    }

    /// Every registered instance this client knows of, sorted by name (not
    /// the manual routes, which have no instance behind them).
    pub fn instances(&self) -> Vec<Instance> {
        lock(&self.inner.sources)
            .instances()
            .into_iter()
            .map(|(name, url)| Instance {
                service: name.service().to_owned(),
                name: name.to_string(),
                url,
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
            let mut sources = lock(&self.inner.sources);
            sources.remove_url(url);
            self.inner.rebuild(&sources, &Touched::All);
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
        let mut sources = lock(&self.inner.sources);
        sources.add_manual(service, Route::new(url));
        self.inner.rebuild(&sources, &Touched::service(service));
        Ok(())
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
        self.inner.changes.subscribe()
    }

    /// The instances of `service` as a stream of [`Change`](crate::Change)s:
    /// an [`Insert`](crate::Change::Insert) for each one there is now, then one
    /// change per instance as this client's table takes changes in. For
    /// load balancers such as tower's `Discover`; see [`ServiceWatch`].
    pub fn watch_service(&self, service: &str) -> ServiceWatch {
        let inner = Arc::downgrade(&self.inner);
        let service = service.to_owned();
        let read = Box::new(move || {
            let inner = inner.upgrade()?;
            Some(lock(&inner.sources).instances_of(&service))
        });
        ServiceWatch::new(read, self.inner.changes.subscribe())
    }

    /// The instance this client registered, if any: `<service>-<id>`.
    pub fn instance_name(&self) -> Option<String> {
        self.inner.own().map(|o| o.name.to_string())
    }
}

impl Inner {
    pub(crate) fn own(&self) -> Option<Own> {
        lock(&self.own).clone()
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        lock(&self.tasks).push(self.runtime.spawn(task));
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn next_cron_ms(&self) -> u64 {
        self.config
            .cron
            .as_ref()
            .and_then(|c| c.until_next())
            .map_or(u64::MAX, |d| self.now_ms() + d.as_millis() as u64)
    }

    fn cron_due(&self) -> Option<Instant> {
        match self.cron_due_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.epoch + Duration::from_millis(ms)),
        }
    }

    /// True for exactly one caller per due cron tick.
    fn claim_cron(&self) -> bool {
        let due = self.cron_due_ms.load(Ordering::Acquire);
        if due == u64::MAX || self.now_ms() < due {
            return false;
        }
        let next = self.next_cron_ms();
        self.cron_due_ms
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// One refresh attempt; logs registry loss and recovery once each.
    ///
    /// It sends the version we know, so when nothing changed it costs one
    /// command and returns no table.
    async fn refresh_once(&self) -> Result<(), DriverError> {
        let _serial = self.refresh_lock.lock().await;
        let (known, read_whole) = {
            let sources = lock(&self.sources);
            (sources.version(), sources.read_whole_due(Instant::now()))
        };
        if read_whole {
            self.read_whole(known).await?;
        } else {
            let (fetched, received) = self.fetch(known).await?;
            // Some(version we are at): the answer was not enough.
            let read_whole_from = {
                let mut sources = lock(&self.sources);
                let (touched, read_whole_from) = match fetched {
                    Fetched::Unchanged { next_expiry } => {
                        (sources.unchanged(next_expiry, received), None)
                    }
                    Fetched::Changed(s) => (
                        sources.apply_snapshot(s, known, received, self.config.ttl),
                        None,
                    ),
                    Fetched::Changes {
                        events,
                        version,
                        next_expiry,
                    } => match sources.apply_changes(events, version, next_expiry, received) {
                        Ok(touched) => (touched, None),
                        Err(touched) => (touched, Some(sources.version())),
                    },
                    // An answer this client does not know.
                    _ => (Touched::Nothing, Some(sources.version())),
                };
                self.rebuild(&sources, &touched);
                read_whole_from
            };
            if let Some(at) = read_whole_from {
                self.read_whole(at).await?;
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Reads the registry whole. `sent`: the version we are at, to tell a
    /// registry that went back from one that pushed changes overtook.
    async fn read_whole(&self, sent: Option<Version>) -> Result<(), DriverError> {
        let (fetched, received) = self.fetch(None).await?;
        let Fetched::Changed(s) = fetched else {
            return Err(DriverError::Protocol {
                backend: self.driver.backend(),
                message: "a fetch with no known version did not answer with the registry".into(),
            });
        };
        let mut sources = lock(&self.sources);
        let touched = sources.apply_snapshot(s, sent, received, self.config.ttl);
        self.rebuild(&sources, &touched);
        Ok(())
    }

    /// One fetch, with the time its answer came and the registry's health
    /// noted.
    async fn fetch(&self, known: Option<Version>) -> Result<(Fetched, Instant), DriverError> {
        let fetched = self.driver.fetch(known).await;
        let received = Instant::now();
        match fetched {
            Ok(f) => {
                self.registry_ok();
                Ok((f, received))
            }
            Err(e) => {
                self.registry_failed(&e);
                // A failover may be why: its history may differ from the
                // record we would be answered from.
                lock(&self.sources).read_whole_next();
                Err(e)
            }
        }
    }

    /// A pushed change: applied at once when it is the next one we expect,
    /// otherwise a fetch is queued (one, however many events ask).
    fn on_event(self: &Arc<Self>, event: Event) {
        if event == Event::Subscribed && self.watch_down.swap(false, Ordering::AcqRel) {
            tracing::info!("push updates restored");
        }
        let applied = {
            let mut sources = lock(&self.sources);
            let check_was = sources.next_check();
            let applied = sources.apply_event(event, Instant::now());
            if let Applied::Changed(service) = &applied {
                self.rebuild(&sources, &Touched::service(service));
            }
            // The maintain loop sleeps until the earliest check it knows
            // of: only a sooner one (a put with a shorter lease) needs it
            // awake, not every pushed change.
            if sooner(sources.next_check(), check_was) {
                self.wake.notify_one();
            }
            applied
        };
        if applied == Applied::NeedFetch && !self.fetch_queued.swap(true, Ordering::AcqRel) {
            let inner = self.clone();
            self.runtime.spawn(async move {
                inner.fetch_queued.store(false, Ordering::Release);
                if inner.refresh_once().await.is_err() {
                    // The maintain loop retries it, with its backoff.
                    lock(&inner.sources).check_by(Instant::now());
                    inner.wake.notify_one();
                }
            });
        }
    }

    /// A refresh retried `TryRefreshAmount` times with backoff.
    pub(crate) async fn refresh(&self) -> Result<()> {
        self.retry(|| self.refresh_once()).await
    }

    /// Installs the table after `touched`; nothing, and no change
    /// notification, when nothing was.
    fn rebuild(&self, sources: &Sources, touched: &Touched) {
        if *touched != Touched::Nothing {
            self.install(sources.build(&self.table.load(), touched));
        }
    }

    /// Swaps `table` in and tells whoever waits for changes.
    fn install(&self, table: RouteTable) {
        self.table.store(table);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Runs `op` up to `TryRefreshAmount` times while it fails transiently.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DriverError>>,
    {
        let attempts = self.config.try_refresh_amount.max(1);
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_transient() => return Err(e.into()),
                Err(e) if attempt >= attempts => {
                    return Err(Error::Unreachable {
                        backend: self.driver.backend(),
                        attempts,
                        source: e,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Registers under fresh names until one is free.
    async fn register_fresh(&self, service: &str, url: &str) -> Result<InstanceName> {
        for _ in 0..NAME_ATTEMPTS {
            let name = new_instance_name(service).ok_or_else(|| Error::InvalidName {
                name: service.to_owned(),
                reason: "cannot form an instance name from it".into(),
            })?;
            let ttl = self.config.ttl;
            if self.retry(|| self.driver.register(&name, url, ttl)).await? {
                return Ok(name);
            }
            tracing::debug!(instance = %name, "instance name taken; trying another");
        }
        Err(Error::NamesExhausted {
            service: service.to_owned(),
            attempts: NAME_ATTEMPTS,
        })
    }

    fn registry_failed(&self, e: &DriverError) {
        tracing::debug!(error = %e, "registry call failed");
        if !self.registry_down.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %e, "registry lost; serving the last good route table and retrying");
        }
    }

    fn registry_ok(&self) {
        if self.registry_down.swap(false, Ordering::AcqRel) {
            tracing::info!(backend = %self.driver.backend(), "registry restored");
        }
    }

    /// Takes our registration out of the client so that nothing renews it
    /// any more; whoever gets `Some` deregisters it.
    fn take_own(&self) -> (Option<Own>, Option<JoinHandle<()>>) {
        let own = lock(&self.own).take();
        let heartbeat = lock(&self.heartbeat).take();
        if let Some(h) = &heartbeat {
            h.abort();
        }
        (own, heartbeat)
    }

    /// [`finish`](Self::finish) for a signal, which may land while a
    /// registration is under way: waits until that registration either
    /// failed or is recorded in `own`, so what it wrote is deregistered.
    pub(crate) async fn finish_on_signal(&self) -> Result<()> {
        let _no_registration_in_flight = self.registering.lock().await;
        self.finish().await
    }

    pub(crate) async fn finish(&self) -> Result<()> {
        let (own, heartbeat) = self.take_own();
        let Some(own) = own else { return Ok(()) };
        {
            let mut sources = lock(&self.sources);
            sources.remove_url(&own.url);
            self.rebuild(&sources, &Touched::All);
        }
        // Everything after take_own runs in a task of its own: if the caller
        // stops awaiting (a timeout around finish()), it still completes.
        let driver = self.driver.clone();
        let task = self.runtime.spawn(async move {
            if let Some(h) = heartbeat {
                // Aborted: wait until no renewal can be in flight.
                let _ = h.await;
            }
            deregister(&*driver, &own).await
        });
        let result = task.await.unwrap_or(Ok(()));
        let drain = self.config.drain;
        if !drain.is_zero() {
            // Consumers have been told; let requests already routed here finish.
            tracing::info!(drain = %humantime::format_duration(drain), "deregistered; draining");
            tokio::time::sleep(drain).await;
        }
        result
    }

    /// Deregisters from synchronous code (`Drop`), bounded by
    /// [`DEREGISTER_TIMEOUT`]. It runs on a thread of its own with a
    /// runtime of its own, so it works inside or outside a runtime, on any
    /// flavour, and while the caller's runtime is shutting down.
    pub(crate) fn finish_blocking(&self) {
        let (Some(own), _) = self.take_own() else {
            return;
        };
        let driver = self.driver.clone();
        let worker = std::thread::Builder::new()
            .name("gosd-deregister".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => {
                        let _ = rt.block_on(deregister(&*driver, &own));
                    }
                    Err(e) => tracing::warn!(instance = %own.name, error = %e, "could not deregister: no runtime; the lease will expire"),
                }
            });
        match worker {
            Ok(w) => {
                let _ = w.join();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not deregister: no thread; the lease will expire")
            }
        }
    }
}

/// Removes `own` from the registry, within [`DEREGISTER_TIMEOUT`].
async fn deregister(driver: &dyn DynDriver, own: &Own) -> Result<()> {
    let started = Instant::now();
    let name = own.name.get();
    match tokio::time::timeout(DEREGISTER_TIMEOUT, driver.deregister(&name, &own.url)).await {
        Ok(Ok(_)) => {
            tracing::info!(instance = %own.name, elapsed = ?started.elapsed(), "deregistered");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::warn!(instance = %own.name, error = %e, "could not deregister; the lease will expire");
            Err(e.into())
        }
        Err(_) => {
            tracing::warn!(instance = %own.name, "deregistration timed out; the lease will expire");
            Err(Error::Unreachable {
                backend: driver.backend(),
                attempts: 1,
                source: DriverError::Unavailable {
                    backend: driver.backend(),
                    source: format!("no answer within {DEREGISTER_TIMEOUT:?}").into(),
                },
            })
        }
    }
}

/// Whether `check` asks for a look before `was` did.
fn sooner(check: Option<Instant>, was: Option<Instant>) -> bool {
    match (check, was) {
        (Some(check), Some(was)) => check < was,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Keeps the table fresh: at the earliest foreign lease expiry, on the cron
/// cadence, and (after a failure) with backoff. Holds only a weak handle
/// while waiting, so dropping the last `Client` ends it.
async fn maintain(weak: Weak<Inner>) {
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    loop {
        let (wake, next) = {
            let Some(inner) = weak.upgrade() else { return };
            let expiry = lock(&inner.sources).next_check().map(|t| t + EXPIRY_GRACE);
            // While failing, the backoff decides, not the (past) expiry.
            let lease_or_retry = retry_at.or(expiry);
            let next = [lease_or_retry, inner.cron_due()]
                .into_iter()
                .flatten()
                .min();
            (inner.wake.clone(), next)
        };
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => continue,
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = Instant::now();
        let lease_due = retry_at
            .or(lock(&inner.sources).next_check())
            .is_some_and(|t| t <= now);
        let cron_due = inner.claim_cron();
        if !(lease_due || cron_due) {
            continue;
        }
        match inner.refresh_once().await {
            Ok(()) => {
                failures = 0;
                retry_at = None;
            }
            Err(_) => {
                failures += 1;
                retry_at = Some(Instant::now() + backoff(failures));
            }
        }
    }
}

/// Keeps a push subscription open: re-subscribes with backoff whenever it
/// ends (Redis died, the connection was killed), and fetches after each
/// subscription to cover the gap. Holds only a weak handle.
async fn watch(weak: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let subscribed = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let result = {
            let Some(inner) = weak.upgrade() else { return };
            let driver = inner.driver.clone();
            drop(inner);
            let sink: EventSink = {
                let (weak, subscribed) = (weak.clone(), subscribed.clone());
                Arc::new(move |event| {
                    if event == Event::Subscribed {
                        subscribed.store(true, Ordering::Release);
                    }
                    if let Some(inner) = weak.upgrade() {
                        inner.on_event(event);
                    }
                })
            };
            driver.watch(sink).await
        };
        let Some(inner) = weak.upgrade() else { return };
        // Only a subscription that held for a while resets the backoff: one
        // dropped right after it was made (a proxy, an output-buffer limit)
        // must not make us reconnect ten times a second.
        if subscribed.load(Ordering::Acquire) && started.elapsed() >= STABLE_SUBSCRIPTION {
            failures = 0;
        }
        failures += 1;
        if !inner.watch_down.swap(true, Ordering::AcqRel) {
            match &result {
                Err(e) => tracing::warn!(error = %e, "push updates lost; re-subscribing"),
                Ok(()) => tracing::warn!("push updates lost (subscription ended); re-subscribing"),
            }
        }
        drop(inner);
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// Renews our lease every heartbeat; restores the entry if the registry
/// lost it; retries sooner (with backoff) after a failure.
async fn heartbeat(weak: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let delay = {
            let Some(inner) = weak.upgrade() else { return };
            let every = inner.config.heartbeat;
            if failures == 0 {
                every
            } else {
                backoff(failures).min(every)
            }
        };
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(own) = inner.own() else { return };
        let name = own.name.get();
        match inner.driver.renew(&name, &own.url, inner.config.ttl).await {
            Ok(Renewal::Renewed) => {
                failures = 0;
                inner.registry_ok();
            }
            Ok(Renewal::Restored) => {
                failures = 0;
                inner.registry_ok();
                tracing::info!(instance = %own.name, "registered again: the registry had lost this instance");
            }
            Ok(Renewal::Gone) => {
                tracing::debug!(instance = %own.name, "deregistered; heartbeat stops");
                return;
            }
            Ok(Renewal::Conflict) => {
                tracing::warn!(instance = %own.name, "another URL took this instance's name; registering under a new one");
                match inner.register_fresh(name.service(), &own.url).await {
                    Ok(renamed) => {
                        // Under the lock that finish() takes `own` with:
                        // either finish sees the new name, or we see it
                        // finished and remove the new name ourselves.
                        let finished = {
                            let guard = lock(&inner.own);
                            match guard.as_ref() {
                                Some(o) => {
                                    o.name.set(renamed.clone());
                                    false
                                }
                                None => true,
                            }
                        };
                        if finished {
                            let orphan = Own {
                                name: CurrentName::new(renamed),
                                url: own.url,
                            };
                            let _ = deregister(&*inner.driver, &orphan).await;
                            return;
                        }
                        tracing::info!(instance = %own.name, "registered under a new name");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register under a new name"),
                }
            }
            Err(e) => {
                failures += 1;
                inner.registry_failed(&e);
            }
        }
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

    fn finish_blocking(&self) {
        Inner::finish_blocking(self);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(h) = lock(&self.heartbeat).take() {
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
        let notified = std::pin::pin!(inner.wake.notified());
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
        let known = lock(&inner.sources).version().unwrap();
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
        inner.cron_due_ms.store(0, Ordering::Release); // the tick is due now
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
