//! What a client records through the `metrics` facade, read back through
//! metrics-util's debugging recorder, against a real redis-server.
//!
//! One test in this binary: the recorder is process-wide, and metrics are
//! per process. The only `Client` alive at a time is the one under test;
//! other instances are written with the driver itself, which records
//! nothing.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use gosd::{Driver, InstanceName, RedisDriver, RedisOptions};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::{RedisServer, eventually};

/// Everything recorded so far. Each snapshot of the debugging recorder
/// takes (and zeroes) what was recorded since the last one, so counters
/// are summed here, histogram samples collected, and gauges kept as last
/// set.
struct Recorded {
    snapshotter: Snapshotter,
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Recorded {
    fn take(&mut self) -> &mut Self {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut name = key.name().to_owned();
            for label in key.labels() {
                name.push_str(&format!(" {}={}", label.key(), label.value()));
            }
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                // A snapshot zeroes gauges too, so a 0 is what any later
                // snapshot shows: kept are the values set (the test sets
                // none to 0).
                DebugValue::Gauge(v) if v.into_inner() != 0.0 => {
                    self.gauges.insert(name, v.into_inner());
                }
                DebugValue::Gauge(_) => {}
                DebugValue::Histogram(samples) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(samples.into_iter().map(|s| s.into_inner())),
            }
        }
        self
    }

    fn counter(&mut self, name: &str) -> u64 {
        self.take().counters.get(name).copied().unwrap_or(0)
    }

    fn refreshes(&mut self, outcome: &str) -> u64 {
        self.counter(&format!("gosd_refreshes_total outcome={outcome}"))
    }

    fn all_refreshes(&mut self) -> u64 {
        ["unchanged", "changes", "whole", "failed"]
            .iter()
            .map(|o| self.refreshes(o))
            .sum()
    }

    /// The gauge's last value other than 0.
    fn instances(&mut self, service: &str) -> Option<f64> {
        self.take()
            .gauges
            .get(&format!("gosd_service_instances service={service}"))
            .copied()
    }
}

fn driver(server: &RedisServer) -> RedisDriver {
    RedisDriver::new(RedisOptions::from_url(&server.url()).expect("options"))
}

fn name(id: &str) -> InstanceName {
    InstanceName::new("provider", id).expect("name")
}

fn subscribers(server: &RedisServer) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("{gosd}:events")
        .query(&mut server.connection())
        .expect("PUBSUB NUMSUB");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_records_refreshes_pushes_transitions_heartbeats_instances_and_ejections() {
    let recorder = DebuggingRecorder::new();
    let mut recorded = Recorded {
        snapshotter: recorder.snapshotter(),
        counters: HashMap::new(),
        gauges: HashMap::new(),
        histograms: HashMap::new(),
    };
    recorder
        .install()
        .expect("the only recorder in this binary");
    let mut server = RedisServer::start();
    let raw = driver(&server);
    let ttl = Duration::from_secs(60);

    // Refresh outcomes, on a client without push updates. (A registry
    // with a change in its log: the log answers from the change that
    // brought the client where it is.)
    assert!(
        raw.register(&name("0"), "http://127.0.0.1:0", ttl)
            .await
            .expect("register")
    );
    let mut config = support::config(&server);
    config.watch = false;
    let poller = gosd::Client::builder()
        .config(config)
        .build()
        .await
        .expect("client");
    assert_eq!(recorded.refreshes("whole"), 1, "the first load");
    poller.get().await.expect("refresh");
    assert_eq!(recorded.refreshes("unchanged"), 1);
    assert!(
        raw.register(&name("1"), "http://127.0.0.1:1", ttl)
            .await
            .expect("register")
    );
    poller.get().await.expect("refresh");
    assert_eq!(recorded.refreshes("changes"), 1, "one change, from the log");
    // A Go gosd write moves no revision: only a whole read shows it.
    server.write_raw("provider-20160315122936.17256541", "http://127.0.0.1:2");
    poller.get().await.expect("refresh");
    assert_eq!(recorded.refreshes("whole"), 2);
    assert_eq!(recorded.refreshes("failed"), 0);
    assert_eq!(recorded.instances("provider"), Some(3.0));
    drop(poller);
    let before = recorded.all_refreshes();

    // Pushed events, on a client with them.
    let mut config = support::config(&server);
    config.ttl = Duration::from_secs(2);
    config.heartbeat = Duration::from_millis(50);
    let client = gosd::Client::builder()
        .config(config)
        .build()
        .await
        .expect("client");
    eventually("the client subscribed", || subscribers(&server) == 1).await;
    // The first load, then the whole read that follows a new
    // subscription (what it may have missed).
    let mut refreshed = 0;
    eventually("the read after subscribing", || {
        refreshed = recorded.all_refreshes();
        refreshed == before + 2
    })
    .await;
    assert!(
        raw.register(&name("3"), "http://127.0.0.1:3", ttl)
            .await
            .expect("register")
    );
    eventually("the pushed registration", || {
        client.routes("provider").len() == 4
    })
    .await;
    assert_eq!(recorded.instances("provider"), Some(4.0));
    assert!(
        raw.deregister(&name("3"), "http://127.0.0.1:3")
            .await
            .expect("deregister")
    );
    eventually("the pushed removal", || {
        client.routes("provider").len() == 3
    })
    .await;
    assert_eq!(recorded.instances("provider"), Some(3.0));
    assert_eq!(
        recorded.counter("gosd_pushed_events_total result=applied"),
        2
    );
    assert_eq!(
        recorded.all_refreshes(),
        refreshed,
        "applied without a fetch"
    );

    // Heartbeats: round trips of answered renewals.
    let _me = client
        .register("self", "http://127.0.0.1:4")
        .await
        .expect("register");
    eventually("a few heartbeats", || {
        recorded
            .take()
            .histograms
            .get("gosd_heartbeat_round_trip_seconds")
            .is_some_and(|s| s.len() >= 3)
    })
    .await;
    let samples = &recorded.histograms["gosd_heartbeat_round_trip_seconds"];
    assert!(samples.iter().all(|&s| s > 0.0 && s < 60.0), "{samples:?}");

    // An ejection by the outlier detector, of the two manual routes of a
    // service: the first counts, the last is never ejected.
    client
        .add_service_manually("ejecting", "http://127.0.0.1:7")
        .expect("a manual route");
    client
        .add_service_manually("ejecting", "http://127.0.0.1:9")
        .expect("a manual route");
    for route in client.routes("ejecting") {
        for _ in 0..3 {
            client.report(&route, gosd::Outcome::ConnectFailure);
        }
    }
    assert_eq!(
        recorded.counter("gosd_ejections_total service=ejecting"),
        1,
        "one ejected, the last kept"
    );

    // The registry lost, then restored: one transition each.
    let port = server.port();
    server.stop();
    assert!(client.get().await.is_err());
    assert!(recorded.refreshes("failed") >= 1);
    assert_eq!(
        recorded.counter("gosd_registry_transitions_total to=lost"),
        1
    );
    assert!(client.get().await.is_err(), "still down");
    assert_eq!(
        recorded.counter("gosd_registry_transitions_total to=lost"),
        1,
        "a state change is counted once, not once per failure"
    );
    let _server = RedisServer::start_on(port);
    // The first command on a dropped connection may fail while it
    // reconnects: retried, within the test's patience.
    let started = std::time::Instant::now();
    while let Err(e) = client.get().await {
        assert!(
            started.elapsed() < support::PATIENCE,
            "no refresh after the restart: {e}"
        );
    }
    assert_eq!(
        recorded.counter("gosd_registry_transitions_total to=restored"),
        1
    );
}
