//! Refresh cost on a registry of 100, 1k and 10k instances: an unchanged refresh
//! and a refresh after one change, against a raw `HGETALL` of the same hash
//! (collected into a `HashMap`, as any client would) in the same run.
//!
//! `cargo bench --bench refresh` (spawns its own redis-server)

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gosd::{Client, Config, Driver, InstanceName, RedisDriver};
use redis_server::RedisServer;

fn refresh(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let writer = RedisDriver::new(server.url(), "gosd").unwrap();
    let mut raw = rt
        .block_on(
            redis::Client::open(server.url())
                .unwrap()
                .get_multiplexed_async_connection(),
        )
        .unwrap();
    let mut g = c.benchmark_group("refresh");
    let mut registered = 0;
    let extra = InstanceName::new("svc0", "extra").unwrap();
    let mut present = false;
    for size in [100, 1_000, 10_000] {
        rt.block_on(async {
            while registered < size {
                let name =
                    InstanceName::new(&format!("svc{}", registered % 100), &registered.to_string())
                        .unwrap();
                writer
                    .register(
                        &name,
                        &format!("http://host{registered}:8080"),
                        Duration::from_secs(3600),
                    )
                    .await
                    .unwrap();
                registered += 1;
            }
        });
        let mut config = Config::default();
        config.redis.addr = Some(server.addr());
        config.cron = None;
        config.watch = false; // only the benchmarked calls talk to Redis
        let client = rt
            .block_on(Client::builder().config(config).build())
            .unwrap();

        g.bench_with_input(BenchmarkId::new("raw_hgetall", size), &size, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    let all: HashMap<String, String> = redis::cmd("HGETALL")
                        .arg("gosd")
                        .query_async(&mut raw)
                        .await
                        .unwrap();
                    assert_eq!(all.len(), size);
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("gosd_unchanged", size), &size, |b, _| {
            b.iter(|| rt.block_on(client.get()).unwrap())
        });
        // The driver's part of a full refresh, without the client's rebuild.
        g.bench_with_input(
            BenchmarkId::new("driver_fetch_only", size),
            &size,
            |b, _| b.iter(|| rt.block_on(writer.fetch(None)).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("gosd_after_one_change", size),
            &size,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        rt.block_on(async {
                            // The change itself is not timed: only the refresh that follows.
                            if present {
                                writer.deregister(&extra, "http://extra:1").await.unwrap();
                            } else {
                                writer
                                    .register(&extra, "http://extra:1", Duration::from_secs(3600))
                                    .await
                                    .unwrap();
                            }
                            present = !present;
                            let t0 = Instant::now();
                            client.get().await.unwrap();
                            spent += t0.elapsed();
                        });
                    }
                    spent
                })
            },
        );
        if present {
            rt.block_on(writer.deregister(&extra, "http://extra:1"))
                .unwrap();
            present = false;
        }
    }
    g.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
