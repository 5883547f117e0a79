//! Configuration from the environment, 12-factor style.
//!
//! Go gosd's variable names work exactly as spelled there (`gosdRedisAddr`),
//! and so do conventional upper-case ones (`GOSD_REDIS_ADDR`). One table,
//! `SETTINGS`, holds every setting: its spellings and how its value is
//! parsed, so that an error names the variable exactly as the user spelled
//! it, and a new setting is one entry.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gosd_driver::Meta;

pub use crate::cadence::Cron;
use crate::error::{Error, Result};

mod drivers;
mod settings;

/// What a weight must be.
const WEIGHT_RANGE: &str = "expected a whole number from 1 to 1000";

/// A weight: a whole number 1–1000.
fn parse_weight(v: &str) -> Result<u32, String> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|w| (1..=1000).contains(w))
        .ok_or_else(|| WEIGHT_RANGE.to_owned())
}

pub use settings::{insert_metadata, parse_bool, parse_duration};

use settings::{SETTINGS, shown};

/// Hides credentials in a URL-ish string: the drivers' own, so a value
/// shows the same in their errors and in gosd's.
pub(crate) use gosd_driver::redact_url;

/// Which registry backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverKind {
    /// Redis (the default): needs the `redis` feature, on by default.
    Redis,
    /// The in-process registry: every client in this process shares it.
    /// For tests and the quickstart; nothing crosses process boundaries.
    Memory,
    /// etcd v3: needs the `etcd` feature, off by default.
    Etcd,
}

/// Where etcd is, for [`DriverKind::Etcd`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `GOSD_ETCD_ENDPOINTS`: comma-separated `http://host:port` (or
    /// `host:port`) of the cluster's members. Default `http://localhost:2379`.
    pub endpoints: Vec<String>,
    /// `GOSD_ETCD_PREFIX`: where the registry's keys live. Default `/gosd`.
    pub prefix: String,
}

impl Default for EtcdTarget {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://localhost:2379".to_owned()],
            prefix: "/gosd".to_owned(),
        }
    }
}

/// Where Redis is. The password never shows in `Debug` or in errors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTarget {
    /// `GOSD_REDIS_URL`: `redis://[user:pass@]host:port/db`, or
    /// `rediss://…` for TLS. Wins over addr, password and db when set.
    pub url: Option<String>,
    /// `gosdRedisAddr` / `GOSD_REDIS_ADDR`: `host:port`, default `localhost:6379`.
    pub addr: Option<String>,
    /// `gosdRedisPassword` / `GOSD_REDIS_PASSWORD`.
    pub password: Option<String>,
    /// `gosdRedisDB` / `GOSD_REDIS_DB`, default 0.
    pub db: i64,
    /// `GOSD_REDIS_CA`: a PEM file of the CA(s) that signed a `rediss://`
    /// server's certificate, trusted instead of the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// `GOSD_REDIS_CERT`: a PEM client certificate for mutual TLS; needs
    /// [`tls_key`](Self::tls_key).
    pub tls_cert: Option<PathBuf>,
    /// `GOSD_REDIS_KEY`: the PEM private key of [`tls_cert`](Self::tls_cert).
    pub tls_key: Option<PathBuf>,
    /// `GOSD_REDIS_SENTINELS`: `host:port,host:port,…` of Redis Sentinels
    /// that name the primary; needs [`master`](Self::master). The password,
    /// database and a URL's credentials apply to the primary.
    pub sentinels: Option<String>,
    /// `GOSD_REDIS_MASTER`: the primary's name in the sentinels' config.
    pub master: Option<String>,
    /// `GOSD_REDIS_SENTINEL_PASSWORD`: the sentinels' own password, if any.
    pub sentinel_password: Option<String>,
    /// `GOSD_REDIS_CLUSTER`: `host:port,host:port,…` of some nodes of a
    /// Redis Cluster (Redis 7+). The password and a URL's credentials and
    /// scheme (`rediss://` for TLS) apply to every node; its host is not
    /// used.
    pub cluster: Option<String>,
}

