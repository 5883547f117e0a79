//! Propagation latency: register → visible in the route table of N
//! watching clients (N = 1, 100), p50/p99, against the floor in the same
//! run: a raw Redis PUBLISH → received by N raw subscribers.
//!
//! `cargo bench --bench propagation` (spawns its own redis-server)

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gosd::{Client, Config, Driver, InstanceName, RedisDriver};
use redis_server::RedisServer;
use tokio::sync::Barrier;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.50), percentile(samples, 0.99));
    println!(
        "{what:<44} n={:<6} p50={p50:>10.1?} p99={p99:>10.1?}",
        samples.len()
    );
    (p50, p99)
}

/// Register one instance, time until every client's table has it; then
/// deregister it and wait until every table dropped it (untimed).
async fn gosd_round(server: &RedisServer, clients: usize, rounds: usize) -> Vec<Duration> {
    let mut config = Config::default();
    config.redis.addr = Some(server.addr());
    config.cron = None;
    let mut consumers = Vec::new();
    for _ in 0..clients {
        consumers.push(
            Client::builder()
                .config(config.clone())
                .build()
                .await
                .unwrap(),
        );
    }
    let writer = RedisDriver::new(server.url(), "gosd").unwrap();
    let mut samples = Vec::with_capacity(clients * rounds);
    for round in 0..rounds {
        let name = InstanceName::new("bench", &round.to_string()).unwrap();
        let url = format!("http://bench-{round}:80");
        let start = Arc::new(Barrier::new(clients + 1));
        let waiters: Vec<_> = consumers
            .iter()
            .map(|c| {
                let (c, url, start) = (c.clone(), url.clone(), start.clone());
                tokio::spawn(async move {
                    let mut changes = c.changes();
                    start.wait().await;
                    loop {
                        changes.borrow_and_update();
                        if c.routes("bench").iter().any(|r| **r == *url) {
                            return Instant::now();
                        }
                        changes.changed().await.unwrap();
                    }
                })
            })
            .collect();
        start.wait().await;
        let t0 = Instant::now();
        writer
            .register(&name, &url, Duration::from_secs(60))
            .await
            .unwrap();
        for w in waiters {
            samples.push(w.await.unwrap() - t0);
        }
        writer.deregister(&name, &url).await.unwrap();
        for c in &consumers {
            let mut changes = c.changes();
            while !c.routes("bench").is_empty() {
                changes.changed().await.unwrap();
            }
        }
    }
    samples
}

/// The floor: PUBLISH one message, time until each of N subscribers has it.
async fn raw_pubsub_round(
    server: &RedisServer,
    subscribers: usize,
    rounds: usize,
) -> Vec<Duration> {
    let client = redis::Client::open(server.url()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..subscribers {
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("bench").await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                let _ = tx.send(Instant::now());
            }
        });
    }
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut samples = Vec::with_capacity(subscribers * rounds);
    for round in 0..rounds {
        let t0 = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench")
            .arg(round)
            .query_async(&mut publisher)
            .await
            .unwrap();
        for _ in 0..subscribers {
            samples.push(rx.recv().await.unwrap() - t0);
        }
    }
    samples
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = |full: usize| if quick { 3 } else { full };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = RedisServer::start();
        println!("propagation, register -> visible (loopback redis-server, 2 worker threads)");
        for (n, r) in [(1, rounds(300)), (100, rounds(50))] {
            let mut floor = raw_pubsub_round(&server, n, r).await;
            let (_, floor_p99) = report(
                &format!("floor: raw PUBLISH -> {n} subscriber(s)"),
                &mut floor,
            );
            let mut ours = gosd_round(&server, n, r).await;
            let (_, p99) = report(&format!("gosd: register -> {n} client table(s)"), &mut ours);
            println!(
                "{:<44} p99 ratio gosd/floor = {:.2}",
                "",
                p99.as_secs_f64() / floor_p99.as_secs_f64()
            );
        }
    });
}
