//! The client against a real redis-server: data model, Go gosd
//! compatibility, garbage, failures, fairness.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use gosd::{Client, Error};
use support::{RedisServer, client, config, eventually, free_port, registry};

#[tokio::test]
async fn registration_writes_go_gosd_layout_with_a_lease_beside_it() {
    let server = RedisServer::start();
    let c = client(&server).await;
    let me = c
        .register("provider", "http://localhost:3333")
        .await
        .unwrap();
    let all = registry(&server);
    assert_eq!(all.len(), 1);
    let (field, url) = &all[0];
    assert_eq!(*field, me.name());
    assert_eq!(url, "http://localhost:3333");
    // Go gosd parses the service as everything before the last '-'.
    let (service, id) = field.rsplit_once('-').unwrap();
    assert_eq!(service, "provider");
    assert!(
        id.len() == 23 && id.as_bytes()[14] == b'.',
        "Go-shaped id: {id}"
    );
    assert!(id.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    let lease: Option<f64> = redis::cmd("ZSCORE")
        .arg("{gosd}:leases")
        .arg(field)
        .query(&mut server.connection())
        .unwrap();
    assert!(lease.is_some(), "lease written beside the hash");
    me.finish().await.unwrap();
    assert!(registry(&server).is_empty(), "finish deregisters");
}

#[tokio::test]
async fn entries_written_by_go_gosd_are_discovered_and_never_reaped() {
    let server = RedisServer::start();
    server.write_raw(
        "provider-20160315122936.17256541",
        "http://go-provider:8080",
    );
    let c = client(&server).await;
    let route = c.iterate_service_route("provider").await.unwrap();
    assert_eq!(&*route, "http://go-provider:8080");
    // A registration of ours reaps expired leases; the lease-less Go entry stays.
    let mut short = config(&server);
    short.ttl = Duration::from_millis(200);
    short.heartbeat = Duration::from_millis(50);
    let other = Client::builder().config(short).build().await.unwrap();
    let me = other.register("provider", "http://rust:1").await.unwrap();
    c.get().await.unwrap();
    assert_eq!(c.routes("provider").len(), 2);
    drop(me);
    c.get().await.unwrap();
    assert_eq!(
        registry(&server),
        [(
            "provider-20160315122936.17256541".into(),
            "http://go-provider:8080".into()
        )]
    );
}

#[tokio::test]
async fn garbage_entries_are_skipped() {
    let server = RedisServer::start();
    server.write_raw("nodash", "http://x:1");
    server.write_raw("bad-1", "not a url");
    server.write_raw("empty-1", "");
    server.write_raw("-1", "http://y:1");
    server.write_raw("svc-", "http://z:1");
    server.write_raw("good-1", "http://ok:1");
    let c = client(&server).await;
    assert_eq!(c.services(), ["good"]);
    assert_eq!(
        &*c.iterate_service_route("good").await.unwrap(),
        "http://ok:1"
    );
    assert!(matches!(c.iterate_service_route("bad").await, Err(Error::NoRoute(s)) if s == "bad"));
}

#[tokio::test]
async fn a_wrong_key_type_is_an_error_not_a_panic() {
    let server = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("gosd")
        .arg("oops")
        .query(&mut server.connection())
        .unwrap();
    let r = Client::builder().config(config(&server)).build().await;
    assert!(matches!(r, Err(Error::Driver(_))), "{r:?}");
}

#[tokio::test]
async fn redis_down_at_start_names_the_address() {
    let port = free_port();
    let mut c = gosd::Config::default();
    c.redis.addr = Some(format!("127.0.0.1:{port}"));
    c.try_refresh_amount = 2;
    let err = Client::builder().config(c).build().await.unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_table() {
    let mut server = RedisServer::start();
    server.write_raw("provider-1", "http://a:1");
    let c = client(&server).await;
    server.stop();
    assert!(matches!(c.get().await, Err(Error::Unreachable { .. })));
    assert_eq!(
        &*c.iterate_service_route("provider").await.unwrap(),
        "http://a:1"
    );
}

/// Eight threads pick at once, on a multi-thread runtime. Each thread
/// rotates strictly (its own cursor, see `src/rotation.rs`); across
/// threads, each thread's count per instance is within one of its count
/// for any other, so the totals are within the number of threads of an
/// even split. (A shared cursor kept them within one, at the price of a
/// cache line moved between cores on every pick.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_fair_across_8_threads_and_100k_picks() {
    const THREADS: usize = 8;
    const PICKS: usize = 12_500;
    let server = RedisServer::start();
    let mut registrations = Vec::new();
    for i in 0..3 {
        let p = client(&server).await;
        registrations.push(
            p.register("provider", &format!("http://p{i}:1"))
                .await
                .unwrap(),
        );
    }
    let c = client(&server).await;
    eventually("3 routes", || c.routes("provider").len() == 3).await;
    let runtime = tokio::runtime::Handle::current();
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (c, runtime, start) = (c.clone(), runtime.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let picks: Vec<String> = (0..PICKS)
                    .map(|_| {
                        runtime
                            .block_on(c.iterate_service_route("provider"))
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                picks
            })
        })
        .collect();
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in threads {
        let picks = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        for (i, url) in picks.iter().enumerate().skip(3) {
            assert_eq!(
                url,
                &picks[i - 3],
                "pick {i} of a thread: not strict round-robin"
            );
        }
        for url in picks {
            *total.entry(url).or_default() += 1;
        }
    }
    assert_eq!(total.len(), 3);
    assert_eq!(total.values().sum::<usize>(), THREADS * PICKS);
    let even = THREADS * PICKS / 3;
    let (lo, hi) = (even - THREADS, even + THREADS);
    for (url, n) in &total {
        assert!(
            (lo..=hi).contains(n),
            "{url}: {n} picks, expected {lo}..={hi}"
        );
    }
}

