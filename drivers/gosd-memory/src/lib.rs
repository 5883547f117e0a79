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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gosd_driver::{
    Driver, DriverError, Entry, Event, EventSink, Fetched, InstanceName, Meta, Renewal, Snapshot,
    Version,
};

/// An in-process registry; clones share it. See the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct MemoryDriver {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    reachable: tokio::sync::watch::Sender<bool>,
    watchers: Mutex<Vec<(u64, Sink)>>,
    next_watcher: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                generation: 1,
                ..State::default()
            }),
            reachable: tokio::sync::watch::Sender::new(true),
            watchers: Mutex::default(),
            next_watcher: AtomicU64::new(0),
        }
    }
}

struct Sink(EventSink);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<String, Stored>,
    /// Deregistered names, until their lease would have run out.
    gone: BTreeMap<String, Instant>,
    revision: u64,
    generation: u64,
    /// Stall detection, as the Redis driver's `{gosd}:clock`.
    clock: Option<Clock>,
}

/// When the registry last served, and the shortest heartbeat seen lately.
#[derive(Debug, Clone, Copy)]
struct Clock {
    last: Instant,
    beat: Duration,
    beat_seen: Instant,
}

#[derive(Debug)]
struct Stored {
    url: String,
    meta: Meta,
    /// `None`: written raw, never reaped.
    expires: Option<Instant>,
}

/// Locks a mutex whose data stays usable even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// The Redis driver's stall rule: after a gap between calls longer
    /// than the shortest heartbeat seen lately (the registry was not
    /// serving: the process was stopped, or the registry held), leases
    /// that still had more than a heartbeat to run when the gap began, and
    /// that would run out within one from now, run out one heartbeat from
    /// now instead, and likewise for tombstones. So the renewals held up
    /// behind the stall land before their leases are reaped; a crashed
    /// instance stays at most one heartbeat longer, once. `renewing` is the
    /// name and TTL of a renewal, whose interval since the last one (a
    /// quarter of the TTL at the least) is a heartbeat seen.
    fn excuse_stall(&mut self, now: Instant, renewing: Option<(&str, Duration)>) {
        let observed = renewing.and_then(|(name, ttl)| {
            let lease = self.entries.get(name)?.expires?;
            let renewed = lease.checked_sub(ttl)?;
            // A quarter of the TTL at the least, as in the Redis scripts:
            // renewals a moment apart (a retry, or those a stall held up)
            // are not a heartbeat.
            Some(now.saturating_duration_since(renewed))
                .filter(|d| !d.is_zero())
                .map(|d| d.max(ttl / 4))
        });
        let stalled = self
            .clock
            .filter(|c| now.saturating_duration_since(c.last) > c.beat);
        if let Some(c) = stalled {
            let (from, until) = (c.last + c.beat, now + c.beat);
            let starved = |t: &mut Instant| {
                if *t > from && *t < until {
                    *t = until;
                }
            };
            for stored in self.entries.values_mut() {
                if let Some(t) = &mut stored.expires {
                    starved(t);
                }
            }
            self.gone.values_mut().for_each(starved);
        }
        let mut clock = self.clock;
        if let Some(seen) = observed {
            let replace = clock.is_none_or(|c| {
                seen <= c.beat
                    || (stalled.is_none()
                        && now.saturating_duration_since(c.beat_seen) > c.beat * 3)
            });
            if replace {
                clock = Some(Clock {
                    last: now,
                    beat: seen,
                    beat_seen: now,
                });
            }
        }
        if let Some(c) = &mut clock {
            c.last = now;
        }
        self.clock = clock;
    }

    fn version(&self) -> Version {
        Version {
            generation: self.generation,
            revision: self.revision,
            entries: self.entries.len() as u64,
        }
    }

    /// Drops expired entries, each as a change of its own (as a
    /// deregistration is), and returns their events.
    fn reap(&mut self, now: Instant) -> Vec<Event> {
        self.gone.retain(|_, until| *until > now);
        let dead: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, s)| s.expires.is_some_and(|t| t <= now))
            .map(|(field, _)| field.clone())
            .collect();
        dead.into_iter()
            .map(|field| {
                self.entries.remove(&field);
                self.revision += 1;
                let version = self.version();
                Event::Removed {
                    version,
                    since: version.revision - 1,
                    field,
                }
            })
            .collect()
    }

    /// Writes a leased entry: a change, so the revision moves.
    fn put_leased(
        &mut self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        now: Instant,
        ttl: Duration,
    ) -> Event {
        let stored = Stored {
            url: url.to_owned(),
            meta: meta.clone(),
            expires: expiry(now, ttl),
        };
        self.entries.insert(name.as_str().to_owned(), stored);
        self.revision += 1;
        Event::Put {
            version: self.version(),
            since: self.revision - 1,
            entry: Entry {
                field: name.as_str().to_owned(),
                url: url.to_owned(),
                meta: meta.clone(),
            },
            lease: Some(ttl),
        }
    }
}

