//! Redis goes away for the rest of the test: picks keep serving the last
//! table, every part keeps retrying, and the log says "lost" once, not
//! once per attempt. (A global log subscriber: this file is its own process.)

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gosd::Client;
use support::{RedisServer, config, eventually, routes_become};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_picks_working_and_logs_the_loss_once() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("gosd=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut server = RedisServer::start();
    let mut fast = config(&server);
    fast.ttl = Duration::from_secs(1);
    fast.heartbeat = Duration::from_millis(50);
    // One service process: it registers, and it consumes.
    let consumer = Client::builder().config(fast).build().await.unwrap();
    let _me = consumer.register("provider", "http://p:1").await.unwrap();
    routes_become(&consumer, "provider", "the provider", |r| r.len() == 1).await;

    server.stop();
    // The heartbeat, the refresher and the subscription all retry meanwhile.
    eventually("many failed attempts", || {
        log.count("registry call failed") >= 10
    })
    .await;
    for _ in 0..1000 {
        assert_eq!(
            &*consumer.iterate_service_route("provider").await.unwrap(),
            "http://p:1"
        );
    }
    assert_eq!(
        log.count("registry lost"),
        1,
        "one 'lost' line for the whole outage"
    );
    assert!(
        log.count("push updates lost") <= 1,
        "push loss logged once at most"
    );
}
