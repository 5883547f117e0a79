//! gosd on a Redis Cluster (3 primaries, 3 replicas), through (a) a
//! migration of the gosd slot to another primary and (b) `kill -9` of the
//! slot's primary, its replica taking over. In both, 2 providers
//! heartbeat, a consumer picks in a loop and a client watches: no failed
//! pick, no empty table, every live instance renewed on the new owner,
//! and pushes flowing again. The test prints how long each took (figures
//! in BENCHMARKS.md); it asserts only what must hold.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gosd::Change;
use support::cluster::{ClusterSet, NODE_TIMEOUT};
use support::{PATIENCE, free_port};

/// Longer than the failover (a node timeout, an election) plus a
/// heartbeat: a lease that ran out while the slot had no primary would be
/// reaped on the new one.
const TTL_MS: u64 = 5000;

fn config(set: &ClusterSet) -> gosd::Config {
    let mut c = gosd::Config::from_vars([
        ("GOSD_REDIS_CLUSTER", set.list()),
        ("GOSD_TTL", format!("{TTL_MS}ms")),
        ("GOSD_HEARTBEAT", "1s".to_owned()),
        ("GOSD_CRON", "off".to_owned()),
    ])
    .expect("Cluster settings");
    c.try_refresh_amount = 30;
    c
}

async fn client(set: &ClusterSet) -> gosd::Client {
    gosd::Client::builder()
        .config(config(set))
        .handle_signals(false)
        .build()
        .await
        .expect("client on the cluster")
}