/// `now + ttl`, with absurd TTLs cut to a century so the sum cannot overflow.
fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(ttl.min(CENTURY))
}

/// The state, with expired entries reaped, and the events to send before
/// releasing it (sent under the lock, so they leave in revision order).
struct Live<'a> {
    driver: &'a MemoryDriver,
    state: MutexGuard<'a, State>,
    now: Instant,
    events: Vec<Event>,
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        if !self.events.is_empty() {
            for (_, Sink(sink)) in lock(&self.driver.shared.watchers).iter() {
                for e in &self.events {
                    sink(e.clone());
                }
            }
        }
    }
}

impl MemoryDriver {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses every entry, as a backend restarted without persistence
    /// would: a new generation begins. The revision survives, so the two
    /// cannot be confused.
    pub fn wipe(&self) {
        let mut s = lock(&self.shared.state);
        s.entries.clear();
        s.gone.clear();
        s.clock = None;
        s.revision += 1;
        s.generation += 1;
    }

    /// Writes `field → value` with no lease, as Go gosd or a person would
    /// (no revision change, no event).
    pub fn write_raw(&self, field: &str, value: &str) {
        lock(&self.shared.state).entries.insert(
            field.to_owned(),
            Stored {
                url: value.to_owned(),
                meta: Meta::default(),
                expires: None,
            },
        );
    }

    /// While `false`, every driver call fails with
    /// [`DriverError::Unavailable`] and every watch ends, as if the backend
    /// were down.
    pub fn set_reachable(&self, reachable: bool) {
        self.shared.reachable.send_replace(reachable);
    }

    fn unreachable(&self) -> DriverError {
        DriverError::Unavailable {
            backend: Driver::backend(self),
            source: "the memory registry was set unreachable".into(),
        }
    }

    /// Holds the registry for `d`, as a stopped backend would: every call
    /// waits until it is over, and then finds the clock moved on. Blocks
    /// the calling thread.
    pub fn stall(&self, d: Duration) {
        let _held = lock(&self.shared.state);
        std::thread::sleep(d);
    }

    fn live(&self) -> Result<Live<'_>, DriverError> {
        self.live_renewing(None)
    }

    /// [`Self::live`] for a renewal of `name` to `ttl`.
    fn live_renewing(&self, renewing: Option<(&str, Duration)>) -> Result<Live<'_>, DriverError> {
        if !*self.shared.reachable.borrow() {
            return Err(self.unreachable());
        }
        let mut state = lock(&self.shared.state);
        // After the lock: a call that waited out a stall reads the time
        // after it, as a script queued behind a stopped Redis does.
        let now = Instant::now();
        state.excuse_stall(now, renewing);
        let events = state.reap(now);
        Ok(Live {
            driver: self,
            state,
            now,
            events,
        })
    }
}

impl Driver for MemoryDriver {
    fn backend(&self) -> String {
        "the in-process memory registry".to_owned()
    }

