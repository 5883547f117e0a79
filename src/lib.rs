//! Service discovery through Redis, the way Go's gosd does it — and safer.
//!
//! A service calls [`start`] at boot and is registered under a unique name
//! `<service>-<id>`; callers ask [`iterate_service_route`] for the next URL
//! of a service, round-robin; the route table refreshes itself in the
//! background. On SIGINT/SIGTERM, on [`finish`], or when the
//! [`Registration`] drops, the instance deregisters.
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), gosd::Error> {
//!     let me = gosd::start("provider", "http://localhost:3333").await?; // config from env
//!     println!("registered as {me}");              // provider-20261121190255.46985214
//!     let url = gosd::iterate_service_route("provider").await?;
//!     gosd::update_by_cron();                      // from middleware; cheap when not due
//!     Ok(())                                       // `me` dropped: deregistered
//! }
//! ```
//!
//! # Why it is built this way
//! - **Never route to a dead instance.** Go gosd keeps a `kill -9`ed
//!   provider in Redis forever. Here every instance holds a lease (TTL,
//!   10 s by default) renewed by a heartbeat; an expired lease is removed
//!   from Redis, and each client refreshes exactly when the earliest lease
//!   it knows of runs out, so a crashed instance leaves every table within
//!   its TTL without any polling cadence. A heartbeat that finds its entry
//!   gone (Redis restarted empty) writes it again.
//! - **Picks never wait.** The route table is an immutable snapshot behind
//!   an [`arc_swap::ArcSwap`], and each thread keeps the version it last
//!   read: while no refresh has swapped in a new one, a pick reads one
//!   atomic version number, looks the service up in the table's own
//!   open-addressed index, bumps one atomic counter and clones an
//!   `Arc<str>`. No lock, no allocation. Refreshes build a new table and
//!   swap it in whole; readers never see half of one. (Go gosd's
//!   concurrent picks race on one map.)
//! - **Nothing is lost.** A failed refresh keeps the last good table; bad
//!   configuration is an [`Error::Config`] naming the variable, never a
//!   silent zero.
//! - **Go and Rust share one Redis.** The hash `gosd` holds
//!   `<service>-<id>` → URL exactly as Go gosd writes it; leases live
//!   beside it in `{gosd}:leases`. Entries without a lease (Go gosd's)
//!   are routed to and never reaped.
//!
//! # Drivers
//! The registry is a [`Driver`]: [`RedisDriver`] (feature `redis`, on by
//! default), `EtcdDriver` (feature `etcd`, `GOSD_DRIVER=etcd`),
//! [`MemoryDriver`] for tests and the quickstart, or your own,
//! passed to [`start_with`] or [`ClientBuilder::driver`]. The contract and
//! its conformance suite live in the `gosd-driver` crate.
//!
//! # Global or instance
//! The free functions act on one process-wide [`Client`] set by [`start`],
//! [`start_with`] or [`connect`]; before that they return
//! [`Error::NotStarted`]. Tests and libraries use a [`Client`] directly.

#![warn(missing_docs)]

mod backoff;
mod cadence;
mod client;
mod config;
mod error;
mod global;
mod naming;
mod outliers;
mod pick_order;
mod random;
mod registration;
mod rotation;
mod route;
mod route_future;
mod selector;
mod service_index;
mod service_watch;
mod shared_memory;
mod signals;
mod skipped;
mod snapshot;
mod table;
mod weights;

#[path = "integrations/layer.rs"]
pub mod layer;

#[cfg(feature = "tower")]
#[path = "integrations/tower.rs"]
pub mod tower;

#[cfg(feature = "tonic")]
#[path = "integrations/tonic.rs"]
pub mod tonic;

#[cfg(feature = "reqwest")]
#[path = "integrations/reqwest.rs"]
pub mod reqwest;

pub use client::{Client, ClientBuilder, Instance, IntoHealth};
pub use config::{Config, Cron, DriverKind, EtcdTarget, RedisTarget};
pub use error::{Error, Result};

/// gosd's syntax for setting values, for crates that read settings of their
/// own next to gosd's (as gosd-router does), so that both read alike.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(gosd::env_value::duration("3"), Ok(Duration::from_secs(3)));
/// assert_eq!(gosd::env_value::duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(gosd::env_value::boolean("Off"), Ok(false));
/// assert!(gosd::env_value::boolean("maybe").is_err());
/// ```
pub mod env_value {
    /// A bare integer is seconds (Go gosd's form); anything else is a
    /// humantime duration such as `250ms` or `1m 30s`. `Err` says what
    /// was expected.
    pub use crate::config::parse_duration as duration;

    /// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
    pub use crate::config::parse_bool as boolean;
}
/// gosd's rules for what goes into the registry, for tools that register
/// on others' behalf (gosd-registrar) and check before they write, as
/// [`Client::register`] does.
///
/// ```
/// assert!(gosd::validate::service_name("order-api").is_ok());
/// assert!(gosd::validate::service_name("order api").is_err());
/// assert!(gosd::validate::route_url("http://10.88.0.2:8080").is_ok());
/// assert!(gosd::validate::route_url("10.88.0.2:8080").is_err());
/// ```
pub mod validate {
    /// A service name: 1 to 200 of `A-Z a-z 0-9 . _ -`, not starting or
    /// ending with `-`. `Err` is [`Error::InvalidName`](crate::Error::InvalidName) saying why.
    pub use crate::naming::check_service as service_name;

    /// A route URL: absolute, with a host, no white space around it.
    /// `Err` is [`Error::InvalidUrl`](crate::Error::InvalidUrl) saying why.
    pub use crate::naming::check_url as route_url;

    /// Adds a metadata pair by `GOSD_META`'s rules: the key, the value
    /// and the size as [`Meta::insert`](crate::Meta::insert) checks them,
    /// and a `weight` of 1 to 1000. `Err` says why; nothing changes then.
    ///
    /// ```
    /// let mut meta = gosd::Meta::default();
    /// gosd::validate::metadata_pair(&mut meta, "zone", "eu-1").unwrap();
    /// assert!(gosd::validate::metadata_pair(&mut meta, "weight", "0").unwrap_err().contains("1 to 1000"));
    /// assert!(gosd::validate::metadata_pair(&mut meta, "bad key", "1").is_err());
    /// assert_eq!(meta.encode(), "up,zone=eu-1");
    /// ```
    pub use crate::config::insert_metadata as metadata_pair;
}
pub use global::{
    add_service_manually, client, connect, delete_service_with_url, finish, get,
    iterate_service_route, route, set_status, shutdown_signal, start, start_with, update_by_cron,
};
pub use outliers::Outcome;
pub use registration::Registration;
pub use route::Route;
pub use selector::Selector;
pub use service_watch::{Change, ServiceWatch};
pub use shared_memory::shared_memory_registry;

pub use gosd_driver::{Driver, DriverError, DynDriver, InstanceName, Meta, Status};
#[cfg(feature = "etcd")]
pub use gosd_etcd::{EtcdDriver, EtcdOptions};
pub use gosd_memory::MemoryDriver;
#[cfg(feature = "redis")]
pub use gosd_redis::{RedisDriver, RedisOptions};

/// The driver contract, for writing a driver of your own.
pub mod driver {
    pub use gosd_driver::*;
}
