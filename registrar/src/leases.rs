//! The registry side: the entries the registrar holds, written, renewed
//! every heartbeat and removed through gosd's [`Driver`](gosd::Driver)
//! contract.

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
            registry_down: AtomicBool::new(false),
        }
    }

    pub fn driver(&self) -> &dyn DynDriver {
        &*self.driver
    }

    /// The entries held now.
    pub fn held(&self) -> HashMap<String, Target> {
        lock(&self.held).clone()
    }

    /// Holds `target` for container `id` and writes it. If the registry
    /// cannot be reached, the next heartbeat writes it.
    pub async fn hold(&self, id: &str, target: Target) {
        let before = lock(&self.held).insert(id.to_owned(), target.clone());
        match before {
            // Held already: the heartbeat keeps it.
            Some(old) if old == target => return,
            Some(old) => self.remove(&old, "its URL changed").await,
            None => {}
        }
        self.ensure(&target).await;
    }

    /// Stops holding container `id`'s entry and removes it at once.
    pub async fn release(&self, id: &str, why: &str) {
        let held = lock(&self.held).remove(id);
        if let Some(target) = held {
            self.remove(&target, why).await;
        }
    }

    /// Replaces what is held by `wanted` (a reconciliation): removes what
    /// is no longer wanted, writes what is.
    pub async fn replace_all(&self, wanted: HashMap<String, Target>) {
        let before = std::mem::replace(&mut *lock(&self.held), wanted.clone());
        for (id, old) in before {
            if wanted.get(&id) != Some(&old) {
                self.remove(&old, "its container no longer serves").await;
            }
        }
        for target in wanted.values() {
            self.ensure(target).await;
        }
    }

    /// Makes the registry hold `target`: registers it, or renews the entry
    /// a previous run left, or replaces an entry of the same name with
    /// another URL (the engine says where the container is now).
    pub async fn ensure(&self, target: &Target) {
        let (name, url) = (&target.name, target.url.as_str());
        let registered = match self.driver.register(name, url, self.ttl).await {
            Ok(r) => self.registry_ok(r),
            Err(e) => return self.registry_failed(&e),
        };
        if registered {
            tracing::info!(instance = %name, url, container = %target.container, "registered");
            return;
        }
        match self.driver.renew(name, url, self.ttl).await {
            Ok(Renewal::Renewed | Renewal::Restored) => {
                tracing::info!(instance = %name, url, container = %target.container, "registered (its entry was there; lease renewed)");
            }
            // Deregistered between the two calls: write it again.
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
            .register(&target.name, &target.url, self.ttl)
            .await
        {
            Ok(true) => {
                tracing::info!(instance = %target.name, url = %target.url, container = %target.container, "registered")
            }
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

    /// Renews every held lease once; stops at the first registry failure
    /// (the others would fail alike).
    pub async fn renew_all(&self) {
        let held = self.held();
        for (id, target) in held {
            let renewal = self.driver.renew(&target.name, &target.url, self.ttl).await;
            match renewal {
                Ok(Renewal::Renewed) => self.registry_ok(()),
                Ok(Renewal::Restored) => {
                    self.registry_ok(());
                    tracing::info!(instance = %target.name, "the registry had lost this entry; written again");
                }
                Ok(Renewal::Gone | Renewal::Conflict) => {
                    self.registry_ok(());
                    // Still ours to hold? (An event may have released it meanwhile.)
                    if lock(&self.held).get(&id) == Some(&target) {
                        tracing::info!(instance = %target.name, "the entry was removed or taken by another writer; writing it again");
                        self.ensure(&target).await;
                    }
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
