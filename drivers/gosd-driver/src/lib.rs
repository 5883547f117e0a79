//! The driver contract of [gosd](https://docs.rs/gosd).
//!
//! A driver stores the registry: which instance (`<service>-<id>`) serves at
//! which URL, and until when its lease runs. This crate holds only the
//! contract, so that driver crates (`gosd-redis`, `gosd-memory`, your own)
//! depend on it alone and the `gosd` facade can depend on all of them without
//! a cycle — the same split as `sqlx-core` and its drivers.
//!
//! # The contract in one paragraph
//! Names are unique: [`Driver::register`] writes an entry only if the name is
//! free. A registered entry carries a lease of `ttl`; [`Driver::renew`]
//! extends it and writes the entry again if the backend lost it. An entry
//! whose lease ran out is removed by the next [`Driver::snapshot`] (or by any
//! other write), so a crashed instance disappears within its TTL. Entries
//! that have no lease at all (written by Go gosd or by hand) are never
//! reaped. Lease times are the backend's own clock, reported as time
//! *remaining*, so clients never compare clocks.
//!
//! Each entry may carry a status and metadata ([`Meta`]), written by
//! [`Driver::register_with`] and [`Driver::renew_with`] beside the
//! `name → url` mapping (never in it: Go gosd reads that) and removed with
//! it; an entry without any reads as up with none.
//!
//! Every change moves a [`Version`]; [`Driver::fetch`] answers "unchanged"
//! in one round trip when nothing moved, and [`Driver::watch`] pushes each
//! change as it happens.
//!
//! The `conformance` feature adds [`conformance`], the test suite every driver
//! runs against its real backend.

#![warn(missing_docs)]

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

#[cfg(feature = "conformance")]
pub mod conformance;
mod dyn_driver;
mod finding;
mod meta;

pub use dyn_driver::{BoxFuture, DynDriver};
pub use finding::{Finding, Severity};
pub use meta::{MAX_ENCODED_LEN, MAX_KEY_LEN, MAX_PAIRS, MAX_VALUE_LEN, Meta, Status};

/// The name of one instance: `<service>-<id>`, as Go gosd writes it.
///
/// The id is everything after the **last** `-`, so service names may contain
/// `-` themselves and ids never do.
///
/// ```
/// use gosd_driver::InstanceName;
/// let name = InstanceName::parse("order-api-20160315122936.17256541").unwrap();
/// assert_eq!(name.service(), "order-api");
/// assert_eq!(name.id(), "20160315122936.17256541");
/// assert!(InstanceName::parse("no_dash").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName {
    // Shared: route tables clone names on every refresh.
    full: std::sync::Arc<str>,
    split: usize,
}

impl InstanceName {
    /// Parses a registry field. `None` when it has no `-`, or when the
    /// service or the id part is empty.
    pub fn parse(field: &str) -> Option<Self> {
        let split = field.rfind('-')?;
        if split == 0 || split + 1 == field.len() {
            return None;
        }
        Some(Self {
            full: field.into(),
            split,
        })
    }

    /// Joins a service name and an id. `None` when either is empty or the id
    /// contains `-` (it could not be parsed back).
    pub fn new(service: &str, id: &str) -> Option<Self> {
        if service.is_empty() || id.is_empty() || id.contains('-') {
            return None;
        }
        Some(Self {
            full: format!("{service}-{id}").into(),
            split: service.len(),
        })
    }

    /// The whole name, `<service>-<id>`: the registry field.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The service part: everything before the last `-`.
    pub fn service(&self) -> &str {
        &self.full[..self.split]
    }

    /// The id part: everything after the last `-`.
    pub fn id(&self) -> &str {
        &self.full[self.split + 1..]
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

/// One raw registry entry, as the backend holds it. The facade validates it;
/// a driver hands over whatever is stored, garbage included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The field, normally `<service>-<id>`.
    pub field: String,
    /// The value, normally a URL.
    pub url: String,
    /// Its status and metadata; [`Meta::default`] (up, nothing else) for
    /// an entry that has none, as every entry Go gosd writes.
    pub meta: Meta,
}

/// The whole registry at one moment.
///
/// It carries the earliest lease, not every lease: that is all a client
/// needs to know when an entry could next expire, and sending every lease
/// would double what a refresh moves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every entry, leased or lease-less; expired ones are gone.
    pub entries: Vec<Entry>,
    /// Where the registry stood when it was read.
    pub version: Version,
    /// Time left on the earliest lease, by the backend's clock: when a
    /// client should look again because an entry may have expired. `None`
    /// when no entry has a lease, or when the backend removes expired
    /// entries itself and pushes their removal (etcd), so there is nothing
    /// to come back for.
    pub next_expiry: Option<Duration>,
}