impl RedisTarget {
    /// Whether any Redis setting was given at all (as opposed to defaults).
    pub fn is_configured(&self) -> bool {
        self.url.is_some()
            || self.addr.is_some()
            || self.password.is_some()
            || self.db != 0
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.sentinels.is_some()
            || self.cluster.is_some()
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("addr", &self.addr)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// The client's settings. [`Config::from_env`] reads them; `Default` gives
/// gosd's defaults. Change fields freely and pass the result to
/// [`ClientBuilder::config`](crate::ClientBuilder::config).
///
/// | setting | variables | default |
/// |---|---|---|
/// | [`driver`](Self::driver) | `GOSD_DRIVER` (`redis`, `etcd` or `memory`) | `redis` |
/// | [`redis`](Self::redis) | `GOSD_REDIS_URL`, `gosdRedisAddr`/`GOSD_REDIS_ADDR`, `gosdRedisPassword`/`GOSD_REDIS_PASSWORD`, `gosdRedisDB`/`GOSD_REDIS_DB`; TLS files `GOSD_REDIS_CA`, `GOSD_REDIS_CERT`, `GOSD_REDIS_KEY`; Sentinel `GOSD_REDIS_SENTINELS`, `GOSD_REDIS_MASTER`, `GOSD_REDIS_SENTINEL_PASSWORD`; Cluster `GOSD_REDIS_CLUSTER` | `localhost:6379`, db 0 |
/// | [`etcd`](Self::etcd) | `GOSD_ETCD_ENDPOINTS` (comma-separated), `GOSD_ETCD_PREFIX` | `http://localhost:2379`, `/gosd` |
/// | [`try_refresh_amount`](Self::try_refresh_amount) | `gosdTryRefreshAmount`/`GOSD_TRY_REFRESH_AMOUNT` | 3 |
/// | [`try_find_service_amount`](Self::try_find_service_amount) | `gosdTryFindServiceAmount`/`GOSD_TRY_FIND_SERVICE_AMOUNT` | 5 |
/// | [`try_find_service_delay`](Self::try_find_service_delay) | `gosdTryFindServiceDelay`/`GOSD_TRY_FIND_SERVICE_DELAY` | 3 s |
/// | [`ttl`](Self::ttl) | `GOSD_TTL` | 10 s |
/// | [`heartbeat`](Self::heartbeat) | `GOSD_HEARTBEAT` | TTL / 3 |
/// | [`cron`](Self::cron) | `GOSD_CRON` (`off` disables) | every 30 s |
/// | [`key`](Self::key) | `GOSD_KEY` | `gosd` |
/// | [`watch`](Self::watch) | `GOSD_WATCH` (`true`/`false`) | `true` |
/// | [`drain`](Self::drain) | `GOSD_DRAIN` | 0 |
/// | [`health_url`](Self::health_url) | `GOSD_HEALTH_URL` (`http://…`, 2xx is healthy), `GOSD_HEALTH_FAILURES` (≥ 1) | none; 3 |
/// | [`metadata`](Self::metadata) | `GOSD_META` (`k=v,k2=v2`), `GOSD_ZONE` (key `zone`), `GOSD_WEIGHT` (key `weight`, 1–1000) | none: up, weight 100, no zone |
/// | [`eject_after`](Self::eject_after) | `GOSD_EJECT_AFTER` | 3 |
/// | [`eject_for`](Self::eject_for) | `GOSD_EJECT_FOR` | 10 s |
///
/// Durations are a bare integer meaning seconds (as in Go gosd) or a
/// humantime value such as `250ms`, `2s` or `1m 30s`.
///
/// ```
/// let config = gosd::Config::from_vars([
///     ("gosdTryRefreshAmount", "5"),
///     ("GOSD_TTL", "2s"),
/// ])?;
/// assert_eq!(config.try_refresh_amount, 5);
/// assert_eq!(config.heartbeat, std::time::Duration::from_secs(2) / 3); // TTL/3 unless set
///
/// let err = gosd::Config::from_vars([("gosdTryRefreshAmount", "abc")]).unwrap_err();
/// assert!(err.to_string().contains("gosdTryRefreshAmount"));
/// # Ok::<_, gosd::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The registry backend.
    pub driver: DriverKind,
    /// Where Redis is, for [`DriverKind::Redis`].
    pub redis: RedisTarget,
    /// Where etcd is, for [`DriverKind::Etcd`].
    pub etcd: EtcdTarget,
    /// How many times a refresh (and a registration at start) is tried
    /// before it fails. At least 1.
    pub try_refresh_amount: u32,
    /// How many times [`iterate_service_route`](crate::Client::iterate_service_route)
    /// refreshes and looks again for a service with no route. At least 1.
    pub try_find_service_amount: u32,
    /// The wait between those looks.
    pub try_find_service_delay: Duration,
    /// How long a registration lives without a heartbeat: a crashed
    /// instance disappears within this.
    pub ttl: Duration,
    /// How often the lease is renewed; shorter than `ttl`.
    pub heartbeat: Duration,
    /// When the route table is refreshed in the background (and by
    /// [`update_by_cron`](crate::update_by_cron)); `None` disables it.
    pub cron: Option<Cron>,
    /// The Redis hash holding the routes. Go gosd's is `gosd`.
    pub key: String,
    /// Subscribe to pushed changes, so the table follows the registry
    /// within milliseconds (the cron cadence stays as a safety net).
    pub watch: bool,
    /// After deregistering on a signal or `finish()`, wait this long before
    /// returning or exiting, so requests already routed here can finish.
    pub drain: Duration,
    /// This instance's status and metadata, stored beside its entry (Go
    /// gosd never sees them). Two keys mean something to gosd: `zone`
    /// (also this client's own zone: its picks prefer instances there) and
    /// `weight` (1–1000, 100 when unset: its share of picks).
    pub metadata: Meta,
    /// A local HTTP endpoint (`http://host:port/path`) asked on every
    /// heartbeat: a 2xx answer is healthy. After
    /// [`health_failures`](Self::health_failures) failures in a row the
    /// instance is marked down (consumers stop picking it); one success
    /// marks it up again. A status set by hand other than up stands. With
    /// a check given to [`ClientBuilder::health_check`](crate::ClientBuilder::health_check)
    /// too, both are asked and both must pass.
    pub health_url: Option<String>,
    /// Failures in a row of the health check that mark the instance down.
    pub health_failures: u32,
    /// How many failures in a row, as told to
    /// [`Client::report`](crate::Client::report), take an instance out of
    /// this client's picks. At least 1.
    pub eject_after: u32,
    /// How long an instance taken out that way gets no picks; 0 never
    /// takes one out.
    pub eject_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let ttl = Duration::from_secs(10);
        Self {
            driver: DriverKind::Redis,
            redis: RedisTarget::default(),
            etcd: EtcdTarget::default(),
            try_refresh_amount: 3,
            try_find_service_amount: 5,
            try_find_service_delay: Duration::from_secs(3),
            ttl,
            heartbeat: ttl / 3,
            cron: Some(Cron::every_30_seconds()),
            key: "gosd".to_owned(),
            watch: true,
            drain: Duration::ZERO,
            metadata: Meta::default(),
            health_url: None,
            health_failures: 3,
            eject_after: 3,
            eject_for: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        let mut vars = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Ok(k) = k.into_string() else { continue };
            match v.into_string() {
                Ok(v) => vars.push((k, v)),
                Err(_)
                    if SETTINGS
                        .iter()
                        .any(|var| var.go == Some(&*k) || var.upper == k) =>
                {
                    return Err(Error::Config {
                        var: k,
                        value: "(not shown)".into(),
                        reason: "the value is not valid UTF-8".into(),
                    });
                }
                Err(_) => {}
            }
        }
        Self::from_vars(vars)
    }

