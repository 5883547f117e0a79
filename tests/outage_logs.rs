//! Redis goes away for longer than a lease, then comes back empty: picks
//! keep serving the last table throughout, every part keeps retrying, and
//! the log says "lost" once and "restored" once, not once per attempt.
//! (A global log subscriber: this file is its own process.)

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gosd::Client;
use support::{Proc, RedisServer, config, eventually, registry, routes_become};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// The lines that contain any of `needles`, for a failure message.
    fn lines(&self, needles: &[&str]) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lease of the registry entry `name`, as a score in `{gosd}:leases`.
fn lease_of(server: &RedisServer, name: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg("{gosd}:leases")
        .arg(name)
        .query(&mut server.connection())
        .expect("ZSCORE")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_longer_than_a_ttl_keeps_picks_working_and_logs_loss_and_restore_once() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("gosd=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut server = RedisServer::start();
    let port = server.port();
    let ttl = Duration::from_secs(1);
    let mut fast = config(&server);
    fast.ttl = ttl;
    fast.heartbeat = Duration::from_millis(50);
    // One service process: it registers, and it consumes, next to another
    // provider (a process of its own, so this log is this client's alone),
    // whose lease the client's lease-expiry refresh would come back for.
    let consumer = Client::builder().config(fast).build().await.unwrap();
    let me = consumer.register("provider", "http://p:1").await.unwrap();
    let (_other, other_name, other_url) = Proc::provider(&server, "2", &[("GOSD_TTL", "1s")]);
    routes_become(&consumer, "provider", "both providers", |r| r.len() == 2).await;
    let both = || {
        let mut routes: Vec<String> = consumer
            .routes("provider")
            .iter()
            .map(|r| r.to_string())
            .collect();
        routes.sort();
        routes
    };
    let expected = {
        let mut e = vec!["http://p:1".to_owned(), other_url.clone()];
        e.sort();
        e
    };
    assert_eq!(both(), expected);

    server.stop();
    let stopped = Instant::now();
    // The heartbeat, the refresher and the subscription all retry meanwhile,
    // for three TTLs: every lease the client knows of has run out, and
    // its lease-expiry refreshes have failed, over and over.
    eventually("three TTLs of failed attempts", || {
        stopped.elapsed() > 3 * ttl && log.count("registry call failed") >= 10
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        seen.insert(
            consumer
                .iterate_service_route("provider")
                .await
                .expect("a pick with Redis down for 3 TTLs")
                .to_string(),
        );
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        expected,
        "the last good table, whole, three TTLs into the outage"
    );
    assert_eq!(
        log.count("registry lost;"),
        1,
        "one 'lost' line for the whole outage"
    );
    assert!(
        log.count("push updates lost") <= 1,
        "push loss logged once at most"
    );
    assert_eq!(log.count("registry restored"), 0, "nothing restored yet");

    // Redis comes back, empty: the instance's own entry is written again,
    // and the log says "restored" once, however many parts reconnect.
    let server = RedisServer::start_on(port);
    eventually("both entries written again", || {
        let all = registry(&server);
        [me.name(), other_name.clone()]
            .iter()
            .all(|n| all.iter().any(|(f, _)| f == n))
    })
    .await;
    // Several more heartbeats succeed (the lease moves three times), and the
    // subscription is back, before the log is counted.
    for _ in 0..3 {
        let lease = lease_of(&server, &me.name());
        eventually("a heartbeat after the restore", || {
            lease_of(&server, &me.name()) != lease
        })
        .await;
    }
    eventually("push updates restored", || {
        log.count("push updates restored") >= 1
    })
    .await;
    let shown = log.lines(&["registry", "push updates"]);
    assert_eq!(
        log.count("registry restored"),
        1,
        "one 'restored' line:\n{shown}"
    );
    assert_eq!(log.count("push updates restored"), 1);
    assert_eq!(
        log.count("registry lost;"),
        1,
        "still one 'lost' line:\n{shown}"
    );
}