/// Where a registry stands, in three numbers a client can compare in one
/// round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Version {
    /// Changes when the registry lost its state (a backend restarted
    /// empty), so a client can tell "everyone left" from "the registry
    /// forgot everyone".
    pub generation: u64,
    /// Moves on every change a driver makes: register, deregister, reap,
    /// restore. Writers that do not know of it (Go gosd) do not move it.
    pub revision: u64,
    /// How many entries there are: catches additions and removals by
    /// writers that do not move the revision.
    pub entries: u64,
}

/// What [`Driver::fetch`] found. More kinds of answer may come; a caller
/// that meets one it does not know asks again with `fetch(None)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fetched {
    /// The registry is still at the version the caller knows.
    Unchanged {
        /// Time left on the earliest lease, if any: when the next entry
        /// could expire, and so when it is worth asking again.
        next_expiry: Option<Duration>,
    },
    /// The registry changed; here it is, whole.
    Changed(Snapshot),
    /// The registry changed by a few changes the driver still has on
    /// record: here they are, oldest first, instead of the whole registry.
    /// A caller on the version it sent reaches `version` by applying them
    /// in order, as it applies pushed [`Event`]s. One that cannot (they do
    /// not follow on from what it has) reads it whole with `fetch(None)`.
    /// Never the answer to `fetch(None)`.
    Changes {
        /// `Put`, `Removed` or `Changed` (several changes at once: a read
        /// is needed), each with the version right after it.
        events: Vec<Event>,
        /// The registry's version now. It differs from the last event's
        /// when a writer that keeps no record (Go gosd) wrote since.
        version: Version,
        /// Time left on the earliest lease now, as in `Unchanged`. The
        /// leases in `Put` events count from when they were written.
        next_expiry: Option<Duration>,
    },
}

/// A change pushed by [`Driver::watch`].
///
/// `Put` and `Removed` say which revision they follow (`since`): the driver
/// promises that nothing changed in the registry between `since` and
/// `version.revision`. A client whose table stands at a revision `r` with
/// `since <= r < version.revision` can apply the change without a fetch.
/// For Redis, whose revision moves by one per change, `since` is always
/// `version.revision - 1`; for etcd, whose revision is shared with every
/// other key in the cluster, it is the revision of the previous change
/// under the prefix, which the ordered, gap-free watch stream guarantees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The subscription is live: every change from now on is delivered.
    /// Whatever happened before it must be fetched.
    Subscribed,
    /// One entry was written (registered, or restored after data loss);
    /// `version` is the registry's version right after.
    Put {
        /// The registry's version after this change.
        version: Version,
        /// The revision this change directly follows (see [`Event`]).
        since: u64,
        /// The entry.
        entry: Entry,
        /// Its lease, from now; `None` when the driver does not know it
        /// (etcd: the backend expires leases itself and pushes the removal).
        lease: Option<Duration>,
    },
    /// One entry was removed: deregistered, or its lease ran out.
    Removed {
        /// The registry's version after this change.
        version: Version,
        /// The revision this change directly follows (see [`Event`]).
        since: u64,
        /// The removed field.
        field: String,
    },
    /// Several entries changed at once (many leases reaped, stale entries
    /// removed): fetch to see them.
    Changed {
        /// The registry's version after the change.
        version: Version,
    },
}

/// Where a driver delivers [`Event`]s. It is called on the driver's task
/// and must not block.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// What [`Driver::renew`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The entry was there with this URL; its lease now runs `ttl` from now.
    Renewed,
    /// The entry was gone (reaped, or the backend lost its data) and has been
    /// written again with a fresh lease.
    Restored,
    /// The name now belongs to another URL. Nothing was written; the caller
    /// should register under a new name.
    Conflict,
    /// The name was deregistered (its lease had not run out yet). Nothing
    /// was written: a renewal that was in flight during deregistration must
    /// not bring the instance back.
    Gone,
}

