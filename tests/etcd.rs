//! gosd end to end on a real etcd: the examples unchanged with
//! `GOSD_DRIVER=etcd`, crashes, signals and an etcd that loses its data.

mod support;

use std::time::{Duration, Instant};

use gosd::driver::Driver;
use support::{EtcdServer, Proc, etcd_config, etcd_env, routes_become};

fn env_of(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn client(server: &EtcdServer) -> gosd::Client {
    gosd::Client::builder()
        .config(etcd_config(server))
        .build()
        .await
        .expect("client")
}

/// The registry's fields, straight from etcd through a driver of our own.
async fn registry(server: &EtcdServer) -> Vec<String> {
    let d = gosd::EtcdDriver::new(
        gosd::EtcdOptions::new([server.endpoint()], "/gosd").expect("options"),
    );
    let mut fields: Vec<String> = d
        .snapshot()
        .await
        .expect("snapshot")
        .entries
        .into_iter()
        .map(|e| e.field)
        .collect();
    fields.sort();
    fields
}

#[test]
fn two_providers_and_a_consumer_alternate_on_etcd() {
    let server = EtcdServer::start();
    let env = etcd_env(&server);
    let env = env_of(&env);
    let (_p1, _, _) = Proc::provider_with("1", &env);
    let (_p2, _, _) = Proc::provider_with("2", &env);
    let mut consumer = Proc::spawn_with("consumer", &["10"], &env);
    assert_eq!(consumer.wait(), Some(0));
    let lines = consumer.lines();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {lines:?}");
    }
    for n in ["1", "2"] {
        let from_n = lines
            .iter()
            .filter(|l| **l == format!("\"Provider: {n}\""))
            .count();
        assert_eq!(from_n, 5, "{lines:?}");
    }
}

