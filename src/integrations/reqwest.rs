//! Calling services through reqwest: a [`reqwest_middleware::Middleware`]
//! that sends a request for `http://<service>/<path>?<query>` to the next
//! instance of `<service>`, retries it elsewhere when an instance cannot
//! be reached, and tells the client's outlier detector what happened
//! ([`Client::report`]). Feature `reqwest`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let gosd = gosd::Client::from_env().await?;
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(gosd::reqwest::Discovery::new(gosd))
//!     .build();
//! let response = http.get("http://provider/ping").send().await?;
//! let picked = response.extensions().get::<gosd::reqwest::Picked>().cloned();
//! let picked = picked.expect("a request for a service says which instance");
//! println!("{} answered: {}", picked.route, response.text().await?);
//! # Ok(()) }
//! ```
//!
//! # Which hosts are services
//! A URL's host is a service when the URL has no port, its scheme is
//! `http` or `https`, and either
//! - the client's table has routes for it (any service name), or
//! - it is one DNS label (no dot), not `localhost` and a valid service
//!   name: a service that has no instance yet. Then the middleware waits
//!   for one as [`Client::iterate_service_route`] does, and fails with
//!   [`Error::NoRoute`] naming the service if none comes.
//!
//! Everything else (`http://127.0.0.1:8080`, `https://example.com`) passes
//! through untouched. URL hosts are lower-cased by parsing, so a service
//! reached this way has a lower-case name.
//!
//! The instance's route gives the scheme, host, port and any path prefix:
//! `http://provider/ping?x=1` to an instance at `http://10.0.0.2:3333`
//! becomes `http://10.0.0.2:3333/ping?x=1`.
//!
//! # Retries
//! When no answer came (connect error, connection lost before an answer,
//! timeout), a request is sent again to another instance of the service if
//! - its method is idempotent (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`,
//!   `DELETE`),
//! - its body is not a stream (reqwest can copy it),
//! - it has been tried on fewer than three instances, and
//! - the [`RetryBudget`] has a token: by default 20% of requests plus 10 per
//!   second, as in Linkerd, so that a failing service is not sent three
//!   times its traffic.
//!
//! An answer with any status is a success: the instance is up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::reqwest::{Method, Request, Response, Url};
use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::client::Client;
use crate::error::Error;
use crate::outliers::Outcome;
use crate::route::Route;

/// At most this many instances per request.
const MAX_ATTEMPTS: usize = 3;

/// The middleware; see the [module](self).
#[derive(Clone, Debug)]
pub struct Discovery {
    client: Client,
    budget: Arc<RetryBudget>,
}

/// Which instance answered, in the response's extensions:
/// `response.extensions().get::<Picked>()`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Picked {
    /// The route of the instance that answered.
    pub route: Route,
    /// How many instances were tried, this one included (1: no retry).
    pub attempts: u32,
}

impl Discovery {
    /// Routes through `client`'s table, with the default [`RetryBudget`].
    pub fn new(client: Client) -> Self {
        Self {
            client,
            budget: Arc::new(RetryBudget::default()),
        }
    }

    /// Replaces the retry budget ([`RetryBudget::none`] turns retries off).
    pub fn with_retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Arc::new(budget);
        self
    }
}

/// How many retries requests may make: a share of the requests, plus a
/// few per second so that a quiet client can retry at all. Shared by the
/// clones of one [`Discovery`].
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry each request earns.
    per_request: u64,
    /// Earned thousandths of a retry, at most [`MAX_EARNED`].
    earned: AtomicU64,
    per_second: f64,
    /// The per-second allowance left, and when it was last topped up.
    reserve: Mutex<(f64, Instant)>,
}

/// Earned retries are banked up to this many: a burst of failures after a
/// long quiet time is still bounded.
const MAX_EARNED: u64 = 100 * 1000;

impl RetryBudget {
    /// Each request earns `ratio` of a retry (0.2: one retry per five
    /// requests; clamped to 0..=1), and `per_second` retries a second are
    /// allowed on top (at most one second's worth banked).
    pub fn new(ratio: f64, per_second: u32) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            per_request: (ratio * 1000.0).round() as u64,
            earned: AtomicU64::new(0),
            per_second: f64::from(per_second),
            reserve: Mutex::new((f64::from(per_second), Instant::now())),
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self::new(0.0, 0)
    }

    fn deposit(&self) {
        if self.per_request == 0 {
            return;
        }
        // Approximately capped: racing deposits may overshoot the cap by a
        // few requests' worth, never without bound.
        let before = self.earned.fetch_add(self.per_request, Ordering::Relaxed);
        if before >= MAX_EARNED {
            self.earned.fetch_sub(self.per_request, Ordering::Relaxed);
        }
    }

    /// Takes one retry's worth, if there is one.
    fn withdraw(&self) -> bool {
        let earned = self
            .earned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
                e.checked_sub(1000)
            });
        if earned.is_ok() {
            return true;
        }
        if self.per_second == 0.0 {
            return false;
        }
        let mut reserve = self.reserve.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (left, at) = *reserve;
        let topped =
            (left + now.duration_since(at).as_secs_f64() * self.per_second).min(self.per_second);
        let (left, ok) = match topped >= 1.0 {
            true => (topped - 1.0, true),
            false => (topped, false),
        };
        *reserve = (left, now);
        ok
    }
}

impl Default for RetryBudget {
    /// 20% of requests plus 10 per second.
    fn default() -> Self {
        Self::new(0.2, 10)
    }
}