/// A boxed error source, for driver errors that wrap a client library's own.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a driver operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The backend could not be reached or did not answer in time. Worth
    /// retrying.
    #[error("{backend} is unreachable: {source}")]
    Unavailable {
        /// Where the backend is, without credentials (e.g. `redis at 127.0.0.1:6379/0`).
        backend: String,
        /// What the client library said.
        #[source]
        source: BoxError,
    },
    /// The backend answered, but with something this driver did not expect
    /// (a wrong reply shape, an error reply, a key of the wrong type).
    #[error("{backend} answered unexpectedly: {message}")]
    Protocol {
        /// Where the backend is, without credentials.
        backend: String,
        /// What was wrong.
        message: String,
    },
    /// The backend refused this client's credentials or permissions
    /// (Redis `WRONGPASS`, `NOAUTH`, `NOPERM`). Not transient: retrying
    /// with the same setting fails the same way, so a caller fails at once
    /// (at start) or logs it once (while running).
    ///
    /// ```
    /// use gosd_driver::DriverError;
    /// let e = DriverError::Denied {
    ///     backend: "redis at h:6379/0".into(),
    ///     setting: "password".into(),
    ///     message: "authentication failed for user default".into(),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "redis at h:6379/0 refused the password setting: authentication failed for user default"
    /// );
    /// assert!(!e.is_transient());
    /// ```
    #[error("{backend} refused the {setting} setting: {message}")]
    Denied {
        /// Where the backend is, without credentials.
        backend: String,
        /// Which setting it refused, as the driver's options name it
        /// (e.g. `password`, `username`).
        setting: String,
        /// What the backend said, naming the user; never the password.
        message: String,
    },
    /// A setting given to a driver's constructor cannot be used (a
    /// malformed URL, a port out of range, an empty key). No server was
    /// asked, and retrying with the same setting fails the same way.
    ///
    /// ```
    /// use gosd_driver::DriverError;
    /// let e = DriverError::InvalidConfig {
    ///     setting: "url".into(),
    ///     value: gosd_driver::redact_url("rediss://:hunter2@h:6379/#insecure"),
    ///     reason: "a URL fragment would skip the certificate checks".into(),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     r#"invalid url "rediss://***@h:6379/#insecure": a URL fragment would skip the certificate checks"#
    /// );
    /// assert!(!e.is_transient());
    /// ```
    #[error("invalid {setting} {value:?}: {reason}")]
    InvalidConfig {
        /// Which setting, as the driver's options name it (e.g. `url`,
        /// `addr`, `endpoints`): a caller maps it to its own name for it,
        /// such as an environment variable.
        setting: String,
        /// The value as given, with any password replaced by `***`
        /// (see [`redact_url`]).
        value: String,
        /// What is wrong with it, and what would be accepted.
        reason: String,
    },
}