#[tokio::test]
async fn delete_service_with_url_cannot_take_out_a_healthy_provider() {
    let server = RedisServer::start();
    let p = client(&server).await;
    let _me = p.register("provider", "http://healthy:1").await.unwrap();
    server.write_raw("provider-20160315122936.1", "http://stale:1");
    // No push subscription: its first whole read, landing at any moment
    // after build, would bring the live instance back (as it should), and
    // this test is about what the delete itself does.
    let mut quiet = config(&server);
    quiet.watch = false;
    let c = Client::builder().config(quiet).build().await.unwrap();
    assert_eq!(c.routes("provider").len(), 2);

    c.delete_service_with_url("http://healthy:1").await.unwrap();
    assert_eq!(
        c.routes("provider")
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        ["http://stale:1"]
    );
    assert_eq!(
        registry(&server).len(),
        2,
        "a live lease stays in the registry"
    );

    c.delete_service_with_url("http://stale:1").await.unwrap();
    assert_eq!(
        registry(&server).len(),
        1,
        "the lease-less entry is gone from the registry"
    );
    c.get().await.unwrap();
    assert_eq!(
        c.routes("provider")
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        ["http://healthy:1"]
    );
}

#[tokio::test]
async fn manual_routes_survive_refreshes() {
    let server = RedisServer::start();
    let c = client(&server).await;
    c.add_service_manually("legacy", "http://legacy:9").unwrap();
    c.get().await.unwrap();
    assert_eq!(
        &*c.iterate_service_route("legacy").await.unwrap(),
        "http://legacy:9"
    );
    assert!(matches!(
        c.add_service_manually("legacy", "nope"),
        Err(Error::InvalidUrl { .. })
    ));
    assert!(matches!(
        c.add_service_manually("bad name", "http://a"),
        Err(Error::InvalidName { .. })
    ));
    assert!(registry(&server).is_empty(), "manual routes stay local");
}

#[tokio::test]
async fn bad_names_and_urls_are_refused_before_touching_redis() {
    let server = RedisServer::start();
    let c = client(&server).await;
    assert!(matches!(
        c.register("", "http://a:1").await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        c.register("svc", "http://localhost:fake").await,
        Err(Error::InvalidUrl { .. })
    ));
    assert!(registry(&server).is_empty());
    let _me = c.register("svc", "http://a:1").await.unwrap();
    assert!(matches!(
        c.register("svc", "http://a:2").await,
        Err(Error::AlreadyRegistered(_))
    ));
}

