//! The Redis and etcd drivers side by side, in the same run, on the same
//! machine — Redis plain, over mutual TLS, behind Sentinel (1 primary,
//! 1 replica, 3 sentinels) and as a Cluster (3 primaries, 3 replicas),
//! and etcd: propagation (register -> visible in 1 and 100 watching client
//! tables, p50/p99), registration throughput (1 and 16 registrants at
//! once), and an unchanged refresh.
//!
//! `cargo bench --bench drivers` (spawns its own redis-server,
//! redis-sentinel and etcd: `apt-get install -y redis-server redis-sentinel
//! etcd-server`)
//!
//! The servers are as the tests run them: Redis with persistence off, etcd
//! with its default fsync per commit (a single member on a temp dir). So
//! etcd pays for durability here and Redis does not; that is how each is
//! usually deployed for discovery, and BENCHMARKS.md says so.

// Each server module loads its own copy of `spawned.rs`.
#[path = "../tests/support/certs.rs"]
mod certs;
#[path = "../tests/support/cluster.rs"]
mod cluster;
#[allow(clippy::duplicate_mod)]
#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;
#[allow(clippy::duplicate_mod)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;
#[path = "../tests/support/sentinel.rs"]
mod sentinel;
#[allow(clippy::duplicate_mod)]
#[path = "../tests/support/spawned.rs"]
mod spawned;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_server::EtcdServer;
use gosd::driver::{Fetched, InstanceName};
use gosd::{Config, DriverKind, DynDriver, EtcdDriver, EtcdOptions, RedisDriver, RedisOptions};
use redis_server::RedisServer;
use sentinel::{MASTER, SentinelSet};
use support::{propagation_round, report};

struct Backend {
    label: &'static str,
    config: Config,
    driver: Arc<dyn DynDriver>,
}