    /// Reads the configuration from the given variables, as if they were the
    /// whole environment. Unrelated variables are ignored; an unknown
    /// `GOSD_*` one is logged as a likely typo.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        // key -> (spelling, value)
        let mut seen: Vec<(&'static str, String, String)> = Vec::new();
        for (k, v) in vars {
            let (k, v) = (k.as_ref(), v.as_ref());
            let Some(var) = SETTINGS
                .iter()
                .find(|var| var.go == Some(k) || var.upper == k)
            else {
                // GOSD_ROUTER_* belong to gosd-router, which reads them itself.
                if (k.starts_with("GOSD_") || k.starts_with("gosd"))
                    && !k.starts_with("GOSD_ROUTER_")
                {
                    tracing::warn!(
                        variable = k,
                        "unknown gosd setting ignored; is it misspelled?"
                    );
                }
                continue;
            };
            if let Some((_, other, before)) = seen.iter().find(|(key, ..)| *key == var.key) {
                if before != v {
                    return Err(Error::Config {
                        var: k.to_owned(),
                        value: shown(var.key, v),
                        reason: format!(
                            "{other} is also set, to {:?}; set one of them",
                            shown(var.key, before)
                        ),
                    });
                }
                continue;
            }
            seen.push((var.key, k.to_owned(), v.to_owned()));
        }
        let spelled = |key: &str| -> String {
            seen.iter()
                .find(|(k, ..)| *k == key)
                .map(|(_, spelling, _)| spelling.clone())
                .unwrap_or_else(|| key.to_owned())
        };
        let bad = |key: &str, value: &str, reason: String| Error::Config {
            var: spelled(key),
            value: shown(key, value),
            reason,
        };

        let mut c = Config::default();
        for setting in SETTINGS {
            if let Some((_, _, v)) = seen.iter().find(|(key, ..)| *key == setting.key) {
                (setting.apply)(&mut c, v).map_err(|reason| bad(setting.key, v, reason))?;
            }
        }
        // Range checks live in validate(), once for env and code alike;
        // here the error is re-spelled with the variable and value as set.
        c.validate().map_err(|e| match e {
            Error::Config { var, value, reason } => {
                let set = SETTINGS
                    .iter()
                    .find(|v| v.upper == var)
                    .and_then(|v| seen.iter().find(|(key, ..)| *key == v.key));
                match set {
                    Some((key, _, raw)) => bad(key, raw, reason),
                    None => Error::Config { var, value, reason },
                }
            }
            other => other,
        })?;
        Ok(c)
    }

