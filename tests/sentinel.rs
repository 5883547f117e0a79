//! gosd behind Redis Sentinel, through a real failover: 1 primary, 1
//! replica, 3 sentinels; 2 providers, a consumer picking in a loop and a
//! watching client; then `kill -9` of the primary. Nobody may notice: no
//! failed pick, no empty table, every live instance renewed on the new
//! primary, and pushes flowing again. The test prints how long each took
//! (figures in BENCHMARKS.md); it asserts only what must hold.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gosd::Change;
use support::sentinel::{DOWN_AFTER, MASTER, SentinelSet};
use support::{PATIENCE, free_port};

/// Longer than the failover (about 2.3 s here) plus a heartbeat: a lease
/// that ran out while no primary was there would be reaped on the new one.
const TTL_MS: u64 = 5000;

fn config(set: &SentinelSet) -> gosd::Config {
    let mut c = gosd::Config::from_vars([
        ("GOSD_REDIS_SENTINELS", set.list()),
        ("GOSD_REDIS_MASTER", MASTER.to_owned()),
        ("GOSD_TTL", format!("{TTL_MS}ms")),
        ("GOSD_HEARTBEAT", "1s".to_owned()),
        ("GOSD_CRON", "off".to_owned()),
    ])
    .expect("Sentinel settings");
    c.try_refresh_amount = 30;
    c
}

async fn client(set: &SentinelSet) -> gosd::Client {
    gosd::Client::builder()
        .config(config(set))
        .handle_signals(false)
        .build()
        .await
        .expect("client behind Sentinel")
}

/// Lease expiries (ms, Redis clock) on the server at `port`, by URL.
fn leases(port: u16) -> Option<Vec<(String, String, u64)>> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_connection()
        .ok()?;
    let hash: Vec<(String, String)> = redis::cmd("HGETALL").arg("gosd").query(&mut conn).ok()?;
    let leases: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg("{gosd}:leases")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .ok()?;
    Some(
        hash.into_iter()
            .map(|(field, url)| {
                let expiry = leases
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map_or(0, |(_, e)| *e);
                (field, url, expiry)
            })
            .collect(),
    )
}

fn redis_now_ms(port: u16) -> u64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .expect("connect");
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).expect("TIME");
    secs * 1000 + micros / 1000
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> Instant {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE * 3,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_loses_no_pick_no_instance_and_no_push() {
    let mut set = SentinelSet::start();
    let old_port = set.primary_port();
    let mut probes = Vec::new();

    let providers = [client(&set).await, client(&set).await];
    let urls = [0, 1].map(|_| format!("http://127.0.0.1:{}", free_port()));
    let mut registrations = Vec::new();
    for (p, url) in providers.iter().zip(&urls) {
        registrations.push(p.register("provider", url).await.expect("register"));
    }
    let consumer = client(&set).await;
    consumer.get().await.expect("first fetch");
    let watcher = client(&set).await;
    let mut changes = watcher.watch_service("provider");
    for _ in 0..2 {
        assert!(matches!(changes.next().await, Some(Change::Insert(..))));
    }

    // The consumer picks every millisecond, from before the kill to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let (picks, failed, empty) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let picker = {
        let (stop, picks, failed, empty) =
            (stop.clone(), picks.clone(), failed.clone(), empty.clone());
        let consumer = consumer.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                picks.fetch_add(1, Ordering::Relaxed);
                if consumer.next_route("provider").is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if consumer.routes("provider").is_empty() {
                    empty.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Everything the watcher hears, stamped.
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let _ = heard_tx.send((Instant::now(), change));
        }
    });

    tokio::time::sleep(Duration::from_millis(200)).await; // picks before the kill
    set.servers[0].stop(); // SIGKILL
    let killed = Instant::now();
    let killed_at_ms = redis_now_ms(set.servers[1].port());

    let promoted = until("a new primary", || set.primary_port() != old_port).await;
    let new_port = set.primary_port();
    // From here, in the background: when both providers are in the new
    // primary's hash, and when both have renewed there (a lease that runs
    // past the kill by more than a TTL was written after it).
    let on_new_primary = {
        let urls = urls.clone();
        tokio::spawn(async move {
            let in_hash = until("both providers in the new primary's hash", || {
                leases(new_port)
                    .is_some_and(|l| urls.iter().all(|u| l.iter().any(|(_, url, _)| url == u)))
            })
            .await;
            let renewed = until("both providers renewed on the new primary", || {
                leases(new_port).is_some_and(|l| {
                    urls.iter().all(|u| {
                        l.iter()
                            .any(|(_, url, expiry)| url == u && *expiry > killed_at_ms + TTL_MS)
                    })
                })
            })
            .await;
            (in_hash, renewed)
        })
    };

    // Pushes: an instance registered as soon as the new primary is named
    // reaches the watcher; a second one measures the push alone.
    let mut probe_times = Vec::new();
    for n in 0..2 {
        let probe = client(&set).await;
        let url = format!("http://127.0.0.1:{}", free_port());
        let registered_from = Instant::now();
        let registration = probe
            .register("provider", &url)
            .await
            .expect("probe registers");
        let registered = Instant::now();
        let seen = loop {
            let (at, change) = tokio::time::timeout(PATIENCE, heard.recv())
                .await
                .expect("the watcher heard of the probe")
                .expect("watch stream open");
            if matches!(&change, Change::Insert(_, route) if route.as_str() == url) {
                break at;
            }
        };
        probe_times.push((n, registered_from, registered, seen));
        probes.push((probe, registration));
    }
    let (in_hash, renewed) = on_new_primary.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    picker.await.unwrap();
    listener.abort();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "failover figures (down-after-milliseconds {}, heartbeat 1s, TTL {TTL_MS}ms):",
        DOWN_AFTER.as_millis()
    );
    println!(
        "  new primary named by the sentinels: {:.0} ms after kill -9",
        ms(promoted - killed)
    );
    println!(
        "  both providers in the new primary's hash: {:.0} ms",
        ms(in_hash - killed)
    );
    println!(
        "  both providers renewed on the new primary: {:.0} ms",
        ms(renewed - killed)
    );
    for (n, from, registered, seen) in &probe_times {
        println!(
            "  probe {n}: registration started {:.0} ms after kill, took {:.0} ms; the watcher had it {:.0} ms after kill",
            ms(*from - killed),
            ms(*registered - *from),
            ms(*seen - killed),
        );
    }
    println!(
        "  picks: {} in all, {} failed, {} saw an empty table",
        picks.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        empty.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed picks");
    assert_eq!(empty.load(Ordering::Relaxed), 0, "the table was empty");
    drop((registrations, probes));
}

