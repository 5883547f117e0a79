//! The registry side: the entries the registrar holds, written (with
//! their metadata and status), renewed every heartbeat and removed
//! through gosd's [`Driver`](gosd::Driver) contract.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gosd::driver::Renewal;
use gosd::{DriverError, DynDriver};

use crate::target::Target;

/// The registry entries of the containers that serve now, by short
/// container id, and the driver that holds them.
pub struct Leases {
    driver: Arc<dyn DynDriver>,
    ttl: Duration,
    held: Mutex<HashMap<String, Target>>,
    /// Taken while one entry is read from `held` and written: a heartbeat
    /// renewing what it read before an event changed the entry's status
    /// would write the old status back.
    writing: tokio::sync::Mutex<()>,
    /// Whether the last registry call failed: logs state changes only.
    registry_down: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leases {
    pub fn new(driver: Arc<dyn DynDriver>, ttl: Duration) -> Self {
        Self {
            driver,
            ttl,
            held: Mutex::default(),
            writing: tokio::sync::Mutex::default(),
            registry_down: AtomicBool::new(false),
        }
    }

    pub fn driver(&self) -> &dyn DynDriver {
        &*self.driver
    }

    /// Holds `target` for container `id` and writes it. If the registry
    /// cannot be reached, the next heartbeat writes it.
    pub async fn hold(&self, id: &str, target: Target) {
        let _writing = self.writing.lock().await;
        let before = lock(&self.held).insert(id.to_owned(), target.clone());
        match before {
            // Held already: the heartbeat keeps it.
            Some(old) if old == target => {}
            // Its status (health) changed: the renewal writes it and
            // pushes the change.
            Some(old) if old.name == target.name && old.url == target.url => {
                self.renew(&target, "status changed").await;
            }
            Some(old) => {
                self.remove(&old, "its URL changed").await;
                self.ensure(&target).await;
            }
            None => self.ensure(&target).await,
        }
    }

    /// Stops holding container `id`'s entry and removes it at once.
    pub async fn release(&self, id: &str, why: &str) {
        let _writing = self.writing.lock().await;
        let held = lock(&self.held).remove(id);
        if let Some(target) = held {
            self.remove(&target, why).await;
        }
    }

    /// Replaces what is held by `wanted` (a reconciliation): removes what
    /// is no longer wanted, writes what is.
    pub async fn replace_all(&self, wanted: HashMap<String, Target>) {
        let _writing = self.writing.lock().await;
        let before = std::mem::replace(&mut *lock(&self.held), wanted.clone());
        for (id, old) in before {
            // Same name and URL: the entry stays, `ensure` writes its status.
            let kept = wanted
                .get(&id)
                .is_some_and(|t| t.name == old.name && t.url == old.url);
            if !kept {
                self.remove(&old, "its container no longer serves").await;
            }
        }
        for target in wanted.values() {
            self.ensure(target).await;
        }
    }

    /// Makes the registry hold `target`: registers it, or renews the entry
    /// a previous run left (writing its status and metadata), or replaces
    /// an entry of the same name with another URL (the engine says where
    /// the container is now).
    async fn ensure(&self, target: &Target) {
        let (name, url) = (&target.name, target.url.as_str());
        let registered = match self
            .driver
            .register_with(name, url, &target.meta, self.ttl)
            .await
        {
            Ok(r) => self.registry_ok(r),
            Err(e) => return self.registry_failed(&e),
        };
        if registered {
            registered_log(target, "registered");
            return;
        }
        self.renew(target, "registered (its entry was there; lease renewed)")
            .await;
    }

    /// Renews `target`'s entry with its status and metadata (written, and
    /// pushed, when they differ from the stored ones), then logs `what`;
    /// writes it again if it is gone or taken.
    async fn renew(&self, target: &Target, what: &str) {
        let (name, url) = (&target.name, target.url.as_str());
        match self
            .driver
            .renew_with(name, url, &target.meta, self.ttl)
            .await
        {
            Ok(Renewal::Renewed | Renewal::Restored) => {
                self.registry_ok(());
                registered_log(target, what);
            }
            // Deregistered meanwhile: write it again.
            Ok(Renewal::Gone) => self.write_again(target).await,
            Ok(Renewal::Conflict) => self.replace_stale(target).await,
            Err(e) => self.registry_failed(&e),
        }
    }

    /// The name holds another URL (the container moved, or an earlier run
    /// saw other settings): that entry is stale.
    async fn replace_stale(&self, target: &Target) {
        let snapshot = match self.driver.snapshot().await {
            Ok(s) => s,
            Err(e) => return self.registry_failed(&e),
        };
        let stale = snapshot
            .entries
            .into_iter()
            .find(|e| e.field == target.name.as_str());
        if let Some(stale) = stale {
            if let Err(e) = self.driver.deregister(&target.name, &stale.url).await {
                return self.registry_failed(&e);
            }
            tracing::info!(instance = %target.name, stale_url = %stale.url, "removed a stale entry of this name");
        }
        self.write_again(target).await;
    }

    async fn write_again(&self, target: &Target) {
        match self
            .driver
            .register_with(&target.name, &target.url, &target.meta, self.ttl)
            .await
        {
            Ok(true) => registered_log(target, "registered"),
            Ok(false) => tracing::warn!(instance = %target.name, url = %target.url,
                "another writer keeps taking this name; the next heartbeat tries again"),
            Err(e) => self.registry_failed(&e),
        }
    }

    /// Removes `target`'s entry. If the registry cannot be reached, its
    /// lease runs out instead: nothing renews it any more.
    pub async fn remove(&self, target: &Target, why: &str) {
        match self.driver.deregister(&target.name, &target.url).await {
            Ok(removed) => {
                self.registry_ok(());
                if removed {
                    tracing::info!(instance = %target.name, url = %target.url, container = %target.container, why, "deregistered");
                }
            }
            Err(e) => {
                tracing::warn!(instance = %target.name, error = %e, "could not deregister; the lease will expire");
                self.registry_failed(&e);
            }
        }
    }

    /// Renews every held lease once, with its status and metadata; stops
    /// at the first registry failure (the others would fail alike).
    pub async fn renew_all(&self) {
        let ids: Vec<String> = lock(&self.held).keys().cloned().collect();
        for id in ids {
            // One entry at a time, as held now: an event may change it
            // between two renewals.
            let _writing = self.writing.lock().await;
            let Some(target) = lock(&self.held).get(&id).cloned() else {
                continue;
            };
            let renewal = self
                .driver
                .renew_with(&target.name, &target.url, &target.meta, self.ttl)
                .await;
            match renewal {
                Ok(Renewal::Renewed) => self.registry_ok(()),
                Ok(Renewal::Restored) => {
                    self.registry_ok(());
                    tracing::info!(instance = %target.name, "the registry had lost this entry; written again");
                }
                Ok(Renewal::Gone | Renewal::Conflict) => {
                    self.registry_ok(());
                    tracing::info!(instance = %target.name, "the entry was removed or taken by another writer; writing it again");
                    self.ensure(&target).await;
                }
                Err(e) => return self.registry_failed(&e),
            }
        }
    }

    fn registry_ok<T>(&self, value: T) -> T {
        if self.registry_down.swap(false, Ordering::Relaxed) {
            tracing::info!(registry = %self.driver.backend(), "registry restored");
        }
        value
    }

    fn registry_failed(&self, e: &DriverError) {
        if !self.registry_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(registry = %self.driver.backend(), error = %e, "registry lost; retrying every heartbeat, leases expire if it stays away");
        } else {
            tracing::debug!(error = %e, "registry still unreachable");
        }
    }
}

/// Logs that `target`'s entry is written, with its status and metadata.
fn registered_log(target: &Target, what: &str) {
    let status = target.meta.status;
    let pairs: Vec<String> = target
        .meta
        .pairs()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let metadata = pairs.join(",");
    tracing::info!(instance = %target.name, url = %target.url, %status, %metadata, container = %target.container, "{what}");
}

/// Renews every held lease each `heartbeat`, for as long as `leases` lives.
pub async fn heartbeat(leases: std::sync::Weak<Leases>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: what was just written needs no renewal
    loop {
        tick.tick().await;
        let Some(leases) = leases.upgrade() else {
            return;
        };
        leases.renew_all().await;
    }
}