    /// Checks that the settings work together: counts at least 1, a TTL
    /// from 100 ms to 1 day, a heartbeat of at least 10 ms and shorter than
    /// the TTL, a usable key and Redis address.
    /// [`ClientBuilder::build`](crate::ClientBuilder::build) calls it, so a
    /// `Config` changed in code is held to the same rules as one read from
    /// the environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting's variable.
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, value: String, reason: String| {
            Err(Error::Config {
                var: var.to_owned(),
                value,
                reason,
            })
        };
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let at_least_1 = "expected a whole number, 1 or more".to_owned();
        if self.try_refresh_amount == 0 {
            return bad("GOSD_TRY_REFRESH_AMOUNT", "0".into(), at_least_1);
        }
        if self.try_find_service_amount == 0 {
            return bad("GOSD_TRY_FIND_SERVICE_AMOUNT", "0".into(), at_least_1);
        }
        if self.eject_after == 0 {
            return bad("GOSD_EJECT_AFTER", "0".into(), at_least_1);
        }
        if !(MIN_TTL..=MAX_TTL).contains(&self.ttl) {
            return bad(
                "GOSD_TTL",
                d(self.ttl),
                "the TTL must be from 100ms to 1 day".into(),
            );
        }
        if self.heartbeat < MIN_HEARTBEAT {
            return bad(
                "GOSD_HEARTBEAT",
                d(self.heartbeat),
                "the heartbeat must be at least 10ms".into(),
            );
        }
        if self.heartbeat >= self.ttl {
            let reason = format!(
                "the heartbeat must be shorter than the TTL ({}), or leases expire between heartbeats",
                d(self.ttl)
            );
            return bad("GOSD_HEARTBEAT", d(self.heartbeat), reason);
        }
        // The Redis settings are the driver's to check, for every driver:
        // a typo in them is caught before the day they are used.
        if self.health_failures == 0 {
            return bad("GOSD_HEALTH_FAILURES", "0".into(), at_least_1);
        }
        if let Some(u) = &self.health_url {
            self.health_check_url().map_err(|reason| Error::Config {
                var: "GOSD_HEALTH_URL".into(),
                value: redact_url(u),
                reason,
            })?;
        }
        if let Some(w) = self.metadata.get("weight")
            && parse_weight(w).is_err()
        {
            return bad("GOSD_WEIGHT", w.to_owned(), WEIGHT_RANGE.into());
        }
        #[cfg(feature = "redis")]
        self.redis_options()?;
        if self.driver == DriverKind::Etcd {
            self.etcd_options()?;
        }
        Ok(())
    }

    /// [`health_url`](Self::health_url) parsed, or why it cannot be used.
    pub(crate) fn health_check_url(&self) -> Result<Option<url::Url>, String> {
        let Some(raw) = &self.health_url else {
            return Ok(None);
        };
        let u = url::Url::parse(raw.trim())
            .map_err(|e| format!("{e}; expected http://host:port/path"))?;
        if u.scheme() != "http" || u.host_str().is_none() {
            return Err("expected http://host:port/path (a local endpoint, plain HTTP)".into());
        }
        Ok(Some(u))
    }

    /// This client's zone: the `zone` of its [`metadata`](Self::metadata)
    /// (`GOSD_ZONE`). Its picks prefer instances of the same zone.
    pub fn zone(&self) -> Option<&str> {
        self.metadata.get("zone")
    }
}

