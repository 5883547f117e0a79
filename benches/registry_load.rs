//! Registry load at steady state: 10,000 registered instances renewing
//! their leases, 1,000 consumer clients (push on, default cadence). Redis's
//! commands per second and CPU over a window, against the theoretical
//! minimum: one renewal per instance per heartbeat plus one version read
//! per consumer per cron tick.
//!
//! `cargo bench --bench registry_load` (spawns its own redis-server; about
//! a minute; uses ~2 GB for 1,000 tables of 10,000 routes)
//!
//! The instances are simulated by renewal loops at the real heartbeat rate
//! (the same script a client's heartbeat sends); the consumers are real
//! `gosd::Client`s.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gosd::{Client, Config, Driver, InstanceName, RedisDriver};
use redis_server::RedisServer;

fn info(con: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// (client-issued script calls, all commands, CPU seconds) so far.
fn counters(con: &mut redis::Connection) -> (f64, f64, f64) {
    let stats = info(con, "commandstats");
    let calls = |cmd: &str| -> f64 {
        stats
            .get(&format!("cmdstat_{cmd}"))
            .and_then(|v| v.split(',').next())
            .and_then(|c| c.strip_prefix("calls="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let scripts = calls("evalsha") + calls("eval");
    let total: f64 = info(con, "stats")
        .get("total_commands_processed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpu = info(con, "cpu");
    let secs = |k: &str| {
        cpu.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (scripts, total, secs("used_cpu_sys") + secs("used_cpu_user"))
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (instances, consumers, window) = if quick {
        (100, 10, Duration::from_secs(1))
    } else {
        (10_000, 1_000, Duration::from_secs(60))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("10000")
        .query(&mut server.connection())
        .unwrap();
    let config = {
        let mut c = Config::default();
        c.redis.addr = Some(server.addr());
        c
    };
    let (ttl, heartbeat) = (config.ttl, config.heartbeat);
    let cron = config
        .cron
        .as_ref()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    rt.block_on(async move {
        let writer = RedisDriver::new(server.url().parse().unwrap());
        let mut names = Vec::new();
        for i in 0..instances {
            let name = InstanceName::new(&format!("service{}", i % 100), &format!("20261121000000.{i:08}")).unwrap();
            let url = format!("http://10.0.{}.{}:8080", i / 250, i % 250);
            writer.register(&name, &url, ttl).await.unwrap();
            names.push((name, url));
        }
        // Each instance renews once per heartbeat, spread evenly, as a
        // fleet with unsynchronised clocks would. An interval keeps the
        // pace without drift; the renewals are counted here, so that what
        // the consumers send is what is left.
        let renewals = std::sync::Arc::new(AtomicU64::new(0));
        for chunk in names.chunks(500) {
            let (chunk, writer, renewals) = (chunk.to_vec(), writer.clone(), renewals.clone());
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(heartbeat / chunk.len() as u32);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    for (name, url) in &chunk {
                        pace.tick().await;
                        let _ = writer.renew(name, url, ttl).await;
                        renewals.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let mut clients = Vec::new();
        for _ in 0..consumers {
            clients.push(Client::builder().config(config.clone()).build().await.unwrap());
        }
        // Settle: every client subscribed and past its first checks.
        tokio::time::sleep(if quick { Duration::from_millis(200) } else { Duration::from_secs(15) }).await;
        let mut con = server.connection();
        let (s0, t0, c0) = counters(&mut con);
        let r0 = renewals.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let (s1, t1, c1) = counters(&mut con);
        let r1 = renewals.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let per_s = |n: f64| n / secs;
        let renewing = per_s((r1 - r0) as f64);
        let reads = per_s(s1 - s0) - renewing;
        let min_renewals = instances as f64 / heartbeat.as_secs_f64();
        let min_reads = consumers as f64 / 30.0;
        println!("{instances} instances (TTL {ttl:?}, heartbeat {heartbeat:?}), {consumers} consumers (cron `{cron}`, push on), {secs:.0} s window");
        println!("theoretical minimum: {:.0} commands/s = renewals {min_renewals:.0}/s + one read per consumer per 30 s tick {min_reads:.0}/s", min_renewals + min_reads);
        println!("measured: renewals {renewing:.0}/s + consumer commands {reads:.0}/s = {:.0}/s = {:.2}x the minimum",
            renewing + reads, (renewing + reads) / (min_renewals + min_reads));
        println!("consumer commands per consumer: one every {:.1} s", consumers as f64 / reads.max(f64::MIN_POSITIVE));
        println!("all commands Redis processed (scripts' inner calls included): {:.0}/s", per_s(t1 - t0));
        println!("Redis CPU: {:.1}% of one core", 100.0 * per_s(c1 - c0));
        drop(clients);
    });
}
