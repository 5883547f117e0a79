//! Passive health checks: what each instance's requests did, and which
//! instances are ejected for a while after failing repeatedly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Consecutive failures that eject an instance.
pub(crate) const EJECT_AFTER: u64 = 3;
/// How long an ejected instance gets no traffic from this router, by default.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(10);

/// Counters of one instance, by URL.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    consecutive_failures: AtomicU64,
    ejected_until: Mutex<Option<Instant>>,
}

impl Stats {
    pub(crate) fn ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| until > now)
    }

    pub(crate) fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.ejected_until.lock().unwrap_or_else(|p| p.into_inner()))?;
        (until > now).then(|| until - now)
    }
}

/// Every instance's counters. Read-mostly: a request takes the read lock
/// only, except the first one to an instance.
pub(crate) struct Health {
    by_url: RwLock<HashMap<String, Arc<Stats>>>,
    cooldown: Duration,
}

impl Health {
    pub(crate) fn new(cooldown: Duration) -> Self {
        Self {
            by_url: RwLock::default(),
            cooldown,
        }
    }

    pub(crate) fn of(&self, url: &str) -> Arc<Stats> {
        if let Some(s) = self
            .by_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return s.clone();
        }
        let mut all = self.by_url.write().unwrap_or_else(|p| p.into_inner());
        all.entry(url.to_owned()).or_default().clone()
    }

    pub(crate) fn succeeded(&self, url: &str) {
        let s = self.of(url);
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; ejects the instance after [`EJECT_AFTER`] in a row.
    pub(crate) fn failed(&self, url: &str) {
        let s = self.of(url);
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.errors.fetch_add(1, Ordering::Relaxed);
        let failures = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= EJECT_AFTER {
            s.consecutive_failures.store(0, Ordering::Relaxed);
            *s.ejected_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + self.cooldown);
            tracing::warn!(url, failures, cooldown = ?self.cooldown, "instance ejected after repeated failures");
        }
    }

    pub(crate) fn is_ejected(&self, url: &str, now: Instant) -> bool {
        self.by_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .is_some_and(|s| s.ejected(now))
    }
}
