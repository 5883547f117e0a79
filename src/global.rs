//! The process-wide client behind `gosd::start` and friends: set once, like
//! `log`'s logger. Reads never panic; a second start is a typed error.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use gosd_driver::Driver;

use crate::client::{Client, ClientBuilder};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::naming::{check_service, check_url};
use crate::registration::Registration;
use crate::route::Route;
use crate::route_future::{PickSource, RouteFuture};
use crate::selector::Selector;
use crate::signals::SignalListener;

static GLOBAL: OnceLock<Client> = OnceLock::new();
/// The signal listener of the global starts; `None` if none could listen.
static SIGNALS: OnceLock<Option<SignalListener>> = OnceLock::new();
/// Taken for the whole of a start, so two concurrent starts cannot both
/// connect; given back if the start fails.
static CLAIMED: AtomicBool = AtomicBool::new(false);

struct Claim;

impl Claim {
    fn take() -> Result<Self> {
        if CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyStarted);
        }
        Ok(Self)
    }

    fn keep(self, client: Client) {
        // Cannot be set already: the claim excludes every other setter.
        let _ = GLOBAL.set(client);
        std::mem::forget(self);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.store(false, Ordering::SeqCst);
    }
}

/// The global client, for what the free functions do not cover (e.g.
/// [`Client::routes`]).
///
/// # Errors
/// [`Error::NotStarted`] before [`start`], [`start_with`] or [`connect`].
pub fn client() -> Result<&'static Client> {
    GLOBAL.get().ok_or(Error::NotStarted)
}

async fn start_global(service: &str, url: &str, builder: ClientBuilder) -> Result<Registration> {
    check_service(service)?;
    check_url(url)?;
    let claim = Claim::take()?;
    // Listening before anything is written, so no signal can land between
    // a registry write and the handler and kill the process still
    // registered. One listener for every start: after a failed start it
    // exits 130/143 on a signal, touching no registry, and a later start
    // hands it its client instead of racing a second listener.
    let signals = SIGNALS.get_or_init(SignalListener::start);
    let client = builder.build().await?;
    if let Some(signals) = signals {
        signals.deliver_to(&client.inner);
    }
    let registration = client.register(service, url).await?;
    claim.keep(client);
    Ok(registration)
}

/// The process-wide client as a place to pick from.
#[derive(Clone, Copy)]
struct Global;

impl<'a> PickSource<'a> for Global {
    type Picker = Client;

    #[inline(always)]
    fn picker(self) -> Result<&'a Client> {
        client()
    }
}

/// Registers this process as `service` at `url`, configured from the
/// environment (Redis unless `GOSD_DRIVER` says otherwise), and makes the
/// global functions work.
///
/// The instance gets a unique name `<service>-<id>`; keep the returned
/// [`Registration`] alive for as long as the service runs: dropping it
/// deregisters. On SIGINT/SIGTERM gosd deregisters and exits with status
/// 130/143, unless you await [`shutdown_signal`] to run your own shutdown.
///
/// # Errors
/// [`Error::AlreadyStarted`] on a second call; [`Error::Config`] naming a bad
/// variable; [`Error::InvalidName`]/[`Error::InvalidUrl`]; [`Error::Unreachable`]
/// naming the registry's address when Redis is down (after
/// `TryRefreshAmount` attempts with backoff).
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), gosd::Error> {
///     let me = gosd::start("provider", "http://localhost:3333").await?;
///     println!("registered as {me}");
///     let url = gosd::iterate_service_route("provider").await?;
///     gosd::update_by_cron();
///     Ok(()) // `me` dropped: deregistered
/// }
/// ```
pub async fn start(service: &str, url: &str) -> Result<Registration> {
    start_global(service, url, Client::builder().config(Config::from_env()?)).await
}

/// Like [`start`], with a driver you pass in (any [`Driver`], including
/// your own). The rest of the configuration still comes from the environment.
pub async fn start_with(service: &str, url: &str, driver: impl Driver) -> Result<Registration> {
    start_global(
        service,
        url,
        Client::builder().config(Config::from_env()?).driver(driver),
    )
    .await
}

/// Connects as a pure consumer: discovers, registers nothing.
///
/// # Errors
/// As [`start`], less the name and URL errors.
pub async fn connect() -> Result<()> {
    let claim = Claim::take()?;
    let client = Client::from_env().await?;
    claim.keep(client);
    Ok(())
}

/// Refreshes the route table now; see [`Client::get`].
pub async fn get() -> Result<()> {
    client()?.get().await
}

/// Starts a background refresh if the cron cadence says one is due; see
/// [`Client::update_by_cron`].
///
/// Unlike the other functions it returns nothing, so that middleware can
/// call it as a statement; before [`start`] it does nothing.
pub fn update_by_cron() {
    if let Some(c) = GLOBAL.get() {
        c.update_by_cron();
    }
}

/// The next URL of `service`, round-robin; see [`Client::iterate_service_route`].
///
/// Whether gosd is started is decided when the future is first polled.
pub fn iterate_service_route(service: &str) -> impl Future<Output = Result<Route>> + Send + '_ {
    RouteFuture::new(Global, service)
}

/// A selector of `service` for the global client:
/// `gosd::route("provider").with("version", "2.1.0").pick().await`. Build
/// it once and keep it: a pick through a kept selector allocates nothing.
pub fn route(service: &str) -> Selector {
    Selector::new(service)
}

// Here, not in `selector`: what a selector matches knows nothing of
// clients; picking through the global one is this module's job.
impl Selector {
    /// The next matching route, from the global client (see
    /// [`gosd::route`](crate::route)); when none matches, one refresh and
    /// one more look.
    ///
    /// # Errors
    /// [`Error::NotStarted`] before [`gosd::start`](crate::start);
    /// [`Error::NoRoute`] when no instance matches.
    pub async fn pick(&self) -> Result<Route> {
        client()?.pick_or_refresh(self).await
    }
}

/// Stops routing to `url`; see [`Client::delete_service_with_url`].
pub async fn delete_service_with_url(url: &str) -> Result<()> {
    client()?.delete_service_with_url(url).await
}

/// Adds a local route that survives refreshes; see [`Client::add_service_manually`].
pub fn add_service_manually(service: &str, url: &str) -> Result<()> {
    client()?.add_service_manually(service, url)
}

/// Sets this process's instance's status; see [`Registration::set_status`].
///
/// [`Registration::set_status`]: crate::Registration::set_status
pub async fn set_status(status: gosd_driver::Status) -> Result<()> {
    client()?.set_status(status).await
}

/// Deregisters this process's instance now. Idempotent.
pub async fn finish() -> Result<()> {
    client()?.finish().await
}

/// Resolves on SIGINT/SIGTERM after the instance has deregistered; calling
/// it means the app, not gosd, decides when to exit. Before [`start`] it
/// resolves on the signal alone (there is nothing to deregister): unlike
/// the other functions it cannot fail, so that it fits
/// `with_graceful_shutdown`.
///
/// ```no_run
/// # async fn serve(app: axum::Router, listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// axum::serve(listener, app)
///     .with_graceful_shutdown(gosd::shutdown_signal())
///     .await
/// # }
/// ```
pub async fn shutdown_signal() {
    match GLOBAL.get() {
        Some(c) => c.shutdown_signal().await,
        None => crate::signals::any_signal().await,
    }
}