/// Field, URL and lease expiry (ms, Redis clock) of every entry on the
/// node at `port`, read without following redirects.
fn leases(set: &ClusterSet, port: u16) -> Option<Vec<(String, String, u64)>> {
    let mut conn = set.conn(port)?;
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

fn redis_now_ms(set: &ClusterSet, port: u16) -> u64 {
    let mut conn = set.conn(port).expect("connect");
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

/// What happens to the slot's primary during the run.
enum Disruption {
    /// Its slot moves to another primary.
    Migrate,
    /// It is killed; its replica takes over.
    Kill,
}

async fn run(disruption: Disruption) {
    let mut set = ClusterSet::start();
    let slot = set.slot("gosd");
    let old = set.owner(slot).expect("the gosd slot has an owner");
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

    // The consumer picks every millisecond, from before the disruption to
    // the end.
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

    tokio::time::sleep(Duration::from_millis(200)).await; // picks before the disruption
    let (started, label) = match disruption {
        Disruption::Migrate => {
            let to = set
                .primaries()
                .into_iter()
                .find(|p| *p != old)
                .expect("another primary");
            let started = Instant::now();
            let from_ms = redis_now_ms(&set, old);
            // Blocking: run it off the runtime, beside the heartbeats.
            set = tokio::task::spawn_blocking(move || {
                set.migrate(slot, old, to);
                set
            })
            .await
            .expect("migration");
            println!(
                "migration of slot {slot} from :{old} to :{to} took {:.0} ms",
                (Instant::now() - started).as_secs_f64() * 1000.0
            );
            ((started, from_ms), "migration start")
        }
        Disruption::Kill => {
            let replica_port = set
                .nodes
                .iter()
                .map(|n| n.port())
                .find(|p| *p != old)
                .expect("another node");
            set.kill(old);
            let killed = Instant::now();
            ((killed, redis_now_ms(&set, replica_port)), "kill -9")
        }
    };
    let (started, started_ms) = started;

    let moved = until("a new primary for the gosd slot", || {
        set.owner(slot).is_some_and(|p| p != old)
    })
    .await;
    let new = set.owner(slot).expect("a new owner");
    let set = Arc::new(set);
    // From here, in the background: when both providers are in the new
    // owner's hash, and when both have renewed there (a lease that runs
    // past the disruption by more than a TTL was written after it).
    let on_new_owner = {
        let (urls, set) = (urls.clone(), set.clone());
        tokio::spawn(async move {
            let in_hash = until("both providers in the new owner's hash", || {
                leases(&set, new)
                    .is_some_and(|l| urls.iter().all(|u| l.iter().any(|(_, url, _)| url == u)))
            })
            .await;
            let renewed = until("both providers renewed on the new owner", || {
                leases(&set, new).is_some_and(|l| {
                    urls.iter().all(|u| {
                        l.iter()
                            .any(|(_, url, expiry)| url == u && *expiry > started_ms + TTL_MS)
                    })
                })
            })
            .await;
            (in_hash, renewed)
        })
    };

    // Pushes: an instance registered as soon as the slot has its new
    // owner reaches the watcher; a second one measures the push alone.
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
    let (in_hash, renewed) = on_new_owner.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    picker.await.unwrap();
    listener.abort();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cluster figures after {label} (cluster-node-timeout {} ms, heartbeat 1s, TTL {TTL_MS}ms):",
        NODE_TIMEOUT.as_millis()
    );
    println!(
        "  every node routes the slot to its new primary (:{new}): {:.0} ms after {label}",
        ms(moved - started)
    );
    println!(
        "  both providers in the new owner's hash: {:.0} ms",
        ms(in_hash - started)
    );
    println!(
        "  both providers renewed on the new owner: {:.0} ms",
        ms(renewed - started)
    );
    for (n, from, registered, seen) in &probe_times {
        println!(
            "  probe {n}: registration started {:.0} ms after {label}, took {:.0} ms; the watcher had it {:.0} ms after {label}",
            ms(*from - started),
            ms(*registered - *from),
            ms(*seen - started),
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
    drop((registrations, probes, providers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_loses_no_pick_no_instance_and_no_push() {
    run(Disruption::Migrate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_failover_loses_no_pick_no_instance_and_no_push() {
    run(Disruption::Kill).await;
}

#[test]
fn bad_cluster_settings_are_named_and_exit_nonzero() {
    let configs = [
        vec![("GOSD_REDIS_CLUSTER", "")],
        vec![("GOSD_REDIS_CLUSTER", ",, ,")],
        vec![("GOSD_REDIS_CLUSTER", "h:1,nohostport")],
        vec![("GOSD_REDIS_CLUSTER", "h:1,h:99999")],
        vec![
            ("GOSD_REDIS_CLUSTER", "h:1"),
            ("GOSD_REDIS_SENTINELS", "h:2"),
            ("GOSD_REDIS_MASTER", "m"),
        ],
        vec![("GOSD_REDIS_CLUSTER", "h:1"), ("GOSD_REDIS_DB", "1")],
        vec![
            ("GOSD_REDIS_CLUSTER", "h:1"),
            ("GOSD_REDIS_URL", "redis://:hunter2@h:2/3"),
        ],
    ];
    for vars in configs {
        match gosd::Config::from_vars(vars.clone()) {
            Err(e @ gosd::Error::Config { .. }) => {
                let gosd::Error::Config { var, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(var, "GOSD_REDIS_CLUSTER", "{vars:?}: {e}");
                assert!(!e.to_string().contains("hunter2"), "{e}");
                println!("{vars:?}: {e}");
            }
            other => panic!("{vars:?}: expected a config error, got {other:?}"),
        }
    }
    match gosd::Config::from_vars([("GOSD_REDIS_CLUSTER", "h:1"), ("GOSD_REDIS_ADDR", "h:2")]) {
        Err(gosd::Error::Config { var, .. }) => assert_eq!(var, "GOSD_REDIS_ADDR"),
        other => panic!("expected a config error, got {other:?}"),
    }

    // A server that is not in cluster mode, and nodes that do not answer.
    let plain = support::RedisServer::start();
    let nobody = format!("127.0.0.1:{}", free_port());
    for (list, expected) in [
        (
            plain.addr(),
            "GOSD_REDIS_CLUSTER names a server that is not in cluster mode",
        ),
        (nobody.clone(), nobody.as_str()),
        (String::new(), "GOSD_REDIS_CLUSTER"),
    ] {
        let out = std::process::Command::new(support::example("provider"))
            .args([":0", "1"])
            .env("gosdTryRefreshAmount", "1")
            .env("RUST_LOG", "off")
            .env("GOSD_REDIS_CLUSTER", &list)
            .output()
            .expect("run provider");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{list:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{list:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{list:?}: no {expected:?} in {stderr}"
        );
        println!("{list:?}: {stderr}");
    }
}
