//! An in-process registry for [gosd](https://docs.rs/gosd): tests, examples
//! and the quickstart, with no external service.
//!
//! Clones of a [`MemoryDriver`] share one registry, so several clients in one
//! process discover each other exactly as separate processes would through
//! Redis: unique names, leases that expire, a revision that moves on every
//! change. Two extras make it a test double worth having:
//! [`MemoryDriver::wipe`] loses every entry as a restarted backend would, and
//! [`MemoryDriver::set_reachable`] makes every call fail as if the backend
//! were down.
//!
//! ```
//! use gosd_driver::{Driver, InstanceName};
//! use gosd_memory::MemoryDriver;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gosd_driver::DriverError> {
//! let registry = MemoryDriver::new();
//! let name = InstanceName::new("provider", "1").unwrap();
//! assert!(registry.register(&name, "http://localhost:3333", Duration::from_secs(10)).await?);
//! let seen_elsewhere = registry.clone().snapshot().await?;
//! assert_eq!(seen_elsewhere.entries[0].url, "http://localhost:3333");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gosd_driver::{Driver, DriverError, Entry, InstanceName, Renewal, Snapshot};

/// An in-process registry; clones share it. See the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct MemoryDriver {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    unreachable: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<String, Stored>,
    /// Deregistered names, until their lease would have run out.
    gone: BTreeMap<String, Instant>,
    revision: u64,
}

#[derive(Debug)]
struct Stored {
    url: String,
    /// `None`: written raw, never reaped.
    expires: Option<Instant>,
}

impl State {
    /// Writes a leased entry: a change, so the revision moves.
    fn put_leased(&mut self, name: &InstanceName, url: &str, expires: Option<Instant>) {
        let stored = Stored {
            url: url.to_owned(),
            expires,
        };
        self.entries.insert(name.as_str().to_owned(), stored);
        self.revision += 1;
    }

    /// Drops expired entries, bumping the revision if any went.
    fn reap(&mut self, now: Instant) {
        self.gone.retain(|_, until| *until > now);
        let before = self.entries.len();
        self.entries
            .retain(|_, s| s.expires.is_none_or(|t| t > now));
        if self.entries.len() != before {
            self.revision += 1;
        }
    }
}

impl MemoryDriver {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses every entry, as a backend restarted without persistence would.
    /// The revision survives, as a fresh counter could not be told from it
    /// otherwise.
    pub fn wipe(&self) {
        let mut s = self.lock();
        s.entries.clear();
        s.gone.clear();
        s.revision += 1;
    }

    /// Writes `field → value` with no lease, as Go gosd or a person would.
    pub fn write_raw(&self, field: &str, value: &str) {
        self.lock().entries.insert(
            field.to_owned(),
            Stored {
                url: value.to_owned(),
                expires: None,
            },
        );
    }

    /// While `false`, every driver call fails with
    /// [`DriverError::Unavailable`], as if the backend were down.
    pub fn set_reachable(&self, reachable: bool) {
        self.shared.unreachable.store(!reachable, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated
        // in a way that matters more than losing the registry would.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state, reaped, or the error a down backend gives.
    fn live(&self) -> Result<(MutexGuard<'_, State>, Instant), DriverError> {
        if self.shared.unreachable.load(Ordering::SeqCst) {
            return Err(DriverError::Unavailable {
                backend: Driver::backend(self),
                source: "the memory registry was set unreachable".into(),
            });
        }
        let now = Instant::now();
        let mut s = self.lock();
        s.reap(now);
        Ok((s, now))
    }
}

/// `now + ttl`, with absurd TTLs cut to a century so the sum cannot overflow.
fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(ttl.min(CENTURY))
}

impl Driver for MemoryDriver {
    fn backend(&self) -> String {
        "the in-process memory registry".to_owned()
    }

    async fn register(
        &self,
        name: &InstanceName,
        url: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let (mut s, now) = self.live()?;
        if s.entries.contains_key(name.as_str()) {
            return Ok(false);
        }
        s.put_leased(name, url, expiry(now, ttl));
        Ok(true)
    }

    async fn renew(
        &self,
        name: &InstanceName,
        url: &str,
        ttl: Duration,
    ) -> Result<Renewal, DriverError> {
        let (mut s, now) = self.live()?;
        let deregistered = s.gone.contains_key(name.as_str());
        match s.entries.get_mut(name.as_str()) {
            Some(stored) if stored.url == url => {
                stored.expires = expiry(now, ttl);
                Ok(Renewal::Renewed)
            }
            Some(_) => Ok(Renewal::Conflict),
            None if deregistered => Ok(Renewal::Gone),
            None => {
                s.put_leased(name, url, expiry(now, ttl));
                Ok(Renewal::Restored)
            }
        }
    }

    async fn deregister(&self, name: &InstanceName, url: &str) -> Result<bool, DriverError> {
        let (mut s, _) = self.live()?;
        if s.entries.get(name.as_str()).is_some_and(|e| e.url == url) {
            if let Some(Stored {
                expires: Some(until),
                ..
            }) = s.entries.remove(name.as_str())
            {
                s.gone.insert(name.as_str().to_owned(), until);
            }
            s.revision += 1;
            return Ok(true);
        }
        Ok(false)
    }

    async fn snapshot(&self) -> Result<Snapshot, DriverError> {
        let (s, now) = self.live()?;
        let entries = s
            .entries
            .iter()
            .map(|(field, stored)| Entry {
                field: field.clone(),
                url: stored.url.clone(),
                lease: stored.expires.map(|t| t.saturating_duration_since(now)),
            })
            .collect();
        Ok(Snapshot {
            entries,
            revision: s.revision,
        })
    }

    async fn remove_stale(&self, url: &str) -> Result<usize, DriverError> {
        // `live` already reaped the expired ones; what is left with no lease
        // is stale by definition.
        let (mut s, _) = self.live()?;
        let before = s.entries.len();
        s.entries
            .retain(|_, e| !(e.url == url && e.expires.is_none()));
        let removed = before - s.entries.len();
        if removed > 0 {
            s.revision += 1;
        }
        Ok(removed)
    }
}
