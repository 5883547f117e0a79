//! Server-side discovery for gosd: a reverse proxy that looks services up
//! in the registry and forwards to them, so clients in any language need no
//! SDK.
//!
//! - `/<service>/<rest>` goes to an instance of `<service>`, round-robin,
//!   sent as `/<rest>` (or the whole path with `GOSD_ROUTER_STRIP_PREFIX=false`).
//! - No instance: 503 with a JSON body naming the service.
//! - An instance that cannot be reached (connect error or timeout): an
//!   idempotent request without a body is retried once on another instance;
//!   then 502 with a JSON body. Every answer and failure is told to the
//!   gosd client's outlier detector ([`gosd::Client::report`]), which takes
//!   an instance out of the picks after `GOSD_EJECT_AFTER` failures in a
//!   row (3) for `GOSD_EJECT_FOR` (10 s), never the last one of a service:
//!   the router shares that view with every other caller of its client.
//! - Bodies stream both ways; upstream connections are pooled and kept
//!   alive; hop-by-hop headers are removed; `X-Forwarded-For`, `-Proto` and
//!   `-Host` are set.
//! - `/-/` is a live status page: every service, its instances, their
//!   leases counting down, requests, errors and ejection. `/-/services` is
//!   the same as JSON, `/-/events` its live feed (server-sent events of
//!   gosd's change stream); `/-/health` answers the router's own liveness.
//! - `/-/metrics` is Prometheus text, once [`install_metrics`] has run (the
//!   binary does): requests by service and status class, upstream latency,
//!   retries, ejections, requests in flight, and the gosd client's own.
//!
//! The route table follows the registry by push (see `gosd`), so routes
//! change within milliseconds of a registration or a crash.

#![warn(missing_docs)]

mod health;
mod proxy;
mod status;
mod telemetry;
mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use gosd::Outcome;
use health::{Health, Stats};
pub use telemetry::{MetricsError, install_metrics};
use tokio::sync::watch;
use upstream::Failure;

/// A response or request body: streamed from the other side, or made here.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The router's own settings (the registry's come from gosd's variables).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RouterConfig {
    /// `GOSD_ROUTER_ADDR`: where to listen. Default `127.0.0.1:8000`.
    pub addr: SocketAddr,
    /// `GOSD_ROUTER_STRIP_PREFIX`: send `/<rest>` rather than the whole
    /// path. Default `true`.
    pub strip_prefix: bool,
    /// `GOSD_ROUTER_TIMEOUT`: how long an instance may take to answer
    /// (connect and response headers). Default 30 s.
    pub timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            strip_prefix: true,
            timeout: Duration::from_secs(30),
        }
    }
}

