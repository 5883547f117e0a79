//! What the router counts, through the `metrics` facade, and `/-/metrics`,
//! which renders it as Prometheus text once [`install_metrics`] has run.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gosd_router_requests_total` | counter | `service`, `class` (`2xx` … `5xx`) |
//! | `gosd_router_unrouted_requests_total` | counter | `reason` (`no_instance`, `not_a_service_path`) |
//! | `gosd_router_upstream_duration_seconds` | histogram | `service` |
//! | `gosd_router_retries_total` | counter | `service` |
//! | `gosd_router_in_flight_requests` | gauge | |
//!
//! Requests are labelled by service only for services the table holds, and
//! each service's handles are made once (when its first URL gets
//! counters), so a request records through ready handles without a lookup
//! or an allocation, and request paths made up by a client cannot grow the
//! number of series. The gosd client's own metrics (`gosd_…`) show on the
//! same page, as it records through the same facade; ejections are among
//! them (`gosd_ejections_total`), since the client's outlier detector
//! makes them.

use std::sync::OnceLock;
use std::time::Duration;

use hyper::StatusCode;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "gosd_router_requests_total";
const UNROUTED: &str = "gosd_router_unrouted_requests_total";
const UPSTREAM_DURATION: &str = "gosd_router_upstream_duration_seconds";
const RETRIES: &str = "gosd_router_retries_total";
const IN_FLIGHT: &str = "gosd_router_in_flight_requests";

/// Seconds, from a loopback hop to the default 30 s timeout.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why [`install_metrics`] did not install.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A `metrics` recorder was installed already, by this function or by
    /// the program: a process has one.
    #[error("a metrics recorder is installed already: a process has one")]
    AlreadyInstalled,
    /// The exporter refused its configuration.
    #[error("the Prometheus exporter refused its configuration: {0}")]
    Exporter(String),
}

/// Installs a Prometheus recorder as the process's `metrics` recorder and
/// serves what it holds at `/-/metrics`. The `gosd-router` binary calls it
/// at start; a program embedding [`Router`](crate::Router) may, or may
/// install a recorder of its own (then `/-/metrics` answers 404).
///
/// # Errors
/// [`MetricsError::AlreadyInstalled`] on a second call, or when the program
/// installed a recorder of its own first.
pub fn install_metrics() -> Result<(), MetricsError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(UPSTREAM_DURATION.into()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| MetricsError::Exporter(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    // Only the call that installed the recorder gets here.
    let _ = HANDLE.set(handle);
    describe();
    Ok(())
}

/// The Prometheus text of everything recorded; `None` before
/// [`install_metrics`].
pub(crate) fn render() -> Option<String> {
    HANDLE.get().map(PrometheusHandle::render)
}

fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(REQUESTS, "Requests answered, by service and status class.");
    metrics::describe_counter!(
        UNROUTED,
        "Requests not sent anywhere: no instance, or a path that names no service."
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time from sending a request to an instance to its response head."
    );
    metrics::describe_counter!(RETRIES, "Requests sent again to another instance.");
    metrics::describe_gauge!(IN_FLIGHT, "Requests waiting on an instance now.");
}

/// One service's metric handles.
pub(crate) struct ServiceMetrics {
    /// By status class: 1xx … 5xx.
    classes: [Counter; 5],
    upstream: Histogram,
    retries: Counter,
}

impl Default for ServiceMetrics {
    /// Handles that record nothing, for counters no service owns.
    fn default() -> Self {
        Self {
            classes: std::array::from_fn(|_| Counter::noop()),
            upstream: Histogram::noop(),
            retries: Counter::noop(),
        }
    }
}

impl ServiceMetrics {
    pub(crate) fn new(service: &str) -> Self {
        let class = |c: &'static str| metrics::counter!(REQUESTS, "service" => service.to_owned(), "class" => c);
        Self {
            classes: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            upstream: metrics::histogram!(UPSTREAM_DURATION, "service" => service.to_owned()),
            retries: metrics::counter!(RETRIES, "service" => service.to_owned()),
        }
    }

    /// A response sent downstream, forwarded or made here.
    pub(crate) fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.classes[class].increment(1);
    }

    pub(crate) fn upstream_took(&self, took: Duration) {
        self.upstream.record(took.as_secs_f64());
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }
}

/// A request that was not sent to any instance.
pub(crate) fn unrouted(reason: &'static str) {
    metrics::counter!(UNROUTED, "reason" => reason).increment(1);
}

/// Counts a request in flight while it lives.
pub(crate) struct InFlight(&'static Gauge);

impl InFlight {
    pub(crate) fn start() -> Self {
        // Registered at the first request, when the recorder is in place.
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        let gauge = GAUGE.get_or_init(|| metrics::gauge!(IN_FLIGHT));
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