#[test]
fn the_watch_example_follows_a_provider_on_etcd() {
    let server = EtcdServer::start();
    let env = etcd_env(&server);
    let env = env_of(&env);
    let mut watch = Proc::spawn_with("watch", &["provider"], &env);
    let first = watch.next_line().expect("watch prints the current list");
    assert!(first.ends_with(" 0"), "{first:?}");
    let (mut p, _, url) = Proc::provider_with("1", &env);
    let seen = watch.next_line().expect("watch prints the provider");
    assert!(seen.ends_with(&format!(" 1 {url}")), "{seen:?}");
    p.signal("TERM");
    assert_eq!(p.wait(), Some(143));
    let gone = watch.next_line().expect("watch prints the departure");
    assert!(gone.ends_with(" 0"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_from_etcd_before_exit() {
    let server = EtcdServer::start();
    let env = etcd_env(&server);
    let (mut p, name, _) = Proc::provider_with("1", &env_of(&env));
    assert_eq!(registry(&server).await, vec![name.clone()]);
    p.signal("TERM");
    assert_eq!(p.wait(), Some(143));
    assert!(
        registry(&server).await.is_empty(),
        "deregistered before exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_provider_leaves_a_watching_client_when_its_lease_ends() {
    let server = EtcdServer::start();
    let consumer = client(&server).await; // cron off: the pushed expiry must do it
    let env = etcd_env(&server);
    let mut env = env_of(&env);
    env.push(("GOSD_TTL", "1s"));
    let (mut p, name, url) = Proc::provider_with("1", &env);
    routes_become(&consumer, "provider", "the provider is seen", |r| {
        r.iter().any(|r| r.to_string() == url)
    })
    .await;

    p.child.kill().unwrap(); // SIGKILL: nothing runs in the provider
    let killed = Instant::now();
    p.child.wait().unwrap();
    routes_become(&consumer, "provider", "evicted by the lease", |r| {
        r.is_empty()
    })
    .await;
    let took = killed.elapsed();
    assert!(!registry(&server).await.contains(&name), "gone from etcd");
    eprintln!("kill -9 -> gone from a watching client in {took:?} (TTL 1s, etcd lease)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_registers_again_after_etcd_loses_its_data() {
    let mut server = EtcdServer::start();
    let env = etcd_env(&server);
    let mut env = env_of(&env);
    env.push(("GOSD_TTL", "2s"));
    let (_p, name, _) = Proc::provider_with("1", &env);
    assert_eq!(registry(&server).await, vec![name.clone()]);

    server.restart_empty(); // keys and leases gone, same address
    let restored = eventually_async("the provider is back in etcd", async || {
        registry(&server).await == [name.clone()]
    })
    .await;
    eprintln!("etcd restarted empty -> provider back after {restored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_table_while_etcd_is_down() {
    let mut server = EtcdServer::start();
    let consumer = client(&server).await;
    let env = etcd_env(&server);
    let (_p, _, url) = Proc::provider_with("1", &env_of(&env));
    routes_become(&consumer, "provider", "the provider is seen", |r| {
        r.iter().any(|r| r.to_string() == url)
    })
    .await;
    server.stop();
    assert!(
        consumer.get().await.is_err(),
        "a refresh with etcd down fails"
    );
    assert_eq!(
        consumer
            .iterate_service_route("provider")
            .await
            .unwrap()
            .to_string(),
        url,
        "the last good table is kept"
    );
}

/// Polls an async condition every 10 ms until it holds; panics after
/// [`support::PATIENCE`]. For state in another process, which offers no
/// event to await.
async fn eventually_async(what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < support::PATIENCE,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Issue 22, build item 1, for etcd: the registry's own stall must not
/// count against a lease. etcd's lessor keeps the leases, not gosd's
/// scripts, so this shows what etcd does: a single member frozen with
/// `kill -STOP` for 3 TTLs, then resumed, while a provider keeps
/// renewing. Asserted: no DELETE under the prefix (an `etcdctl watch`
/// process records every event), and the entry is there afterwards.
///
/// It does not hold (FAULTS.md): etcd 3.4 extends leases when a new leader
/// takes over, not when a single member resumes from a pause, so the
/// lease is revoked on resume and the heartbeat writes the entry back.
/// Ignored, with that reason, until the etcd driver handles it.
#[test]
#[ignore = "etcd revokes the lease when a frozen single member resumes (FAULTS.md)"]
fn a_frozen_etcd_member_evicts_nobody_on_resume() {
    let server = EtcdServer::start();
    let pairs = etcd_env(&server);
    let mut env = env_of(&pairs);
    env.push(("GOSD_TTL", "2s"));
    let (_p, name, _) = Proc::provider_with("1", &env);
    let watch = std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &server.endpoint(),
            "watch",
            "--prefix",
            "/gosd",
        ])
        .env("ETCDCTL_API", "3")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl is installed with etcd");
    let mut watch = Proc::from_child(watch);
    // The watch is live once it shows a write made after it started.
    let marker = "/gosd-faults-marker";
    loop {
        let put = std::process::Command::new("etcdctl")
            .args(["--endpoints", &server.endpoint(), "put", marker, "x"])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl put");
        assert!(put.status.success());
        if watch.next_line().is_some_and(|line| line == "PUT") {
            break;
        }
    }
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &server.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    };
    stop("STOP");
    std::thread::sleep(Duration::from_secs(6)); // the fault: 3 TTLs frozen
    stop("CONT");
    // Two TTLs after the resume: any revocation has happened by then.
    std::thread::sleep(Duration::from_secs(4));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fields = rt.block_on(registry(&server));
    let events = watch.ready_lines();
    assert!(
        events.iter().all(|l| l != "DELETE"),
        "the lease was revoked on resume: {events:?}"
    );
    assert!(fields.contains(&name), "{fields:?}");
}

/// Status and weights on etcd: a draining provider leaves a watching
/// consumer's picks (pushed as one put of the entry and its sibling
/// metadata key) and comes back; weights 1:3 split the picks 1:3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_weights_reach_a_watching_consumer_on_etcd() {
    let server = EtcdServer::start();
    let provider = |weight: &'static str| {
        let config = etcd_config(&server);
        async move {
            gosd::Client::builder()
                .config(config)
                .metadata("weight", weight)
                .build()
                .await
                .expect("provider")
        }
    };
    let (light, heavy) = (provider("1").await, provider("3").await);
    let _l = light.register("w", "http://light:1").await.unwrap();
    let h = heavy.register("w", "http://heavy:1").await.unwrap();
    let c = client(&server).await;
    routes_become(&c, "w", "both", |r| r.len() == 2).await;
    let picks = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| c.next_route("w").unwrap().to_string())
            .collect()
    };
    let split = picks(400);
    assert_eq!(split.iter().filter(|p| *p == "http://light:1").count(), 100);
    h.set_status(gosd::Status::Draining).await.unwrap();
    let mut changes = c.changes();
    tokio::time::timeout(support::PATIENCE, async {
        loop {
            changes.borrow_and_update();
            if picks(8).iter().all(|p| p == "http://light:1") {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the draining one leaves the picks");
    let meta = c
        .instances()
        .into_iter()
        .find(|i| i.name == h.name())
        .map(|i| i.meta);
    assert_eq!(
        meta.as_ref().map(|m| m.status),
        Some(gosd::Status::Draining)
    );
    assert_eq!(meta.as_ref().and_then(|m| m.get("weight")), Some("3"));
    h.set_status(gosd::Status::Up).await.unwrap();
    routes_become(&c, "w", "heavy back", |_| {
        picks(4).iter().any(|p| p == "http://heavy:1")
    })
    .await;
}