impl RouterConfig {
    /// Reads `GOSD_ROUTER_ADDR`, `GOSD_ROUTER_STRIP_PREFIX` and
    /// `GOSD_ROUTER_TIMEOUT` (a bare integer is seconds, else humantime)
    /// from the process environment.
    ///
    /// # Errors
    /// [`gosd::Error::Config`] naming the variable and its value.
    pub fn from_env() -> Result<Self, gosd::Error> {
        // Not env::vars(), which panics on a non-UTF-8 variable anywhere; a
        // non-UTF-8 value of ours is refused by its parser, naming it.
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("GOSD_ROUTER_")
                .then(|| (k, v.to_string_lossy().into_owned()))
        }))
    }

    /// [`RouterConfig::from_env`] over the given variables, as if they were
    /// the whole environment; others are ignored.
    ///
    /// # Errors
    /// [`gosd::Error::Config`] naming the variable and its value.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, gosd::Error>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut c = Self::default();
        let bad = |var: &str, value: &str, reason: &str| gosd::Error::Config {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        for (var, v) in vars {
            let (var, v) = (var.as_ref(), v.as_ref());
            match var {
                "GOSD_ROUTER_ADDR" => {
                    c.addr = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(var, v, "expected ip:port, e.g. 127.0.0.1:8000"))?;
                }
                "GOSD_ROUTER_STRIP_PREFIX" => {
                    c.strip_prefix = gosd::env_value::boolean(v).map_err(|r| bad(var, v, &r))?;
                }
                "GOSD_ROUTER_TIMEOUT" => {
                    c.timeout = gosd::env_value::duration(v)
                        .and_then(|d| match d.is_zero() {
                            true => Err("the timeout must be more than 0".into()),
                            false => Ok(d),
                        })
                        .map_err(|r| bad(var, v, &r))?;
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

/// The reverse proxy. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

struct Shared {
    client: gosd::Client,
    config: RouterConfig,
    health: Arc<Health>,
    /// Turns true when [`Router::serve`] stops accepting, for the status
    /// feeds, which would otherwise hold up the drain for ever.
    closing: watch::Sender<bool>,
    /// The task that keeps `health` following the route table, once started.
    follower: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The follower holds only a `Weak`, but waits on the client's
        // changes, which may outlive this router.
        if let Some(follower) = self.follower.get() {
            follower.abort();
        }
    }
}

impl Router {
    /// A router over `client`'s route table.
    ///
    /// Its per-instance counters follow the table: a task, started here
    /// inside a Tokio runtime (else at the first request), keeps those of
    /// the URLs the table holds and drops the others on each table change.
    pub fn new(client: gosd::Client, config: RouterConfig) -> Self {
        let router = Self {
            shared: Arc::new(Shared {
                client,
                health: Arc::new(Health::new()),
                closing: watch::Sender::new(false),
                config,
                follower: OnceLock::new(),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            router.follow_table();
        }
        router
    }

    /// Starts the task that keeps the counters following the table, unless
    /// it runs already. Must be called inside a Tokio runtime.
    fn follow_table(&self) {
        self.shared.follower.get_or_init(|| {
            let changes = self.shared.client.changes();
            let shared = Arc::downgrade(&self.shared);
            tokio::spawn(follow(shared, changes)).abort_handle()
        });
    }

    /// How many URLs this router keeps counters for, once they follow
    /// table version `version` (a value from [`gosd::Client::changes`]) or
    /// a later one. For tests that its memory stays bounded by the table.
    #[doc(hidden)]
    pub async fn tracked_urls(&self, version: u64) -> usize {
        self.follow_table();
        self.shared.health.synced(version).await;
        self.shared.health.len()
    }

    /// Serves on `listener` until `shutdown` resolves; then stops
    /// accepting, lets in-flight requests finish, and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let router = self.clone();
                    let service = service_fn(move |req| {
                        let router = router.clone();
                        async move { Ok::<_, Infallible>(router.handle(req, peer).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        self.shared.closing.send_replace(true);
        tracing::info!(
            in_flight = graceful.count(),
            "stopped accepting; finishing in-flight requests"
        );
        graceful.shutdown().await;
    }

    /// Serves on `listeners` (from [`bind_per_thread`]), each from an event
    /// loop of its own: a single-threaded runtime on a thread of its own,
    /// as nginx runs a worker process per core. The kernel spreads
    /// connections over the listeners, and a request never leaves the
    /// thread that accepted it, nor do its upstream connections. Returns
    /// once `shutdown` has resolved and every loop has drained as
    /// [`serve`](Self::serve) does.
    ///
    /// # Errors
    /// A thread could not be started.
    pub async fn serve_per_thread(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let mut drained = Vec::with_capacity(listeners.len());
        for (n, listener) in listeners.into_iter().enumerate() {
            let router = self.clone();
            let mut stopped = stopped.clone();
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("gosd-router-{n}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let runtime = match runtime {
                        Ok(r) => r,
                        Err(e) => {
                            return tracing::error!(error = %e, "no runtime for a serving thread");
                        }
                    };
                    runtime.block_on(async move {
                        let listener = match TcpListener::from_std(listener) {
                            Ok(l) => l,
                            Err(e) => {
                                return tracing::error!(error = %e, "a listener cannot be served");
                            }
                        };
                        let stop = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        router.serve(listener, stop).await;
                    });
                    drop(done);
                })?;
            drained.push(finished);
        }
        shutdown.await;
        stop.send_replace(true);
        for finished in drained {
            // Dropped, not sent: the thread is done either way.
            let _ = finished.await;
        }
        Ok(())
    }

    /// Answers one request: an internal page, or a forwarded one.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        self.follow_table();
        match req.uri().path() {
            "/-/health" => return json(StatusCode::OK, serde_json::json!({ "status": "ok" })),
            "/-/services" => {
                let services = status::services(&self.shared.client, &self.shared.health).await;
                return json(StatusCode::OK, services);
            }
            "/-/events" => {
                let shared = &self.shared;
                let closing = shared.closing.subscribe();
                return status::events(shared.client.clone(), shared.health.clone(), closing);
            }
            "/-/" | "/-" => return status::page(),
            "/-/metrics" => return metrics_page(),
            p if p.starts_with("/-/") => {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({ "error": "no such page", "path": p }),
                );
            }
            _ => {}
        }
        let Some((service, rest)) = proxy::split_service(req.uri().path()) else {
            telemetry::unrouted("not_a_service_path");
            let hint = "route requests as /<service>/<path>";
            return json(StatusCode::NOT_FOUND, serde_json::json!({ "error": hint }));
        };
        let service = service.to_owned();
        let path = if self.shared.config.strip_prefix {
            rest.to_owned()
        } else {
            req.uri().path().to_owned()
        };
        self.forward(req, peer, &service, &path).await
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        service: &str,
        path: &str,
    ) -> Response<ProxyBody> {
        let Some(first) = self.pick(service, None) else {
            telemetry::unrouted("no_instance");
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "no instance of the service is registered", "service": service }),
            );
        };
        let (mut parts, body) = req.into_parts();
        // Only a request that can be sent again exactly may be retried.
        let retryable = proxy::idempotent(&parts.method) && body.is_end_stream();
        let host = parts.headers.remove(header::HOST);
        proxy::strip_hop_by_hop(&mut parts.headers);
        proxy::add_forwarded(&mut parts.headers, peer, host);
        let query = parts.uri.query().map(str::to_owned);
        // A copy of the headers only when a second attempt is possible.
        let mut headers = Some(std::mem::take(&mut parts.headers));
        let spare = if retryable { headers.clone() } else { None };
        let mut body = Some(body.boxed());
        let (mut route, mut stats) = first;
        let _in_flight = telemetry::InFlight::start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(uri) = proxy::upstream_uri(&route, path, query.as_deref()) else {
                stats.metrics.answered(StatusCode::BAD_GATEWAY);
                return unusable(service, &route);
            };
            let mut upstream = Request::new(body.take().unwrap_or_else(empty));
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.headers_mut() = headers.take().or_else(|| spare.clone()).unwrap_or_default();
            let started = Instant::now();
            let (failure, outcome) = match upstream::send(upstream, self.shared.config.timeout)
                .await
            {
                Ok(mut response) => {
                    stats.metrics.upstream_took(started.elapsed());
                    stats.metrics.answered(response.status());
                    stats.succeeded();
                    self.shared.client.report(&route, Outcome::Success);
                    proxy::strip_hop_by_hop(response.headers_mut());
                    return response;
                }
                Err(Failure::Connect(e)) => {
                    (format!("could not connect: {e}"), Outcome::ConnectFailure)
                }
                Err(Failure::Timeout) => (
                    format!(
                        "no answer within {}",
                        humantime::format_duration(self.shared.config.timeout)
                    ),
                    Outcome::Timeout,
                ),
                Err(Failure::Unusable) => {
                    stats.metrics.answered(StatusCode::BAD_GATEWAY);
                    return unusable(service, &route);
                }
                Err(Failure::Upstream(e)) => {
                    stats.metrics.answered(StatusCode::BAD_GATEWAY);
                    stats.failed();
                    // The connection broke before an answer.
                    self.shared.client.report(&route, Outcome::ConnectFailure);
                    return json(
                        StatusCode::BAD_GATEWAY,
                        serde_json::json!({ "error": format!("upstream failed: {e}"), "service": service, "instance": route.as_str() }),
                    );
                }
            };
            stats.failed();
            self.shared.client.report(&route, outcome);
            tracing::debug!(service, instance = %route, attempt, failure, "upstream unreachable");
            let other = if retryable && attempt == 1 {
                self.pick(service, Some(&route))
            } else {
                None
            };
            match other {
                Some(next) => {
                    stats.metrics.retried();
                    (route, stats) = next;
                }
                None => {
                    stats.metrics.answered(StatusCode::BAD_GATEWAY);
                    return json(
                        StatusCode::BAD_GATEWAY,
                        serde_json::json!({ "error": failure, "service": service, "instance": route.as_str(), "attempts": attempt }),
                    );
                }
            }
        }
    }

    /// The next instance of `service` round-robin, other than `avoid`,
    /// with its counters. The client's picks already skip the instances
    /// its outlier detector ejected.
    fn pick(
        &self,
        service: &str,
        avoid: Option<&gosd::Route>,
    ) -> Option<(gosd::Route, Arc<Stats>)> {
        let client = &self.shared.client;
        let mut route = client.next_route(service)?;
        if Some(&route) == avoid {
            if client.routes(service).len() <= 1 {
                return None;
            }
            route = client.next_route(service)?;
            if Some(&route) == avoid {
                return None;
            }
        }
        let health = &self.shared.health;
        let stats = health.of(&health.known(), client, service, &route);
        Some((route, stats))
    }
}