const MIN_TTL: Duration = Duration::from_millis(100);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err_var(vars: &[(&str, &str)]) -> String {
        match Config::from_vars(vars.iter().copied()) {
            Err(Error::Config { var, .. }) => var,
            other => panic!("expected a config error for {vars:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_go_gosd() {
        let c = Config::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.try_refresh_amount, 3);
        assert_eq!(c.try_find_service_amount, 5);
        assert_eq!(c.try_find_service_delay, Duration::from_secs(3));
        assert_eq!(c.ttl, Duration::from_secs(10));
        assert_eq!(c.heartbeat, Duration::from_secs(10) / 3);
        assert_eq!(c.key, "gosd");
        assert_eq!(c.driver, DriverKind::Redis);
        assert!(!c.redis.is_configured());
        assert_eq!(c.cron.unwrap().as_str(), "*/30 * * * * *");
    }

    #[test]
    fn both_spellings_work() {
        for (k, v) in [("gosdRedisAddr", "r:1"), ("GOSD_REDIS_ADDR", "r:1")] {
            let c = Config::from_vars([(k, v), ("gosdRedisDB", "2")]).unwrap();
            assert_eq!(c.redis.addr.as_deref(), Some("r:1"));
            assert_eq!(c.redis.db, 2);
        }
        let c = Config::from_vars([
            ("GOSD_TRY_REFRESH_AMOUNT", "7"),
            ("gosdTryFindServiceAmount", "2"),
            ("GOSD_TRY_FIND_SERVICE_DELAY", "250ms"),
        ])
        .unwrap();
        assert_eq!((c.try_refresh_amount, c.try_find_service_amount), (7, 2));
        assert_eq!(c.try_find_service_delay, Duration::from_millis(250));
        // Same value twice is fine; different values are a clear error.
        Config::from_vars([("gosdRedisDB", "1"), ("GOSD_REDIS_DB", "1")]).unwrap();
        let e = Config::from_vars([("gosdRedisDB", "1"), ("GOSD_REDIS_DB", "2")]).unwrap_err();
        assert!(e.to_string().contains("gosdRedisDB"), "{e}");
    }

    #[test]
    fn every_invalid_value_names_its_variable() {
        let cases = [
            ("gosdTryRefreshAmount", "abc"),
            ("gosdTryRefreshAmount", "0"),
            ("GOSD_TRY_REFRESH_AMOUNT", "-1"),
            ("gosdTryFindServiceAmount", "1.5"),
            ("gosdTryFindServiceDelay", "soon"),
            ("gosdRedisDB", "x"),
            ("gosdRedisAddr", "nohostport"),
            ("GOSD_REDIS_ADDR", ":6379"),
            ("gosdRedisAddr", "host:99999"),
            ("GOSD_REDIS_URL", "http://x"),
            ("GOSD_DRIVER", "etcd2"),
            ("GOSD_TTL", "0"),
            ("GOSD_TTL", "1ms"),
            ("GOSD_TTL", "10000000000000000000"),
            ("GOSD_TTL", "ten"),
            ("GOSD_HEARTBEAT", "1ms"),
            ("GOSD_REDIS_URL", "rediss://h:6379/#insecure"),
            ("GOSD_REDIS_CA", "/no/such/ca.pem"),
            ("GOSD_REDIS_CERT", "/no/such/cert.pem"),
            ("GOSD_REDIS_KEY", "/no/such/key.pem"),
            ("gosdRedisAddr", "redis://:pw@h:6379"),
            ("GOSD_HEARTBEAT", "20s"),
            ("GOSD_CRON", "every minute"),
            ("GOSD_KEY", "{x}"),
            ("GOSD_KEY", ""),
            ("GOSD_WATCH", "maybe"),
            ("GOSD_DRAIN", "a while"),
        ];
        for (k, v) in cases {
            assert_eq!(err_var(&[(k, v)]), k, "for {k}={v}");
        }
    }

    #[test]
    fn etcd_settings() {
        let c = Config::from_vars([
            ("GOSD_DRIVER", "etcd"),
            ("GOSD_ETCD_ENDPOINTS", " http://e1:2379, e2:2379 ,"),
            ("GOSD_ETCD_PREFIX", "/svc"),
        ])
        .unwrap();
        assert_eq!(c.driver, DriverKind::Etcd);
        assert_eq!(c.etcd.endpoints, ["http://e1:2379", "e2:2379"]);
        assert_eq!(c.etcd.prefix, "/svc");
        let d = Config::from_vars([("GOSD_DRIVER", "etcd")]).unwrap();
        assert_eq!(d.etcd, EtcdTarget::default());
        for (var, value, says) in [
            ("GOSD_ETCD_ENDPOINTS", "", "at least one endpoint"),
            ("GOSD_ETCD_ENDPOINTS", "https://e:2379", "TLS"),
            ("GOSD_ETCD_ENDPOINTS", "e1:2379,e2", "endpoint `e2`"),
            (
                "GOSD_ETCD_ENDPOINTS",
                "http://root:hunter2@e:2379",
                "credentials",
            ),
            ("GOSD_ETCD_PREFIX", "/", "prefix"),
        ] {
            let e = Config::from_vars([("GOSD_DRIVER", "etcd"), (var, value)]).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(var) && shown.contains(says), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn heartbeat_must_be_shorter_than_ttl() {
        let e = Config::from_vars([("GOSD_TTL", "2s"), ("GOSD_HEARTBEAT", "2s")]).unwrap_err();
        assert!(e.to_string().contains("GOSD_HEARTBEAT"), "{e}");
        let c = Config::from_vars([("GOSD_TTL", "2s"), ("GOSD_HEARTBEAT", "500ms")]).unwrap();
        assert_eq!(c.heartbeat, Duration::from_millis(500));
    }

    #[test]
    fn passwords_never_show() {
        let e = Config::from_vars([("GOSD_REDIS_URL", "ftp://user:hunter2@host/0")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("GOSD_REDIS_URL"), "{e}");
        let e = Config::from_vars([
            ("gosdRedisPassword", "hunter2"),
            ("GOSD_REDIS_PASSWORD", "other"),
        ])
        .unwrap_err();
        assert!(
            !e.to_string().contains("hunter2") && !e.to_string().contains("other"),
            "{e}"
        );
        let c = Config::from_vars([
            ("gosdRedisPassword", "hunter2"),
            ("GOSD_REDIS_URL", "redis://:hunter2@h:1/0"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert_eq!(redact_url("redis://u:p@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis:/:hunter2@h:1"), "***@h:1");
        assert_eq!(
            redact_url("unix:///r.sock?db=1&pass=hunter2"),
            "unix:///r.sock?db=1&pass=***"
        );
        for (k, v) in [
            ("GOSD_REDIS_URL", "redis:/:hunter2@h:6379"),
            ("gosdRedisAddr", "redis://:hunter2@h:6379"),
        ] {
            let e = Config::from_vars([(k, v)]).unwrap_err();
            assert!(
                !e.to_string().contains("hunter2") && e.to_string().contains(k),
                "{e}"
            );
        }
    }

    #[test]
    fn cron_forms() {
        assert!(
            Config::from_vars([("GOSD_CRON", "off")])
                .unwrap()
                .cron
                .is_none()
        );
        let c = Config::from_vars([("GOSD_CRON", "*/5 * * * *")]).unwrap();
        assert!(c.cron.unwrap().until_next().unwrap() <= Duration::from_secs(300));
        let c = Config::from_vars([("GOSD_CRON", "*/2 * * * * *")]).unwrap();
        assert!(c.cron.unwrap().until_next().unwrap() <= Duration::from_secs(2));
    }

    proptest! {
        #[test]
        fn any_env_value_is_accepted_or_refused_naming_its_variable(
            k in prop::sample::select(SETTINGS.iter().flat_map(|v| [v.go.unwrap_or(v.upper), v.upper]).collect::<Vec<_>>()),
            v in ".*",
        ) {
            // Any value is accepted or refused, and a refusal names the
            // variable as it was spelled, in the error and in its message.
            match Config::from_vars([(k, v.as_str())]) {
                Ok(_) => {}
                Err(e @ Error::Config { .. }) => {
                    let Error::Config { var, .. } = &e else { unreachable!() };
                    prop_assert_eq!(var.as_str(), k);
                    prop_assert!(e.to_string().contains(k), "{}", e);
                }
                Err(other) => prop_assert!(false, "not a config error: {other:?}"),
            }
        }

        #[test]
        fn durations_round_trip_through_their_shown_form(ms in 0u64..100 * 24 * 3600 * 1000) {
            // What an error message or the docs show (humantime's format)
            // parses back to the same duration, and so does a bare integer
            // (Go gosd's seconds).
            let d = Duration::from_millis(ms);
            let shown = humantime::format_duration(d).to_string();
            prop_assert_eq!(parse_duration(&shown), Ok(d), "{}", shown);
            let secs = ms / 1000;
            prop_assert_eq!(parse_duration(&secs.to_string()), Ok(Duration::from_secs(secs)));
        }

        #[test]
        fn any_accepted_duration_round_trips(v in ".*") {
            if let Ok(d) = parse_duration(&v) {
                let shown = humantime::format_duration(d).to_string();
                prop_assert_eq!(parse_duration(&shown), Ok(d), "{:?} shown as {}", v, shown);
            }
        }

        #[test]
        fn redaction_never_leaks_the_password(user in "[a-z]{1,8}", pass in "[0-9]{6,12}", host in "[a-z]{1,8}") {
            let shown = redact_url(&format!("redis://{user}:{pass}@{host}:6379/0"));
            prop_assert!(!shown.contains(&pass));
        }
    }
}
