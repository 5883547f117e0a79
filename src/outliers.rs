//! Passive outlier detection, shared by every caller of one client: what
//! requests to each instance did ([`Client::report`](crate::Client::report)),
//! and which instances are taken out of the picks for a while after
//! failing repeatedly.
//!
//! Picks never look here. An ejection is rare, so it rebuilds the pick
//! lists of the instance's services without it (and again with it once
//! the cooldown is over): the pick path stays one lookup in an immutable
//! table, with no lock and no allocation. Only failures and the successes
//! that follow them take the lock below; a success while nothing is failing
//! is one atomic load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::route::Route;

/// What one request to an instance did, as told to
/// [`Client::report`](crate::Client::report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The instance answered (whatever the status: an answer shows it is
    /// up).
    Success,
    /// The connection was refused or reset before an answer.
    ConnectFailure,
    /// No answer in time.
    Timeout,
}

/// What the detector decided about a failing instance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not (yet) enough failures, or already ejected.
    Nothing,
    /// Take it out of the picks now.
    Eject,
    /// It failed enough, but it is the last pickable instance of one of its
    /// services: it stays (fail open). Said once per failing streak, to be
    /// logged once.
    KeepLast,
}

#[derive(Default)]
struct Failing {
    consecutive: u32,
    /// When it was taken out of the picks, while it is out.
    ejected_at: Option<Instant>,
    kept_logged: bool,
}

/// Consecutive failures per instance URL.
pub(crate) struct Outliers {
    eject_after: u32,
    eject_for: Duration,
    /// Whether `failing` may have entries: a success with nothing failing
    /// takes no lock.
    any: AtomicBool,
    failing: Mutex<HashMap<Route, Failing>>,
}

/// More failing URLs than this, and those no longer in the table are
/// forgotten: a URL that failed once and left must not stay for the
/// client's life.
const PRUNE_ABOVE: usize = 256;

impl Outliers {
    pub(crate) fn new(eject_after: u32, eject_for: Duration) -> Self {
        Self {
            eject_after: eject_after.max(1),
            eject_for,
            any: AtomicBool::new(false),
            failing: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request to `route` got an answer: its failing streak ends, unless
    /// it is ejected (an answer to a request sent before the ejection does
    /// not bring it back before its cooldown).
    pub(crate) fn success(&self, route: &Route) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut failing = self.lock();
        if failing.get(route).is_some_and(|f| f.ejected_at.is_none()) {
            failing.remove(route);
        }
        self.any.store(!failing.is_empty(), Ordering::Release);
    }

    /// A request to `route` failed. `can_eject` says whether its services
    /// keep another pickable instance without it; `in_table` whether the
    /// table still has it (used to forget URLs that left).
    pub(crate) fn failure(
        &self,
        route: &Route,
        can_eject: bool,
        in_table: impl Fn(&Route) -> bool,
    ) -> Verdict {
        let mut failing = self.lock();
        if failing.len() > PRUNE_ABOVE {
            failing.retain(|r, f| f.ejected_at.is_some() || in_table(r));
        }
        let f = failing.entry(route.clone()).or_default();
        self.any.store(true, Ordering::Release);
        if f.ejected_at.is_some() {
            return Verdict::Nothing;
        }
        f.consecutive = f.consecutive.saturating_add(1);
        if f.consecutive < self.eject_after {
            return Verdict::Nothing;
        }
        if can_eject {
            f.ejected_at = Some(Instant::now());
            f.kept_logged = false;
            Verdict::Eject
        } else if !f.kept_logged {
            f.kept_logged = true;
            Verdict::KeepLast
        } else {
            Verdict::Nothing
        }
    }

    /// How much longer `route` is out of the picks, if it is ejected.
    pub(crate) fn ejected_for(&self, route: &Route) -> Option<Duration> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let at = self.lock().get(route)?.ejected_at?;
        Some(self.eject_for.saturating_sub(at.elapsed()))
    }

    /// `route`'s cooldown is over: it starts afresh.
    pub(crate) fn restored(&self, route: &Route) {
        let mut failing = self.lock();
        failing.remove(route);
        self.any.store(!failing.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(o: &Outliers, r: &Route, can_eject: bool) -> Verdict {
        o.failure(r, can_eject, |_| true)
    }

    #[test]
    fn ejects_after_n_failures_in_a_row_and_a_success_resets_the_count() {
        let o = Outliers::new(3, Duration::from_secs(10));
        let r = Route::new("http://a");
        assert_eq!(fail(&o, &r, true), Verdict::Nothing);
        assert_eq!(fail(&o, &r, true), Verdict::Nothing);
        o.success(&r);
        assert_eq!(fail(&o, &r, true), Verdict::Nothing);
        assert_eq!(fail(&o, &r, true), Verdict::Nothing);
        assert_eq!(fail(&o, &r, true), Verdict::Eject);
        assert_eq!(fail(&o, &r, true), Verdict::Nothing, "already out");
        o.success(&r);
        assert_eq!(
            fail(&o, &r, true),
            Verdict::Nothing,
            "a late answer keeps it out"
        );
        o.restored(&r);
        assert_eq!(fail(&o, &r, true), Verdict::Nothing, "a fresh count");
    }

    #[test]
    fn the_last_instance_stays_and_that_is_said_once() {
        let o = Outliers::new(1, Duration::from_secs(10));
        let r = Route::new("http://a");
        assert_eq!(fail(&o, &r, false), Verdict::KeepLast);
        assert_eq!(fail(&o, &r, false), Verdict::Nothing);
        assert_eq!(fail(&o, &r, true), Verdict::Eject, "another one came");
    }

    #[test]
    fn urls_that_left_the_table_are_forgotten() {
        let o = Outliers::new(100, Duration::from_secs(10));
        for n in 0..=PRUNE_ABOVE {
            fail(&o, &Route::new(&format!("http://gone{n}")), true);
        }
        o.failure(&Route::new("http://here"), true, |r| r.contains("here"));
        assert_eq!(o.lock().len(), 1);
    }
}