/// `threads` listening sockets on `addr`, all with `SO_REUSEPORT`, for
/// [`Router::serve_per_thread`]. With port 0 the first picks a free port
/// and the others share it.
///
/// # Errors
/// The address cannot be bound (taken, or not this host's), or the system
/// has no `SO_REUSEPORT`.
pub fn bind_per_thread(
    addr: SocketAddr,
    threads: std::num::NonZeroUsize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(threads.get());
    for _ in 0..threads.get() {
        let socket = match addr {
            SocketAddr::V4(_) => {
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?
            }
            SocketAddr::V6(_) => {
                socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?
            }
        };
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Keeps the router's counters following the client's table: wakes on each
/// table change, rather than pruning on the request path. Ends with the
/// router (or the client).
async fn follow(shared: Weak<Shared>, mut changes: tokio::sync::watch::Receiver<u64>) {
    loop {
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            // Read before the table, so the table read is at least this new.
            let version = *changes.borrow_and_update();
            shared.health.sync(&shared.client, version);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// `/-/metrics`: Prometheus text, or 404 when no Prometheus recorder was
/// installed through [`install_metrics`].
fn metrics_page() -> Response<ProxyBody> {
    match telemetry::render() {
        Some(text) => made_here(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(text),
        ),
        None => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "metrics are off: gosd_router::install_metrics was not called" }),
        ),
    }
}

/// The instance's URL is not one the router can send to (`http://host[:port]`).
fn unusable(service: &str, route: &gosd::Route) -> Response<ProxyBody> {
    json(
        StatusCode::BAD_GATEWAY,
        serde_json::json!({ "error": "unusable instance URL", "service": service, "instance": route.as_str() }),
    )
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    made_here(status, "application/json", Bytes::from(value.to_string()))
}

/// A response the router makes itself, rather than one it forwards.
pub(crate) fn made_here(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<ProxyBody> {
    let body = Full::new(body).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_defaulted() {
        let c = RouterConfig::from_vars([
            ("GOSD_ROUTER_ADDR", " 0.0.0.0:9000 "),
            ("GOSD_ROUTER_STRIP_PREFIX", "false"),
            ("GOSD_ROUTER_TIMEOUT", "250ms"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(c.addr, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert!(!c.strip_prefix);
        assert_eq!(c.timeout, Duration::from_millis(250));
        let d = RouterConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(d.addr, SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert!(d.strip_prefix);
        assert_eq!(d.timeout, Duration::from_secs(30));
        let seconds = RouterConfig::from_vars([("GOSD_ROUTER_TIMEOUT", "7")]).unwrap();
        assert_eq!(
            seconds.timeout,
            Duration::from_secs(7),
            "a bare integer is seconds"
        );
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_and_value() {
        for (var, value) in [
            ("GOSD_ROUTER_ADDR", "localhost"),
            ("GOSD_ROUTER_ADDR", "127.0.0.1:99999"),
            ("GOSD_ROUTER_STRIP_PREFIX", "perhaps"),
            ("GOSD_ROUTER_TIMEOUT", "soon"),
            ("GOSD_ROUTER_TIMEOUT", "0"),
        ] {
            match RouterConfig::from_vars([(var, value)]) {
                Err(e @ gosd::Error::Config { .. }) => {
                    let shown = e.to_string();
                    assert!(
                        shown.starts_with(&format!("invalid {var}={value:?}: ")),
                        "{shown}"
                    );
                }
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }
}
