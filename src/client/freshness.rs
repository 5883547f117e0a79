//! Keeping the table fresh: refreshes (a fetch of what changed, or a whole
//! read), pushed events, the cron claim, and the two background loops that
//! drive them.

use super::telemetry::{self, Refresh};
use super::*;

impl Inner {
    pub(super) fn now_ms(&self) -> u64 {
        self.cron.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn next_cron_ms(&self) -> u64 {
        self.config
            .cron
            .as_ref()
            .and_then(|c| c.until_next())
            .map_or(u64::MAX, |d| self.now_ms() + d.as_millis() as u64)
    }

    pub(super) fn cron_due(&self) -> Option<Instant> {
        match self.cron.cron_due_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.cron.epoch + Duration::from_millis(ms)),
        }
    }

    /// True for exactly one caller per due cron tick.
    pub(super) fn claim_cron(&self) -> bool {
        let due = self.cron.cron_due_ms.load(Ordering::Acquire);
        if due == u64::MAX || self.now_ms() < due {
            return false;
        }
        let next = self.next_cron_ms();
        self.cron
            .cron_due_ms
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// One refresh attempt; logs registry loss and recovery once each.
    ///
    /// It sends the version we know, so when nothing changed it costs one
    /// command and returns no table.
    pub(super) async fn refresh_once(&self) -> Result<(), DriverError> {
        let _serial = self.fresh.refresh_lock.lock().await;
        let (known, read_whole) = {
            let sources = lock(&self.fresh.sources);
            (sources.version(), sources.read_whole_due(Instant::now()))
        };
        if read_whole {
            self.read_whole(known).await?;
        } else {
            let (fetched, received) = self.fetch(known).await?;
            // Some(version we are at): the answer was not enough.
            let read_whole_from = {
                let mut sources = lock(&self.fresh.sources);
                let (touched, read_whole_from) = match fetched {
                    Fetched::Unchanged { next_expiry } => {
                        telemetry::refreshed(Refresh::Unchanged);
                        (sources.unchanged(next_expiry, received), None)
                    }
                    Fetched::Changed(s) => {
                        telemetry::refreshed(Refresh::Whole);
                        let touched = sources.apply_snapshot(s, known, received, self.config.ttl);
                        (touched, None)
                    }
                    Fetched::Changes {
                        events,
                        version,
                        next_expiry,
                    } => match sources.apply_changes(events, version, next_expiry, received) {
                        Ok(touched) => {
                            telemetry::refreshed(Refresh::Changes);
                            (touched, None)
                        }
                        // Read whole next, and counted as that.
                        Err(touched) => (touched, Some(sources.version())),
                    },
                    // An answer this client does not know.
                    _ => (Touched::Nothing, Some(sources.version())),
                };
                self.rebuild(&mut sources, &touched);
                read_whole_from
            };
            if let Some(at) = read_whole_from {
                self.read_whole(at).await?;
            }
        }
        self.fresh.wake.notify_one();
        Ok(())
    }

    /// Reads the registry whole. `sent`: the version we are at, to tell a
    /// registry that went back from one that pushed changes overtook.
    pub(super) async fn read_whole(&self, sent: Option<Version>) -> Result<(), DriverError> {
        let (fetched, received) = self.fetch(None).await?;
        let Fetched::Changed(s) = fetched else {
            return Err(DriverError::Protocol {
                backend: self.driver.backend(),
                message: "a fetch with no known version did not answer with the registry".into(),
            });
        };
        let mut sources = lock(&self.fresh.sources);
        let touched = sources.apply_snapshot(s, sent, received, self.config.ttl);
        telemetry::refreshed(Refresh::Whole);
        self.rebuild(&mut sources, &touched);
        Ok(())
    }

    /// One fetch, with the time its answer came and the registry's health
    /// noted.
    pub(super) async fn fetch(
        &self,
        known: Option<Version>,
    ) -> Result<(Fetched, Instant), DriverError> {
        let fetched = self.driver.fetch(known).await;
        let received = Instant::now();
        match fetched {
            Ok(f) => {
                self.registry_ok();
                Ok((f, received))
            }
            Err(e) => {
                telemetry::refreshed(Refresh::Failed);
                self.registry_failed(&e);
                // A failover may be why: its history may differ from the
                // record we would be answered from.
                lock(&self.fresh.sources).read_whole_next();
                Err(e)
            }
        }
    }

    /// A pushed change: applied at once when it is the next one we expect,
    /// otherwise a fetch is queued (one, however many events ask).
    pub(super) fn on_event(self: &Arc<Self>, event: Event) {
        let subscribed = event == Event::Subscribed;
        if subscribed && self.fresh.watch_down.swap(false, Ordering::AcqRel) {
            tracing::info!("push updates restored");
        }
        let applied = {
            let mut sources = lock(&self.fresh.sources);
            let check_was = sources.next_check();
            let applied = sources.apply_event(event, Instant::now());
            if !subscribed {
                telemetry::pushed(&applied);
            }
            if let Applied::Changed(service) = &applied {
                self.rebuild(&mut sources, &Touched::service(service));
            }
            // The maintain loop sleeps until the earliest check it knows
            // of: only a sooner one (a put with a shorter lease) needs it
            // awake, not every pushed change.
            if sooner(sources.next_check(), check_was) {
                self.fresh.wake.notify_one();
            }
            applied
        };
        if applied == Applied::NeedFetch && !self.fresh.fetch_queued.swap(true, Ordering::AcqRel) {
            let inner = self.clone();
            self.runtime.spawn(async move {
                inner.fresh.fetch_queued.store(false, Ordering::Release);
                if inner.refresh_once().await.is_err() {
                    // The maintain loop retries it, with its backoff.
                    lock(&inner.fresh.sources).check_by(Instant::now());
                    inner.fresh.wake.notify_one();
                }
            });
        }
    }

    /// A refresh retried `TryRefreshAmount` times with backoff.
    pub(crate) async fn refresh(&self) -> Result<()> {
        self.retry(|| self.refresh_once()).await
    }

    /// Installs the table after `touched`; nothing, and no change
    /// notification, when nothing was.
    pub(super) fn rebuild(&self, sources: &mut Sources, touched: &Touched) {
        if *touched != Touched::Nothing {
            let old = self.fresh.table.load();
            let new = sources.build(&old, touched);
            // Before it is visible: whoever sees the table sees the gauge.
            telemetry::service_instances(&old, &new, touched);
            self.install(new);
        }
    }

    /// Swaps `table` in and tells whoever waits for changes.
    pub(super) fn install(&self, table: RouteTable) {
        self.fresh.table.store(table);
        self.fresh.changes.send_modify(|n| *n += 1);
    }

    /// Runs `op` up to `TryRefreshAmount` times while it fails transiently.
    pub(super) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DriverError>>,
    {
        let attempts = self.config.try_refresh_amount.max(1);
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_transient() => return Err(self.config.driver_error(e)),
                Err(e) if attempt >= attempts => {
                    return Err(Error::Unreachable {
                        backend: self.driver.backend(),
                        attempts,
                        source: e,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    pub(super) fn registry_failed(&self, e: &DriverError) {
        tracing::debug!(error = %e, "registry call failed");
        let was_down = self.fresh.registry_down.swap(true, Ordering::AcqRel);
        if !was_down {
            telemetry::registry_lost();
        }
        if e.is_transient() {
            if !was_down {
                tracing::warn!(error = %e, "registry lost; serving the last good route table and retrying");
            }
        } else if !self.fresh.refusal_logged.swap(true, Ordering::AcqRel) {
            // Not an outage: retrying will not fix it, a person must. Said
            // once, also when it comes mixed with dropped connections.
            tracing::error!(error = %e, "registry refuses gosd; serving the last good route table until it is fixed");
        }
    }

    pub(super) fn registry_ok(&self) {
        self.fresh.refusal_logged.store(false, Ordering::Release);
        if self.fresh.registry_down.swap(false, Ordering::AcqRel) {
            telemetry::registry_restored();
            tracing::info!(backend = %self.driver.backend(), "registry restored");
        }
    }
}

/// Whether `check` asks for a look before `was` did.
pub(super) fn sooner(check: Option<Instant>, was: Option<Instant>) -> bool {
    match (check, was) {
        (Some(check), Some(was)) => check < was,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Keeps the table fresh: at the earliest foreign lease expiry, on the cron
/// cadence, and (after a failure) with backoff. Holds only a weak handle
/// while waiting, so dropping the last `Client` ends it.
pub(super) async fn maintain(weak: Weak<Inner>) {
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    loop {
        let (wake, next) = {
            let Some(inner) = weak.upgrade() else { return };
            let expiry = lock(&inner.fresh.sources)
                .next_check()
                .map(|t| t + EXPIRY_GRACE);
            // While failing, the backoff decides, not the (past) expiry.
            let lease_or_retry = retry_at.or(expiry);
            let next = [lease_or_retry, inner.cron_due()]
                .into_iter()
                .flatten()
                .min();
            (inner.fresh.wake.clone(), next)
        };
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => continue,
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = Instant::now();
        let lease_due = retry_at
            .or(lock(&inner.fresh.sources).next_check())
            .is_some_and(|t| t <= now);
        let cron_due = inner.claim_cron();
        if !(lease_due || cron_due) {
            continue;
        }
        match inner.refresh_once().await {
            Ok(()) => {
                failures = 0;
                retry_at = None;
            }
            Err(_) => {
                failures += 1;
                retry_at = Some(Instant::now() + backoff(failures));
            }
        }
    }
}

/// Keeps a push subscription open: re-subscribes with backoff whenever it
/// ends (Redis died, the connection was killed), and fetches after each
/// subscription to cover the gap. Holds only a weak handle.
pub(super) async fn watch(weak: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let subscribed = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let result = {
            let Some(inner) = weak.upgrade() else { return };
            let driver = inner.driver.clone();
            drop(inner);
            let sink: EventSink = {
                let (weak, subscribed) = (weak.clone(), subscribed.clone());
                Arc::new(move |event| {
                    if event == Event::Subscribed {
                        subscribed.store(true, Ordering::Release);
                    }
                    if let Some(inner) = weak.upgrade() {
                        inner.on_event(event);
                    }
                })
            };
            driver.watch(sink).await
        };
        let Some(inner) = weak.upgrade() else { return };
        // Only a subscription that held for a while resets the backoff: one
        // dropped right after it was made (a proxy, an output-buffer limit)
        // must not make us reconnect ten times a second.
        if subscribed.load(Ordering::Acquire) && started.elapsed() >= STABLE_SUBSCRIPTION {
            failures = 0;
        }
        failures += 1;
        if !inner.fresh.watch_down.swap(true, Ordering::AcqRel) {
            match &result {
                Err(e) => tracing::warn!(error = %e, "push updates lost; re-subscribing"),
                Ok(()) => tracing::warn!("push updates lost (subscription ended); re-subscribing"),
            }
        }
        drop(inner);
        tokio::time::sleep(backoff(failures)).await;
    }
}
