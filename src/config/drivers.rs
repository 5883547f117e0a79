//! The driver settings into the drivers' own options, which check each
//! one ([`gosd_redis::RedisOptions`], [`gosd_etcd::EtcdOptions`]); and a
//! driver's verdict on a setting, or a server's refusal of one, as an
//! error naming the variable that holds it.

use gosd_driver::DriverError;

use super::{Config, DriverKind, redact_url};
use crate::error::{Error, Result};

impl Config {
    /// The Redis settings as [`gosd_redis::RedisOptions`], each checked by
    /// the driver. Every one is checked, also those a URL overrides; the
    /// URL, when set, wins.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_options(&self) -> Result<gosd_redis::RedisOptions> {
        let var = |setting: &str| match setting {
            "url" => "GOSD_REDIS_URL",
            "addr" => "GOSD_REDIS_ADDR",
            "db" => "GOSD_REDIS_DB",
            "key" => "GOSD_KEY",
            "tls_ca" => "GOSD_REDIS_CA",
            "tls_cert" => "GOSD_REDIS_CERT",
            "tls_key" => "GOSD_REDIS_KEY",
            "sentinels" => "GOSD_REDIS_SENTINELS",
            "master" => "GOSD_REDIS_MASTER",
            "sentinel_password" => "GOSD_REDIS_SENTINEL_PASSWORD",
            "cluster" => "GOSD_REDIS_CLUSTER",
            _ => "GOSD_REDIS_*",
        };
        let bad = |e| driver_config_error(e, var);
        let r = &self.redis;
        let mut options = gosd_redis::RedisOptions::new()
            .key(&self.key)
            .map_err(bad)?;
        if let Some(addr) = &r.addr {
            options = options.addr(addr).map_err(bad)?;
        }
        if let Some(password) = &r.password {
            options = options.password(password);
        }
        options = options.db(r.db).map_err(bad)?;
        if let Some(url) = &r.url {
            options = options.url(url).map_err(bad)?;
        }
        if let Some(ca) = &r.tls_ca {
            options = options.tls_ca(ca).map_err(bad)?;
        }
        match (&r.tls_cert, &r.tls_key) {
            (Some(cert), Some(key)) => {
                options = options.tls_client_cert(cert, key).map_err(bad)?;
            }
            (None, None) => {}
            (Some(set), None) | (None, Some(set)) => {
                let (var, other) = match r.tls_cert {
                    Some(_) => ("GOSD_REDIS_CERT", "GOSD_REDIS_KEY"),
                    None => ("GOSD_REDIS_KEY", "GOSD_REDIS_CERT"),
                };
                return Err(Error::Config {
                    var: var.to_owned(),
                    value: set.display().to_string(),
                    reason: format!("a client certificate needs both files: set {other} too"),
                });
            }
        }
        let options = self.sentinel_options(options)?;
        self.cluster_options(options)
    }

    /// [`redis_options`](Self::redis_options)' Cluster part: the nodes
    /// replace an address, and exclude sentinels.
    #[cfg(feature = "redis")]
    fn cluster_options(
        &self,
        options: gosd_redis::RedisOptions,
    ) -> Result<gosd_redis::RedisOptions> {
        let r = &self.redis;
        let Some(list) = &r.cluster else {
            return Ok(options);
        };
        let refused = |reason: &str| Error::Config {
            var: "GOSD_REDIS_CLUSTER".to_owned(),
            value: redact_url(list),
            reason: reason.to_owned(),
        };
        if r.sentinels.is_some() {
            return Err(refused(
                "a Redis Cluster and Redis Sentinel (GOSD_REDIS_SENTINELS) exclude each other: set one",
            ));
        }
        if let Some(addr) = &r.addr {
            return Err(Error::Config {
                var: "GOSD_REDIS_ADDR".to_owned(),
                value: redact_url(addr),
                reason: "the cluster's nodes are in GOSD_REDIS_CLUSTER; unset this".to_owned(),
            });
        }
        options
            .cluster(list)
            .map_err(|e| driver_config_error(e, |_| "GOSD_REDIS_CLUSTER"))
    }

    /// [`redis_options`](Self::redis_options)' Sentinel part: the
    /// sentinels and the master name come together, and replace an address.
    #[cfg(feature = "redis")]
    fn sentinel_options(
        &self,
        options: gosd_redis::RedisOptions,
    ) -> Result<gosd_redis::RedisOptions> {
        let r = &self.redis;
        let config = |var: &str, value: &str, reason: &str| Error::Config {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let var = |setting: &str| match setting {
            "master" => "GOSD_REDIS_MASTER",
            "sentinel_password" => "GOSD_REDIS_SENTINEL_PASSWORD",
            _ => "GOSD_REDIS_SENTINELS",
        };
        match (&r.sentinels, &r.master) {
            (None, None) => match &r.sentinel_password {
                Some(_) => Err(config(
                    "GOSD_REDIS_SENTINEL_PASSWORD",
                    "***",
                    "set GOSD_REDIS_SENTINELS and GOSD_REDIS_MASTER too",
                )),
                None => Ok(options),
            },
            (None, Some(master)) => Err(config(
                "GOSD_REDIS_MASTER",
                master,
                "set GOSD_REDIS_SENTINELS too: the sentinels that know this primary",
            )),
            (Some(list), None) => Err(config(
                "GOSD_REDIS_SENTINELS",
                &redact_url(list),
                "set GOSD_REDIS_MASTER too: the primary's name in the sentinels' config",
            )),
            (Some(list), Some(master)) => {
                if let Some(addr) = &r.addr {
                    return Err(config(
                        "GOSD_REDIS_ADDR",
                        &redact_url(addr),
                        "the sentinels name the primary (GOSD_REDIS_SENTINELS is set); unset this",
                    ));
                }
                let mut options = options
                    .sentinels(list, master)
                    .map_err(|e| driver_config_error(e, var))?;
                if let Some(password) = &r.sentinel_password {
                    options = options
                        .sentinel_password(password)
                        .map_err(|e| driver_config_error(e, var))?;
                }
                Ok(options)
            }
        }
    }

    /// The etcd settings as [`gosd_etcd::EtcdOptions`], checked by the
    /// driver crate (present in every build, without its client).
    pub(crate) fn etcd_options(&self) -> Result<gosd_etcd::EtcdOptions> {
        let var = |setting: &str| match setting {
            "endpoints" => "GOSD_ETCD_ENDPOINTS",
            "prefix" => "GOSD_ETCD_PREFIX",
            _ => "GOSD_ETCD_*",
        };
        gosd_etcd::EtcdOptions::new(&self.etcd.endpoints, &self.etcd.prefix)
            .map_err(|e| driver_config_error(e, var))
    }

    /// A driver error as gosd reports it: a refused setting (a wrong
    /// password, a user without the permissions) names the variable that
    /// holds it; anything else is passed on.
    pub(crate) fn driver_error(&self, e: DriverError) -> Error {
        match e {
            DriverError::Denied {
                backend,
                setting,
                message,
            } if self.driver == DriverKind::Redis => {
                let (var, value) = match (&self.redis.url, setting.as_str()) {
                    (Some(url), _) => ("GOSD_REDIS_URL", redact_url(url)),
                    (None, "password") => ("gosdRedisPassword", "***".to_owned()),
                    (None, _) => ("GOSD_REDIS_URL", "(not set: user default)".to_owned()),
                };
                Error::Config {
                    var: var.to_owned(),
                    value,
                    reason: format!("{backend} refused it: {message}"),
                }
            }
            other => Error::Driver(other),
        }
    }
}

/// A driver's verdict on one of its settings, as an error naming the
/// variable (`var` maps the driver's name for the setting to it).
fn driver_config_error(e: DriverError, var: impl Fn(&str) -> &'static str) -> Error {
    match e {
        DriverError::InvalidConfig {
            setting,
            value,
            reason,
        } => Error::Config {
            var: var(&setting).to_owned(),
            value,
            reason,
        },
        other => Error::Driver(other),
    }
}