/// `total` registrations of unique names by `concurrency` tasks at once;
/// registrations per second.
async fn registration_throughput(
    driver: &Arc<dyn DynDriver>,
    run: usize,
    concurrency: usize,
    total: usize,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let driver = driver.clone();
            tokio::spawn(async move {
                for i in (task..total).step_by(concurrency) {
                    let name = InstanceName::new("load", &format!("{run}.{i}")).unwrap();
                    let url = format!("http://load-{run}-{i}:80");
                    assert!(
                        driver
                            .register(&name, &url, Duration::from_secs(60))
                            .await
                            .unwrap()
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// An unchanged refresh: `fetch` with the version the caller knows.
async fn unchanged_fetch(driver: &Arc<dyn DynDriver>, rounds: usize) -> Vec<Duration> {
    let known = driver.snapshot().await.unwrap().version;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let fetched = driver.fetch(Some(known)).await.unwrap();
        samples.push(t0.elapsed());
        assert!(matches!(fetched, Fetched::Unchanged { .. }));
    }
    samples
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scaled = |full: usize| if quick { 3 } else { full };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = RedisServer::start();
    let certs = certs::Certs::new();
    let tls = RedisServer::start_tls(&certs.path(""), "yes");
    let sentinels = SentinelSet::start();
    let cluster = cluster::ClusterSet::start();
    let etcd = EtcdServer::start();
    rt.block_on(async {
        let mut redis_config = Config::default();
        redis_config.redis.addr = Some(redis.addr());
        let mut etcd_config = Config::default();
        etcd_config.driver = DriverKind::Etcd;
        etcd_config.etcd.endpoints = vec![etcd.endpoint()];
        let mut tls_config = Config::default();
        tls_config.redis.url = Some(tls.url());
        tls_config.redis.tls_ca = Some(certs.path("ca.pem"));
        tls_config.redis.tls_cert = Some(certs.path("client.pem"));
        tls_config.redis.tls_key = Some(certs.path("client.key"));
        let tls_options = RedisOptions::from_url(&tls.url())
            .and_then(|o| o.tls_ca(certs.path("ca.pem")))
            .and_then(|o| o.tls_client_cert(certs.path("client.pem"), certs.path("client.key")))
            .unwrap();
        let mut sentinel_config = Config::default();
        sentinel_config.redis.sentinels = Some(sentinels.list());
        sentinel_config.redis.master = Some(MASTER.to_owned());
        let sentinel_options = RedisOptions::new()
            .sentinels(&sentinels.list(), MASTER)
            .unwrap();
        let mut cluster_config = Config::default();
        cluster_config.redis.cluster = Some(cluster.list());
        let cluster_options = RedisOptions::new().cluster(&cluster.list()).unwrap();
        let backends = [
            Backend {
                label: "redis",
                config: redis_config,
                driver: Arc::new(RedisDriver::new(redis.url().parse().unwrap())),
            },
            Backend {
                label: "redis-tls",
                config: tls_config,
                driver: Arc::new(RedisDriver::new(tls_options)),
            },
            Backend {
                label: "redis-sentinel",
                config: sentinel_config,
                driver: Arc::new(RedisDriver::new(sentinel_options)),
            },
            Backend {
                label: "redis-cluster",
                config: cluster_config,
                driver: Arc::new(RedisDriver::new(cluster_options)),
            },
            Backend {
                label: "etcd",
                config: etcd_config,
                driver: Arc::new(EtcdDriver::new(
                    EtcdOptions::new([etcd.endpoint()], "/gosd").unwrap(),
                )),
            },
        ];

        println!("drivers side by side (loopback, 2 worker threads)");
        println!("propagation, register -> visible in every watching client's table");
        // 500 rounds at 100 clients: a round's 100 samples move together, so
        // over 50 the p99 was little more than the slowest round.
        for (clients, rounds) in [(1, scaled(300)), (100, scaled(500))] {
            let mut percentiles = Vec::new();
            for b in &backends {
                let mut samples =
                    propagation_round(&b.config, b.driver.clone(), clients, rounds).await;
                let what = format!("{}: register -> {clients} client table(s)", b.label);
                percentiles.push(report(&what, &mut samples));
            }
            for (b, (p50, p99)) in backends.iter().zip(&percentiles).skip(1) {
                println!(
                    "{:<44} ratio {}/redis p50 = {:.2}, p99 = {:.2}",
                    "",
                    b.label,
                    p50.as_secs_f64() / percentiles[0].0.as_secs_f64(),
                    p99.as_secs_f64() / percentiles[0].1.as_secs_f64()
                );
            }
        }

        println!("registration throughput, unique names, 60 s leases");
        for (run, concurrency) in [1, 16].into_iter().enumerate() {
            let total = if quick { 20 } else { 2_000 };
            let mut rates = Vec::new();
            for b in &backends {
                let rate = registration_throughput(&b.driver, run, concurrency, total).await;
                println!(
                    "{:<44} {rate:>8.0} registrations/s",
                    format!("{}: {concurrency} registrant(s), {total} total", b.label)
                );
                rates.push(rate);
            }
            for (b, rate) in backends.iter().zip(&rates).skip(1) {
                println!(
                    "{:<44} ratio {}/redis = {:.2}",
                    "",
                    b.label,
                    rate / rates[0]
                );
            }
        }

        println!("unchanged refresh (fetch with the current version), registry as left above");
        let mut p50s = Vec::new();
        for b in &backends {
            let mut samples = unchanged_fetch(&b.driver, scaled(1_000)).await;
            p50s.push(report(&format!("{}: unchanged fetch", b.label), &mut samples).0);
        }
        for (b, p50) in backends.iter().zip(&p50s).skip(1) {
            println!(
                "{:<44} ratio {}/redis p50 = {:.2}",
                "",
                b.label,
                p50.as_secs_f64() / p50s[0].as_secs_f64()
            );
        }
        // Each backend's floor for one request: what an unchanged fetch
        // is measured against.
        let mut redis_conn = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut samples = Vec::new();
        for _ in 0..scaled(1_000) {
            let t0 = Instant::now();
            let _: String = redis::cmd("PING")
                .query_async(&mut redis_conn)
                .await
                .unwrap();
            samples.push(t0.elapsed());
        }
        report("floor: redis PING", &mut samples);
        let mut etcd_client = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .unwrap();
        let mut samples = Vec::new();
        for _ in 0..scaled(1_000) {
            let t0 = Instant::now();
            etcd_client.get("/gosd:changed", None).await.unwrap();
            samples.push(t0.elapsed());
        }
        report("floor: etcd GET of one key", &mut samples);
    });
}