/// The service a URL names, if it is one (see the module docs), and
/// whether to wait for one when the table has none.
fn service_host(url: &Url) -> Option<&str> {
    if !matches!(url.scheme(), "http" | "https") || url.port().is_some() {
        return None;
    }
    match url.host()? {
        url::Host::Domain(name) => Some(name),
        _ => None,
    }
}

/// Whether a host the table does not know is still taken for a service
/// that has no instance yet.
fn looks_like_a_service(host: &str) -> bool {
    !host.contains('.') && host != "localhost" && crate::naming::check_service(host).is_ok()
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What a failed attempt says about the instance; `None` when the failure
/// is not the instance's (a bad request, a redirect policy, a middleware
/// further down).
fn outcome_of(e: &reqwest_middleware::Error) -> Option<Outcome> {
    let reqwest_middleware::Error::Reqwest(e) = e else {
        return None;
    };
    if e.is_timeout() {
        Some(Outcome::Timeout)
    } else if e.is_connect() || e.is_request() {
        Some(Outcome::ConnectFailure)
    } else {
        None
    }
}

/// `url` (for a service) sent to `route` instead: the route's scheme,
/// host, port, and path prefix.
fn point_at(url: &mut Url, route: &Route) -> Result<(), reqwest_middleware::Error> {
    let bad = || {
        reqwest_middleware::Error::middleware(Error::InvalidUrl {
            url: route.to_string(),
            reason: "a request for its service cannot be sent there".into(),
        })
    };
    let base = Url::parse(route).map_err(|_| bad())?;
    url.set_scheme(base.scheme()).map_err(|()| bad())?;
    url.set_host(base.host_str()).map_err(|_| bad())?;
    url.set_port(base.port()).map_err(|()| bad())?;
    let prefix = base.path().trim_end_matches('/');
    if !prefix.is_empty() {
        let path = format!("{prefix}{}", url.path());
        url.set_path(&path);
    }
    Ok(())
}

impl Discovery {
    /// Another route of `service`, not one of `tried`.
    fn another(&self, service: &str, tried: &[Option<Route>]) -> Option<Route> {
        // Round-robin hands out each route in turn: a few picks find an
        // untried one if there is one.
        (0..=MAX_ATTEMPTS)
            .filter_map(|_| self.client.next_route(service))
            .find(|r| !tried.iter().flatten().any(|t| t == r))
    }
}

#[async_trait::async_trait]
impl Middleware for Discovery {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(host) = service_host(req.url()) else {
            return next.run(req, extensions).await;
        };
        let mut route = match self.client.next_route(host) {
            Some(route) => route,
            None if looks_like_a_service(host) => {
                let service = host.to_owned();
                self.client
                    .iterate_service_route(&service)
                    .await
                    .map_err(reqwest_middleware::Error::middleware)?
            }
            None => return next.run(req, extensions).await,
        };
        let service = host.to_owned();
        self.budget.deposit();
        let retryable = idempotent(req.method());
        let mut tried: [Option<Route>; MAX_ATTEMPTS] = Default::default();
        for attempt in 1..=MAX_ATTEMPTS {
            let spare = match retryable && attempt < MAX_ATTEMPTS {
                true => req.try_clone(),
                false => None,
            };
            point_at(req.url_mut(), &route)?;
            let error = match next.clone().run(req, extensions).await {
                Ok(mut response) => {
                    self.client.report(&route, Outcome::Success);
                    response.extensions_mut().insert(Picked {
                        route,
                        attempts: attempt as u32,
                    });
                    return Ok(response);
                }
                Err(e) => e,
            };
            let Some(outcome) = outcome_of(&error) else {
                return Err(error);
            };
            self.client.report(&route, outcome);
            let Some(spare) = spare else {
                return Err(error);
            };
            tried[attempt - 1] = Some(route);
            let Some(other) = self.another(&service, &tried) else {
                return Err(error);
            };
            if !self.budget.withdraw() {
                return Err(error);
            }
            tracing::debug!(%service, failed = ?tried[attempt - 1], retry = %other, "retrying on another instance");
            req = spare;
            route = other;
        }
        unreachable!("the last attempt returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_hosts_are_services() {
        let host = |u: &str| service_host(&Url::parse(u).unwrap()).map(str::to_owned);
        assert_eq!(host("http://provider/ping").as_deref(), Some("provider"));
        assert_eq!(
            host("https://order-api/x?y=1").as_deref(),
            Some("order-api")
        );
        assert_eq!(host("http://provider:8080/"), None, "a port: a real host");
        assert_eq!(host("http://127.0.0.1/"), None);
        assert_eq!(host("ftp://provider/"), None);
        assert!(looks_like_a_service("provider"));
        assert!(!looks_like_a_service("localhost"));
        assert!(!looks_like_a_service("example.com"));
    }

    #[test]
    fn a_route_gives_scheme_host_port_and_prefix() {
        let mut url = Url::parse("http://provider/ping?x=1").unwrap();
        point_at(&mut url, &Route::new("https://10.0.0.2:3333/base/")).unwrap();
        assert_eq!(url.as_str(), "https://10.0.0.2:3333/base/ping?x=1");
        let mut url = Url::parse("http://provider/").unwrap();
        point_at(&mut url, &Route::new("http://h:1")).unwrap();
        assert_eq!(url.as_str(), "http://h:1/");
    }

    #[test]
    fn the_budget_allows_its_share_and_its_rate() {
        let b = RetryBudget::new(0.2, 0);
        assert!(!b.withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw(), "two retries for ten requests");
        let b = RetryBudget::new(0.0, 2);
        assert!(
            b.withdraw() && b.withdraw(),
            "a second's worth to start with"
        );
        assert!(!RetryBudget::none().withdraw());
    }
}