    async fn register_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let mut l = self.live()?;
        if l.state.entries.contains_key(name.as_str()) {
            return Ok(false);
        }
        let e = l.state.put_leased(name, url, meta, l.now, ttl);
        l.events.push(e);
        Ok(true)
    }

    async fn renew_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> Result<Renewal, DriverError> {
        let mut l = self.live_renewing(Some((name.as_str(), ttl)))?;
        let now = l.now;
        let deregistered = l.state.gone.contains_key(name.as_str());
        match l.state.entries.get_mut(name.as_str()) {
            Some(stored) if stored.url == url && stored.meta == *meta => {
                stored.expires = expiry(now, ttl);
                Ok(Renewal::Renewed)
            }
            // A status or metadata change: a change like a registration.
            Some(stored) if stored.url == url => {
                let e = l.state.put_leased(name, url, meta, now, ttl);
                l.events.push(e);
                Ok(Renewal::Renewed)
            }
            Some(_) => Ok(Renewal::Conflict),
            None if deregistered => Ok(Renewal::Gone),
            None => {
                let e = l.state.put_leased(name, url, meta, now, ttl);
                l.events.push(e);
                Ok(Renewal::Restored)
            }
        }
    }

    async fn deregister(&self, name: &InstanceName, url: &str) -> Result<bool, DriverError> {
        let mut l = self.live()?;
        if l.state
            .entries
            .get(name.as_str())
            .is_none_or(|e| e.url != url)
        {
            return Ok(false);
        }
        if let Some(Stored {
            expires: Some(until),
            ..
        }) = l.state.entries.remove(name.as_str())
        {
            l.state.gone.insert(name.as_str().to_owned(), until);
        }
        l.state.revision += 1;
        let version = l.state.version();
        l.events.push(Event::Removed {
            version,
            since: version.revision - 1,
            field: name.as_str().to_owned(),
        });
        Ok(true)
    }

    async fn fetch(&self, known: Option<Version>) -> Result<Fetched, DriverError> {
        let l = self.live()?;
        let now = l.now;
        let next_expiry = l
            .state
            .entries
            .values()
            .filter_map(|s| s.expires)
            .min()
            .map(|t| t.saturating_duration_since(now));
        if known == Some(l.state.version()) {
            return Ok(Fetched::Unchanged { next_expiry });
        }
        let entries = l
            .state
            .entries
            .iter()
            .map(|(field, stored)| Entry {
                field: field.clone(),
                url: stored.url.clone(),
                meta: stored.meta.clone(),
            })
            .collect();
        Ok(Fetched::Changed(Snapshot {
            entries,
            version: l.state.version(),
            next_expiry,
        }))
    }

    async fn watch(&self, sink: EventSink) -> Result<(), DriverError> {
        let mut reachable = self.shared.reachable.subscribe();
        if !*reachable.borrow_and_update() {
            return Err(self.unreachable());
        }
        let id = self.shared.next_watcher.fetch_add(1, Ordering::Relaxed);
        {
            // Under the watchers lock, so no change is delivered before it.
            let mut watchers = lock(&self.shared.watchers);
            sink(Event::Subscribed);
            watchers.push((id, Sink(sink)));
        }
        struct Unsubscribe<'a>(&'a Shared, u64);
        impl Drop for Unsubscribe<'_> {
            fn drop(&mut self) {
                lock(&self.0.watchers).retain(|(id, _)| *id != self.1);
            }
        }
        let _unsubscribe = Unsubscribe(&self.shared, id);
        let _ = reachable.wait_for(|up| !*up).await;
        Err(self.unreachable())
    }

    async fn leases(&self) -> Result<Vec<(String, Duration)>, DriverError> {
        let l = self.live()?;
        let now = l.now;
        Ok(l.state
            .entries
            .iter()
            .filter_map(|(field, s)| {
                Some((field.clone(), s.expires?.saturating_duration_since(now)))
            })
            .collect())
    }

    async fn remove_stale(&self, url: &str) -> Result<usize, DriverError> {
        // `live` already reaped the expired ones; what is left with no lease
        // is stale by definition.
        let mut l = self.live()?;
        let before = l.state.entries.len();
        l.state
            .entries
            .retain(|_, e| !(e.url == url && e.expires.is_none()));
        let removed = before - l.state.entries.len();
        if removed > 0 {
            l.state.revision += 1;
            let version = l.state.version();
            l.events.push(Event::Changed { version });
        }
        Ok(removed)
    }
}