#[test]
fn bad_sentinel_settings_are_named_and_exit_nonzero() {
    let set = SentinelSet::start();
    let plain = support::RedisServer::start();
    let configs = [
        (vec![("GOSD_REDIS_SENTINELS", "")], "GOSD_REDIS_SENTINELS"),
        (
            vec![("GOSD_REDIS_SENTINELS", ",, ,"), ("GOSD_REDIS_MASTER", "m")],
            "GOSD_REDIS_SENTINELS",
        ),
        (
            vec![
                ("GOSD_REDIS_SENTINELS", "h:1,nohostport"),
                ("GOSD_REDIS_MASTER", "m"),
            ],
            "GOSD_REDIS_SENTINELS",
        ),
        (
            vec![("GOSD_REDIS_SENTINELS", "h:1")],
            "GOSD_REDIS_SENTINELS",
        ),
        (vec![("GOSD_REDIS_MASTER", "m")], "GOSD_REDIS_MASTER"),
        (
            vec![
                ("GOSD_REDIS_SENTINELS", "h:1"),
                ("GOSD_REDIS_MASTER", "two words"),
            ],
            "GOSD_REDIS_MASTER",
        ),
        (
            vec![
                ("GOSD_REDIS_SENTINELS", "h:1"),
                ("GOSD_REDIS_MASTER", "m"),
                ("GOSD_REDIS_ADDR", "h:2"),
            ],
            "GOSD_REDIS_ADDR",
        ),
        (
            vec![("GOSD_REDIS_SENTINEL_PASSWORD", "pw")],
            "GOSD_REDIS_SENTINEL_PASSWORD",
        ),
    ];
    for (vars, named) in configs {
        match gosd::Config::from_vars(vars.clone()) {
            Err(gosd::Error::Config { var, .. }) => assert_eq!(var, named, "{vars:?}"),
            other => panic!("{vars:?}: expected a config error, got {other:?}"),
        }
    }
    let list = set.list();
    let not_sentinels = plain.addr();
    for (env, expected) in [
        (
            vec![
                ("GOSD_REDIS_SENTINELS", list.as_str()),
                ("GOSD_REDIS_MASTER", "nosuchmaster"),
            ],
            "GOSD_REDIS_MASTER",
        ),
        (
            vec![("GOSD_REDIS_SENTINELS", ""), ("GOSD_REDIS_MASTER", MASTER)],
            "GOSD_REDIS_SENTINELS",
        ),
        (
            vec![
                ("GOSD_REDIS_SENTINELS", not_sentinels.as_str()),
                ("GOSD_REDIS_MASTER", MASTER),
            ],
            "GOSD_REDIS_SENTINELS names a server that is not a Redis Sentinel",
        ),
    ] {
        let out = std::process::Command::new(support::example("provider"))
            .args([":0", "1"])
            .env("gosdTryRefreshAmount", "1")
            .env("RUST_LOG", "off")
            .envs(env.clone())
            .output()
            .expect("run provider");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{env:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: no {expected:?} in {stderr}"
        );
        println!("{env:?}: {stderr}");
    }
}
