//! Building a [`Client`]: the builder, and the driver a config names.

use super::*;

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
    pub(super) config: Option<Config>,
    pub(super) driver: Option<Arc<dyn DynDriver>>,
    pub(super) handle_signals: bool,
    pub(super) metadata: Vec<(String, String)>,
    pub(super) health_check: Option<super::health::Check>,
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

    /// Adds `key=value` to this instance's metadata, over the config's
    /// ([`Config::metadata`], `GOSD_META`). `zone` and `weight` mean
    /// something to gosd (see [`Config::metadata`]). Checked by
    /// [`build`](Self::build):
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = gosd::Client::builder()
    ///     .driver(gosd::MemoryDriver::new())
    ///     .metadata("version", "2.1 beta")
    ///     .build()
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with(r#"invalid metadata="version=2.1 beta""#), "{err}");
    /// # }
    /// ```
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Asks `check` on every heartbeat whether this instance is healthy:
    /// [`Config::health_failures`] failures in a row (`GOSD_HEALTH_FAILURES`,
    /// 3) mark it down, so that consumers stop picking it; one success
    /// marks it up again. A status set by hand other than up stands. It
    /// answers `bool` (`true` is healthy) or a `Result` (`Ok` is healthy;
    /// the error is logged when the failures mark the instance down), see
    /// [`IntoHealth`](crate::IntoHealth).
    ///
    /// A check that panics fails, and the heartbeat goes on. One that takes
    /// longer than half the heartbeat (at most 2 s, and less when the TTL
    /// leaves less to spare) fails, and is aborted: the lease is renewed
    /// after the check, and must not wait on it. It runs on a task of its
    /// own, so it must not block its thread. With [`Config::health_url`]
    /// set too, both are asked, at once, and both must pass. Called again,
    /// the last check given is the one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gosd::Error> {
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// // Say, whether the database answers: a flag kept by the app here.
    /// let database_up = Arc::new(AtomicBool::new(true));
    /// let flag = database_up.clone();
    /// let client = gosd::Client::builder()
    ///     .driver(gosd::MemoryDriver::new())
    ///     .health_check(move || {
    ///         let flag = flag.clone();
    ///         async move { flag.load(Ordering::Relaxed) }
    ///     })
    ///     .build()
    ///     .await?;
    /// let me = client.register("provider", "http://10.0.0.7:3333").await?;
    /// // A check that says why: `Ok` is healthy, an `Err` is logged.
    /// let other = gosd::Client::builder()
    ///     .driver(gosd::MemoryDriver::new())
    ///     .health_check(|| async {
    ///         tokio::net::TcpStream::connect("127.0.0.1:5432").await.map(drop)
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn health_check<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output: super::health::IntoHealth> + Send + 'static,
    {
        self.health_check = Some(super::health::boxed(check));
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
        let mut config = self.config.unwrap_or_default();
        for (k, v) in &self.metadata {
            config
                .metadata
                .insert(k, v)
                .map_err(|reason| Error::Config {
                    var: "metadata".into(),
                    value: format!("{k}={v}"),
                    reason,
                })?;
        }
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let driver = match self.driver {
            Some(d) => d,
            None => driver_for(&config)?,
        };
        let client = Client::with_parts(config, driver, runtime);
        if let Some(check) = self.health_check {
            // A new client: nothing has set it.
            let _ = client.inner.membership.health_check.set(check);
        }
        client.inner.refresh().await?;
        client.inner.spawn(maintain(Arc::downgrade(&client.inner)));
        if client.inner.config.watch {
            client
                .inner
                .spawn(super::freshness::watch(Arc::downgrade(&client.inner)));
        }
        if self.handle_signals {
            crate::signals::install(&client.inner, &client.inner.runtime);
        }
        Ok(client)
    }
}

impl Config {
    /// The driver this config names ([`Config::driver`] and its
    /// settings), for tools that talk to the registry without a
    /// [`Client`]: the `gosd` CLI lists, removes and checks entries with
    /// it. Nothing is connected yet; the first call connects. A
    /// [`Client`] built from this config uses the same driver.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gosd::Error> {
    /// let config = gosd::Config::from_vars([("GOSD_DRIVER", "memory")])?;
    /// let driver = config.open_driver()?;
    /// assert!(driver.snapshot().await?.entries.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the config cannot be used, or names a driver
    /// this build of gosd lacks.
    pub fn open_driver(&self) -> Result<Arc<dyn DynDriver>> {
        self.validate()?;
        driver_for(self)
    }
}

/// The driver a config names.
pub(super) fn driver_for(config: &Config) -> Result<Arc<dyn DynDriver>> {
    match config.driver {
        DriverKind::Memory => Ok(Arc::new(crate::shared_memory::shared_memory_registry())),
        DriverKind::Redis => redis_driver(config),
        DriverKind::Etcd => etcd_driver(config),
    }
}

#[cfg(feature = "etcd")]
pub(super) fn etcd_driver(config: &Config) -> Result<Arc<dyn DynDriver>> {
    let options = config.etcd_options()?;
    Ok(Arc::new(gosd_etcd::EtcdDriver::new(options)))
}

#[cfg(not(feature = "etcd"))]
pub(super) fn etcd_driver(_: &Config) -> Result<Arc<dyn DynDriver>> {
    Err(missing_feature("etcd", "enable it (features = [\"etcd\"])"))
}

#[cfg(feature = "redis")]
pub(super) fn redis_driver(config: &Config) -> Result<Arc<dyn DynDriver>> {
    let options = config.redis_options()?;
    Ok(Arc::new(gosd_redis::RedisDriver::new(options)))
}

#[cfg(not(feature = "redis"))]
pub(super) fn redis_driver(_: &Config) -> Result<Arc<dyn DynDriver>> {
    Err(missing_feature(
        "redis",
        "enable it or use GOSD_DRIVER=memory",
    ))
}

/// `GOSD_DRIVER` names a driver this build of gosd does not have.
#[cfg(not(all(feature = "redis", feature = "etcd")))]
fn missing_feature(driver: &str, hint: &str) -> Error {
    Error::Config {
        var: "GOSD_DRIVER".into(),
        value: driver.into(),
        reason: format!("gosd was built without its `{driver}` feature; {hint}"),
    }
}
