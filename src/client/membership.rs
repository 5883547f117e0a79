//! This client's own registration: registering under a fresh name,
//! the heartbeat that renews (or restores, or renames) it, and
//! deregistration, awaited or bounded from `Drop`.

use super::{Published, health, telemetry};

impl Published {
    /// Counts a health check; `Some(unhealthy)` when the verdict changed.
    fn record(
        &mut self,
        ok: bool,
        failures_to_down: u32,
        verdict: &mut health::Verdict,
    ) -> Option<bool> {
        let changed = verdict.record(ok, failures_to_down);
        if let Some(unhealthy) = changed {
            self.unhealthy = unhealthy;
        }
        changed
    }
}
use super::*;

impl Inner {
    /// Registers under fresh names until one is free.
    pub(super) async fn register_fresh(
        &self,
        service: &str,
        url: &str,
        meta: &gosd_driver::Meta,
    ) -> Result<InstanceName> {
        for _ in 0..NAME_ATTEMPTS {
            let name = new_instance_name(service).ok_or_else(|| Error::InvalidName {
                name: service.to_owned(),
                reason: "cannot form an instance name from it".into(),
            })?;
            let ttl = self.config.ttl;
            if self
                .retry(|| self.driver.register_with(&name, url, meta, ttl))
                .await?
            {
                return Ok(name);
            }
            tracing::debug!(instance = %name, "instance name taken; trying another");
        }
        Err(Error::NamesExhausted {
            service: service.to_owned(),
            attempts: NAME_ATTEMPTS,
        })
    }

    /// Sets our status and writes it now (see [`Registration::set_status`]).
    pub(crate) async fn set_status(&self, status: gosd_driver::Status) -> Result<()> {
        let Some(own) = self.own() else {
            return Ok(());
        };
        let _one_renewal = self.membership.renewing.lock().await;
        let meta = {
            let mut published = lock(&own.meta);
            if published.by_hand.status == status {
                return Ok(());
            }
            published.by_hand.status = status;
            published.meta()
        };
        tracing::info!(instance = %own.name, %status, "status set");
        let name = own.name.get();
        self.driver
            .renew_with(&name, &own.url, &meta, self.config.ttl)
            .await
            .map_err(|e| match e.is_transient() {
                true => Error::Unreachable {
                    backend: self.driver.backend(),
                    attempts: 1,
                    source: e,
                },
                false => Error::Driver(e),
            })?;
        Ok(())
    }

    /// Takes our registration out of the client so that nothing renews it
    /// any more; whoever gets `Some` deregisters it.
    pub(super) fn take_own(&self) -> (Option<Own>, Option<JoinHandle<()>>) {
        let own = lock(&self.membership.own).take();
        let heartbeat = lock(&self.membership.heartbeat).take();
        if let Some(h) = &heartbeat {
            h.abort();
        }
        (own, heartbeat)
    }

    /// [`finish`](Self::finish) for a signal, which may land while a
    /// registration is under way: waits until that registration either
    /// failed or is recorded in `own`, so what it wrote is deregistered.
    pub(crate) async fn finish_on_signal(&self) -> Result<()> {
        let _no_registration_in_flight = self.membership.registering.lock().await;
        self.finish().await
    }

    pub(crate) async fn finish(&self) -> Result<()> {
        let (own, heartbeat) = self.take_own();
        let Some(own) = own else { return Ok(()) };
        {
            let mut sources = lock(&self.fresh.sources);
            sources.remove_url(&own.url);
            self.rebuild(&mut sources, &Touched::All);
        }
        // Everything after take_own runs in a task of its own: if the caller
        // stops awaiting (a timeout around finish()), it still completes.
        let driver = self.driver.clone();
        let task = self.runtime.spawn(async move {
            if let Some(h) = heartbeat {
                // Aborted: wait until no renewal can be in flight.
                let _ = h.await;
            }
            deregister(&*driver, &own).await
        });
        let result = task.await.unwrap_or(Ok(()));
        let drain = self.config.drain;
        if !drain.is_zero() {
            // Consumers have been told; let requests already routed here finish.
            tracing::info!(drain = %humantime::format_duration(drain), "deregistered; draining");
            tokio::time::sleep(drain).await;
        }
        result
    }

    /// Deregisters from synchronous code (`Drop`), bounded by
    /// [`DEREGISTER_TIMEOUT`]. It runs on a thread of its own with a
    /// runtime of its own, so it works inside or outside a runtime, on any
    /// flavour, and while the caller's runtime is shutting down.
    pub(crate) fn finish_blocking(&self) {
        let (Some(own), _) = self.take_own() else {
            return;
        };
        let driver = self.driver.clone();
        let worker = std::thread::Builder::new()
            .name("gosd-deregister".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => {
                        let _ = rt.block_on(deregister(&*driver, &own));
                    }
                    Err(e) => tracing::warn!(instance = %own.name, error = %e, "could not deregister: no runtime; the lease will expire"),
                }
            });
        match worker {
            Ok(w) => {
                let _ = w.join();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not deregister: no thread; the lease will expire")
            }
        }
    }
}