#[tokio::test]
async fn heartbeat_registers_again_after_redis_lost_everything() {
    let server = RedisServer::start();
    let mut fast = config(&server);
    fast.ttl = Duration::from_secs(2);
    fast.heartbeat = Duration::from_millis(100);
    let p = Client::builder().config(fast).build().await.unwrap();
    let me = p.register("provider", "http://a:1").await.unwrap();
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut server.connection())
        .unwrap();
    eventually("the heartbeat restores the entry", || {
        registry(&server) == [(me.name().to_owned(), "http://a:1".to_owned())]
    })
    .await;
}

/// Another URL takes this instance's name: the heartbeat registers again
/// under a new name, and the `Registration` names the new one.
#[tokio::test]
async fn after_a_name_conflict_the_registration_shows_its_new_name() {
    let server = RedisServer::start();
    let mut fast = config(&server);
    fast.heartbeat = Duration::from_millis(100);
    let p = Client::builder().config(fast).build().await.unwrap();
    let me = p.register("provider", "http://a:1").await.unwrap();
    let old = me.name();
    server.write_raw(&old, "http://intruder:1");
    let renamed = || {
        registry(&server)
            .into_iter()
            .find(|(f, u)| *f != old && u == "http://a:1")
            .map(|(f, _)| f)
    };
    // The registry holds the new name a moment before the heartbeat has
    // stored it: wait for both, then every view must agree.
    eventually("registered again under a new name, and told", || {
        renamed().is_some_and(|new| me.name() == new)
    })
    .await;
    let new = renamed().unwrap();
    assert_eq!(me.name(), new);
    assert_eq!(me.to_string(), new);
    assert_eq!(p.instance_name(), Some(new.clone()));
    assert_eq!(me.service(), "provider");
    me.finish().await.unwrap();
    assert_eq!(
        registry(&server),
        [(old, "http://intruder:1".to_owned())],
        "finish removes the new name and leaves the intruder alone"
    );
}

#[tokio::test]
async fn update_by_cron_refreshes_once_per_tick_in_the_background() {
    let server = RedisServer::start();
    let mut every_second = config(&server);
    every_second.cron = Some("* * * * * *".parse().unwrap());
    let c = Client::builder()
        .config(every_second)
        .build()
        .await
        .unwrap();
    server.write_raw("late-1", "http://late:1");
    eventually("a cron tick brings the new entry in", || {
        c.update_by_cron();
        !c.routes("late").is_empty()
    })
    .await;
}

#[tokio::test]
async fn concurrent_registers_on_one_client_give_one_registration() {
    let server = RedisServer::start();
    let c = client(&server).await;
    let (a, b) = tokio::join!(
        c.register("svc", "http://a:1"),
        c.register("svc", "http://a:1")
    );
    let ok = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{a:?} {b:?}");
    assert!(matches!(
        a.as_ref().err().or(b.as_ref().err()),
        Some(Error::AlreadyRegistered(_))
    ));
    assert_eq!(registry(&server).len(), 1, "no orphaned second entry");
}

#[tokio::test]
async fn finish_completes_even_if_the_caller_stops_waiting() {
    let server = RedisServer::start();
    let c = client(&server).await;
    let _me = c.register("svc", "http://a:1").await.unwrap();
    let _ = tokio::time::timeout(Duration::ZERO, c.finish()).await; // cancelled at its first await
    eventually("deregistered anyway", || registry(&server).is_empty()).await;
}

#[tokio::test]
async fn a_config_set_in_code_is_validated_too() {
    let mut bad = gosd::Config::default();
    bad.heartbeat = Duration::ZERO;
    let err = Client::builder()
        .config(bad)
        .driver(gosd::MemoryDriver::new())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { var, .. } if var == "GOSD_HEARTBEAT"),
        "{err:?}"
    );
}
