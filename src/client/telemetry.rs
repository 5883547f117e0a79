//! What the client records through the [`metrics`] facade: the app picks
//! the exporter (Prometheus, StatsD, …) by installing a recorder; without
//! one every call here is a no-op. One function per metric, so that the
//! names live in one place (the README lists them) and each call site is
//! one line next to what it counts. Picks record nothing.
//!
//! Metrics are per process: several clients in one process add to the
//! same counters, and the last to change a service sets its gauge.

use std::future::Future;
use std::time::Instant;

use metrics::{counter, gauge, histogram};

use crate::table::{Applied, RouteTable, Touched};

/// How a refresh ended.
#[derive(Clone, Copy)]
pub(super) enum Refresh {
    /// The registry was where the client knew it: one command.
    Unchanged,
    /// The changes since came from the registry's record and were applied.
    Changes,
    /// The registry was read whole.
    Whole,
    /// The registry could not be read.
    Failed,
}

/// `gosd_refreshes_total{outcome}`.
pub(super) fn refreshed(outcome: Refresh) {
    let outcome = match outcome {
        Refresh::Unchanged => "unchanged",
        Refresh::Changes => "changes",
        Refresh::Whole => "whole",
        Refresh::Failed => "failed",
    };
    counter!("gosd_refreshes_total", "outcome" => outcome).increment(1);
}

/// `gosd_pushed_events_total{result}`: `applied` to the table at once, or
/// `dropped`: already known, or not one the table can take in alone (not
/// the next change, or several at once), so a fetch covers it.
pub(super) fn pushed(applied: &Applied) {
    let result = match applied {
        Applied::Changed(_) => "applied",
        _ => "dropped",
    };
    counter!("gosd_pushed_events_total", "result" => result).increment(1);
}

/// `gosd_registry_transitions_total{to="lost"}`: a call to the registry
/// failed after calls had worked.
pub(super) fn registry_lost() {
    counter!("gosd_registry_transitions_total", "to" => "lost").increment(1);
}

/// `gosd_registry_transitions_total{to="restored"}`: a call worked again.
pub(super) fn registry_restored() {
    counter!("gosd_registry_transitions_total", "to" => "restored").increment(1);
}

/// `gosd_ejections_total{service}`: the outlier detector took an instance
/// of `service` out of this process's picks.
pub(super) fn ejected(service: &str) {
    counter!("gosd_ejections_total", "service" => service.to_owned()).increment(1);
}

/// `gosd_heartbeat_round_trip_seconds`: awaits a lease renewal and
/// records how long the registry took to answer it (not a failed one).
pub(super) async fn heartbeat<T, E>(renewal: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let started = Instant::now();
    let answer = renewal.await;
    if answer.is_ok() {
        histogram!("gosd_heartbeat_round_trip_seconds").record(started.elapsed().as_secs_f64());
    }
    answer
}

/// `gosd_service_instances{service}`: the routes each service touched by
/// a change has in the new table (0 once it has none).
pub(super) fn service_instances(old: &RouteTable, new: &RouteTable, touched: &Touched) {
    let set = |service: &str| {
        gauge!("gosd_service_instances", "service" => service.to_owned())
            .set(new.routes(service).len() as f64);
    };
    match touched {
        Touched::Nothing => {}
        Touched::Services(names) => names.iter().for_each(|s| set(s)),
        Touched::All => {
            new.services().for_each(set);
            old.services()
                .filter(|s| new.routes(s).is_empty())
                .for_each(set);
        }
    }
}