/// Removes `own` from the registry, within [`DEREGISTER_TIMEOUT`].
pub(super) async fn deregister(driver: &dyn DynDriver, own: &Own) -> Result<()> {
    let started = Instant::now();
    let name = own.name.get();
    match tokio::time::timeout(DEREGISTER_TIMEOUT, driver.deregister(&name, &own.url)).await {
        Ok(Ok(_)) => {
            tracing::info!(instance = %own.name, elapsed = ?started.elapsed(), "deregistered");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::warn!(instance = %own.name, error = %e, "could not deregister; the lease will expire");
            Err(e.into())
        }
        Err(_) => {
            tracing::warn!(instance = %own.name, "deregistration timed out; the lease will expire");
            Err(Error::Unreachable {
                backend: driver.backend(),
                attempts: 1,
                source: DriverError::Unavailable {
                    backend: driver.backend(),
                    source: format!("no answer within {DEREGISTER_TIMEOUT:?}").into(),
                },
            })
        }
    }
}

/// Warns once when a renewal took more than a quarter of the TTL: a few
/// such round trips in a row outlast the lease, and the instance flaps in
/// and out of every table.
fn warn_if_slow(warned: &mut bool, round_trip: std::time::Duration, ttl: std::time::Duration) {
    if !*warned && round_trip > ttl / 4 {
        *warned = true;
        tracing::warn!(
            round_trip = ?round_trip,
            ttl = ?ttl,
            "a renewal took more than a quarter of the TTL: the lease may run out on this link; raise GOSD_TTL to at least 4 round trips (or bring the registry closer)"
        );
    }
}

/// Renews our lease every heartbeat; restores the entry if the registry
/// lost it; retries sooner (with backoff) after a failure.
pub(super) async fn heartbeat(weak: Weak<Inner>) {
    let mut failures = 0u32;
    let mut slow_link_warned = false;
    let mut verdict = health::Verdict::default();
    loop {
        let delay = {
            let Some(inner) = weak.upgrade() else { return };
            let every = inner.config.heartbeat;
            if failures == 0 {
                every
            } else {
                backoff(failures).min(every)
            }
        };
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(own) = inner.own() else { return };
        let name = own.name.get();
        let url = inner.config.health_check_url().ok().flatten();
        let check = inner.membership.health_check.get();
        let timeout = health::timeout(inner.config.heartbeat, inner.config.ttl);
        if let Some(answer) = health::run(url.as_ref(), check, timeout).await {
            let failures = inner.config.health_failures;
            let changed = lock(&own.meta).record(answer.is_ok(), failures, &mut verdict);
            match (changed, answer) {
                (Some(true), Err(why)) => tracing::warn!(
                    instance = %own.name, failures, error = %why,
                    "the health check failed; marking this instance down"
                ),
                (Some(false), _) => tracing::info!(
                    instance = %own.name, "the health check passes again; marking this instance up"
                ),
                _ => {}
            }
        }
        // After the health check: its answer is no part of the round trip.
        let sent = std::time::Instant::now();
        let renewal = {
            let _one_renewal = inner.membership.renewing.lock().await;
            let meta = lock(&own.meta).meta();
            telemetry::heartbeat(
                inner
                    .driver
                    .renew_with(&name, &own.url, &meta, inner.config.ttl),
            )
            .await
        };
        // A renewal that failed (timed out) says the registry is down,
        // which is logged as such, not that the link is slow.
        if renewal.is_ok() {
            warn_if_slow(&mut slow_link_warned, sent.elapsed(), inner.config.ttl);
        }
        match renewal {
            Ok(Renewal::Renewed) => {
                failures = 0;
                inner.registry_ok();
            }
            Ok(Renewal::Restored) => {
                failures = 0;
                inner.registry_ok();
                tracing::info!(instance = %own.name, "registered again: the registry had lost this instance");
            }
            Ok(Renewal::Gone) => {
                tracing::debug!(instance = %own.name, "deregistered; heartbeat stops");
                return;
            }
            Ok(Renewal::Conflict) => {
                tracing::warn!(instance = %own.name, "another URL took this instance's name; registering under a new one");
                let meta = lock(&own.meta).meta();
                match inner.register_fresh(name.service(), &own.url, &meta).await {
                    Ok(renamed) => {
                        // Under the lock that finish() takes `own` with:
                        // either finish sees the new name, or we see it
                        // finished and remove the new name ourselves.
                        let finished = {
                            let guard = lock(&inner.membership.own);
                            match guard.as_ref() {
                                Some(o) => {
                                    o.name.set(renamed.clone());
                                    false
                                }
                                None => true,
                            }
                        };
                        if finished {
                            let orphan = Own {
                                name: CurrentName::new(renamed),
                                url: own.url,
                                meta: own.meta,
                            };
                            let _ = deregister(&*inner.driver, &orphan).await;
                            return;
                        }
                        tracing::info!(instance = %own.name, "registered under a new name");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register under a new name"),
                }
            }
            Err(e) => {
                failures += 1;
                inner.registry_failed(&e);
            }
        }
    }
}
