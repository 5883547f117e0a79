//! Refresh cost on a registry of 100, 1k and 10k instances, against a raw
//! `HGETALL` of the same hash (collected into a `HashMap`, as any client
//! would) in the same run:
//! - an unchanged refresh;
//! - a refresh after one change by gosd, which the fetch script answers
//!   from its log of recent changes;
//! - a refresh after one write by Go gosd, which keeps no such record, so
//!   the client reads the whole hash: what any refresh cost before the log,
//!   and still costs after more than 64 changes.
//!
//! The baseline reads after the same untimed change as the refreshes do: a
//! write just before a read leaves Redis and the caches in another state
//! than a loop of reads alone, and both sides should pay for it.
//!
//! Criterion times each case in its own stretch of the run, and on a shared
//! machine two stretches can differ by more than the cases do. So the
//! ratios the targets are about are also measured interleaved: each round
//! changes the registry, reads it raw, then refreshes. The lines printed
//! per size give the medians and the ratio of the means over all rounds.
//!
//! `cargo bench --bench refresh` (spawns its own redis-server)

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gosd::{Client, Config, Driver, InstanceName, RedisDriver};
use redis_server::RedisServer;

/// Times `f`.
fn timed(f: impl FnOnce()) -> Duration {
    let t0 = Instant::now();
    f();
    t0.elapsed()
}

/// `op`'s time over `iters` runs, each after an untimed `before` (a change
/// to the registry): for criterion's `iter_custom`.
fn each_after(iters: u64, before: impl Fn(), op: impl Fn()) -> Duration {
    (0..iters)
        .map(|_| {
            before();
            timed(&op)
        })
        .sum()
}

fn refresh(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let writer = RedisDriver::new(server.url().parse().unwrap());
    let raw = rt
        .block_on(
            redis::Client::open(server.url())
                .unwrap()
                .get_multiplexed_async_connection(),
        )
        .unwrap();
    let mut g = c.benchmark_group("refresh");
    let mut registered = 0;
    let extra = InstanceName::new("svc0", "extra").unwrap();
    let present = Cell::new(false);
    // One change to the registry: the extra instance comes or goes.
    let change = || {
        rt.block_on(async {
            if present.get() {
                writer.deregister(&extra, "http://extra:1").await.unwrap();
            } else {
                writer
                    .register(&extra, "http://extra:1", Duration::from_secs(3600))
                    .await
                    .unwrap();
            }
        });
        present.set(!present.get());
    };
    // One write by Go gosd: a field comes or goes, no revision, no log.
    let go_present = Cell::new(false);
    let go_change = || {
        let cmd = if go_present.get() { "HDEL" } else { "HSET" };
        let mut write = redis::cmd(cmd);
        write.arg("gosd").arg("svc0-20160315122936.1");
        if !go_present.get() {
            write.arg("http://go:1");
        }
        let _: i64 = rt.block_on(write.query_async(&mut raw.clone())).unwrap();
        go_present.set(!go_present.get());
    };
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

        let hgetall = || {
            let all: HashMap<String, String> = rt
                .block_on(
                    redis::cmd("HGETALL")
                        .arg("gosd")
                        .query_async(&mut raw.clone()),
                )
                .unwrap();
            assert!(all.len() >= size);
        };
        let refresh = || rt.block_on(client.get()).unwrap();
        interleaved(size, "after one change", || {
            change();
            (timed(hgetall), timed(refresh))
        });
        // Apart: after a Go write the client's version is one the log has
        // no message for, so its next refresh after a change reads whole too.
        interleaved(size, "after a Go write", || {
            go_change();
            (timed(hgetall), timed(refresh))
        });
        g.bench_with_input(BenchmarkId::new("raw_hgetall", size), &size, |b, _| {
            b.iter_custom(|iters| each_after(iters, change, hgetall))
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
            |b, _| b.iter_custom(|iters| each_after(iters, change, refresh)),
        );
        g.bench_with_input(
            BenchmarkId::new("gosd_after_a_go_write", size),
            &size,
            |b, _| b.iter_custom(|iters| each_after(iters, go_change, refresh)),
        );
        if present.get() {
            change();
        }
        if go_present.get() {
            go_change();
        }
    }
    g.finish();
}

/// Runs `round` many times (it returns the raw read's time and the
/// refresh's) and prints both medians and the ratio of the means.
fn interleaved(size: usize, case: &str, mut round: impl FnMut() -> (Duration, Duration)) {
    let rounds = if size >= 10_000 { 100 } else { 500 };
    let (mut raw, mut gosd): (Vec<Duration>, Vec<Duration>) = (0..rounds).map(|_| round()).unzip();
    let total = |all: &Vec<Duration>| all.iter().sum::<Duration>().as_secs_f64();
    let ratio = total(&gosd) / total(&raw);
    raw.sort();
    gosd.sort();
    println!(
        "interleaved, {size} instances, {rounds} rounds: raw HGETALL median {:?}, \
         gosd refresh {case} median {:?}, mean ratio {ratio:.2}",
        raw[rounds / 2],
        gosd[rounds / 2],
    );
}

criterion_group!(benches, refresh);
criterion_main!(benches);