impl DriverError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Hides credentials in a URL-ish string, also a malformed one: everything
/// between the scheme and the last `@`, and `pass=`/`password=` query
/// values. For the `value` of [`DriverError::InvalidConfig`], and anywhere
/// else a setting is shown.
///
/// ```
/// use gosd_driver::redact_url;
/// assert_eq!(redact_url("redis://user:secret@host:6379/0"), "redis://***@host:6379/0");
/// assert_eq!(redact_url("unix:///r.sock?db=1&pass=secret"), "unix:///r.sock?db=1&pass=***");
/// assert_eq!(redact_url("localhost:6379"), "localhost:6379");
/// ```
pub fn redact_url(s: &str) -> String {
    let mut out = match s.rfind('@') {
        Some(at) => {
            let scheme_end = s[..at].find("://").map_or(0, |i| i + 3);
            format!("{}***{}", &s[..scheme_end], &s[at..])
        }
        None => s.to_owned(),
    };
    for key in ["password=", "pass="] {
        let mut from = 0;
        while let Some(i) = out[from..].find(key) {
            let start = from + i + key.len();
            let end = out[start..].find('&').map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// A registry backend.
///
/// Methods return `impl Future + Send`, so an implementation can simply write
/// `async fn`. The `gosd` facade holds drivers as `Arc<dyn DynDriver>`; every
/// `Driver` is a [`DynDriver`] for free.
///
/// Every method must be safe to call concurrently from many tasks, and every
/// method must fail with an error, never panic, on whatever the backend
/// holds or answers.
pub trait Driver: Send + Sync + 'static {
    /// Where the backend is, for errors and logs, never with credentials:
    /// e.g. `redis at 127.0.0.1:6379/0`.
    fn backend(&self) -> String;

    /// Writes `name → url` with a lease of `ttl`, only if `name` is free.
    /// `Ok(false)` when the name is taken: the caller picks another id.
    /// The entry has no metadata and is up.
    fn register(
        &self,
        name: &InstanceName,
        url: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, DriverError>> + Send {
        async move { self.register_with(name, url, &Meta::default(), ttl).await }
    }

    /// [`Driver::register`] with status and metadata, stored beside the
    /// entry (never in the `name → url` mapping itself, which stays as Go
    /// gosd reads it) and removed with it.
    fn register_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, DriverError>> + Send;

    /// Extends the lease of `name` to `ttl` from now, writing the entry
    /// again if the backend lost it (but not if it was deregistered). See
    /// [`Renewal`]. The entry has no metadata and is up.
    fn renew(
        &self,
        name: &InstanceName,
        url: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Renewal, DriverError>> + Send {
        async move { self.renew_with(name, url, &Meta::default(), ttl).await }
    }

    /// [`Driver::renew`] with status and metadata. When the stored
    /// metadata differs from `meta` (a status change), it is written and
    /// the change is pushed as an [`Event::Put`] of the whole entry, like
    /// a registration; otherwise nothing but the lease moves.
    fn renew_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> impl Future<Output = Result<Renewal, DriverError>> + Send;

    /// Removes `name` and its lease if it still maps to `url`. `Ok(false)`
    /// when there was nothing of ours to remove.
    ///
    /// Until the removed lease would have run out, [`Driver::renew`] of
    /// `name` answers [`Renewal::Gone`] and writes nothing.
    ///
    /// This is called on shutdown: from `Drop`, a signal handler or a fresh
    /// runtime on another thread while the runtime that created the driver
    /// is blocked or shutting down. It must complete there too (for a
    /// networked backend: use a connection of its own, not a pooled one
    /// driven by the original runtime).
    fn deregister(
        &self,
        name: &InstanceName,
        url: &str,
    ) -> impl Future<Output = Result<bool, DriverError>> + Send;

    /// Removes expired entries, then compares the registry with `known`:
    /// [`Fetched::Unchanged`] if it still stands there, else the whole
    /// registry, or the changes since `known` if the driver keeps a record
    /// of them ([`Fetched::Changes`]). With `known` = `None`, always the
    /// whole registry. For a networked backend, one round trip when nothing
    /// changed.
    fn fetch(
        &self,
        known: Option<Version>,
    ) -> impl Future<Output = Result<Fetched, DriverError>> + Send;

    /// Removes expired entries, then returns the whole registry.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, DriverError>> + Send {
        async move {
            match self.fetch(None).await? {
                Fetched::Changed(s) => Ok(s),
                Fetched::Unchanged { .. } | Fetched::Changes { .. } => Err(DriverError::Protocol {
                    backend: self.backend(),
                    message: "a fetch with no known version did not answer with the registry"
                        .into(),
                }),
            }
        }
    }

    /// Subscribes to changes and delivers them to `sink`, starting with
    /// [`Event::Subscribed`], until the subscription is lost (for Redis:
    /// the connection dropped). Then it returns: `Err` if the backend is
    /// unreachable, `Ok` if the stream just ended. The caller subscribes
    /// again, and fetches to cover the gap.
    fn watch(&self, sink: EventSink) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Time left on every live lease, by field; entries without a lease
    /// are absent. For status pages: a separate read, so that refreshes
    /// need not carry every lease.
    fn leases(&self) -> impl Future<Output = Result<Vec<(String, Duration)>, DriverError>> + Send;

    /// Removes the entries that map to `url` **and have no live lease**
    /// (expired, or none at all); returns how many. Entries with a live
    /// lease belong to a healthy instance and stay.
    fn remove_stale(&self, url: &str) -> impl Future<Output = Result<usize, DriverError>> + Send;

    /// Checks what only this driver can check about its backend (its
    /// version and features, how its keys are stored, its clock) and
    /// reports each as a [`Finding`]; for tools such as `gosd doctor`,
    /// not for the request path. Whatever the registry holds (entries,
    /// leases) a tool checks through the other methods. The default has
    /// nothing to add.
    ///
    /// `Err` only when the backend could not be asked at all.
    fn diagnose(&self) -> impl Future<Output = Result<Vec<Finding>, DriverError>> + Send {
        async { Ok(Vec::new()) }
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceName;

    #[test]
    fn name_round_trips_and_rejects_ambiguous_parts() {
        let n = InstanceName::new("a-b", "1.2").unwrap();
        assert_eq!(n.as_str(), "a-b-1.2");
        assert_eq!(InstanceName::parse(n.as_str()), Some(n));
        assert!(InstanceName::new("svc", "1-2").is_none());
        assert!(InstanceName::new("", "1").is_none());
        assert!(InstanceName::parse("-1").is_none());
        assert!(InstanceName::parse("svc-").is_none());
        assert!(InstanceName::parse("").is_none());
    }
}
