//! What several benchmarks share: percentiles, the report line, and the
//! propagation round (register -> visible in N clients' tables).
#![allow(dead_code)] // each bench uses a different part

use std::sync::Arc;
use std::time::{Duration, Instant};

use gosd::{Client, Config, DynDriver, InstanceName};
use tokio::sync::Barrier;

pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

pub fn report(what: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.50), percentile(samples, 0.99));
    println!(
        "{what:<44} n={:<6} p50={p50:>10.1?} p99={p99:>10.1?}",
        samples.len()
    );
    (p50, p99)
}

/// `clients` watching gosd clients built from `config`; `writer` registers
/// one instance per round. Times register -> visible in every client's
/// table, then deregisters and waits until every table dropped it
/// (untimed).
pub async fn propagation_round(
    config: &Config,
    writer: Arc<dyn DynDriver>,
    clients: usize,
    rounds: usize,
) -> Vec<Duration> {
    let mut config = config.clone();
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
