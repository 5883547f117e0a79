//! gosd-registrar against a real engine (Podman's Docker-compatible API),
//! a real redis-server, real containers serving HTTP, gosd consumers and
//! gosd-router.

mod support;

use std::time::{Duration, Instant};

use gosd::Status;
use gosd_router::{Router, RouterConfig};
use support::{
    Engine, LONG_TTL, RedisServer, Registrar, consumer, consumer_in, consumer_sees, entry,
    eventually, http_get, registry, registry_becomes, stored_meta, stored_meta_becomes,
};

const PROVIDER: &[(&str, &str)] = &[("gosd.service", "provider"), ("gosd.port", "8080")];

/// [`PROVIDER`]'s labels and these.
fn provider_with(more: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    PROVIDER.iter().chain(more).copied().collect()
}

/// `n` picks of the provider service by `consumer`, as URLs.
fn picks(consumer: &gosd::Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            consumer
                .next_route("provider")
                .expect("a route")
                .to_string()
        })
        .collect()
}

/// The status `consumer`'s table has for instance `name`.
fn status_seen(consumer: &gosd::Client, name: &str) -> Option<Status> {
    consumer
        .instances()
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| i.meta.status)
}

/// [`http_get`] off the runtime's threads.
async fn get(url: String) -> Option<String> {
    tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .expect("http_get")
}

/// Two providers serving "Provider: 1" and "Provider: 2"; their entries.
fn two_providers(engine: &Engine) -> [(String, String); 2] {
    let one = engine.serve("provider1", PROVIDER, "Provider: 1");
    let two = engine.serve("provider2", PROVIDER, "Provider: 2");
    [
        entry("provider", &one, &engine.ip("provider1")),
        entry("provider", &two, &engine.ip("provider2")),
    ]
}

/// Four bodies in a row alternate between the two providers.
fn assert_alternates(bodies: &[String]) {
    assert_eq!(bodies.len(), 4);
    let mut distinct = bodies.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, ["Provider: 1", "Provider: 2"], "{bodies:?}");
    assert!(
        bodies[0] != bodies[1] && bodies[0] == bodies[2] && bodies[1] == bodies[3],
        "not alternating: {bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_two_containers_a_consumer_alternates_and_the_router_routes() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let entries = two_providers(&engine);
    let _registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, &entries).await;

    let consumer = consumer(&redis).await;
    eventually("the consumer sees both", || {
        consumer.routes("provider").len() == 2
    })
    .await;
    for (_, url) in &entries {
        // httpd may still be starting when the container is registered.
        let started = Instant::now();
        while get(format!("{url}/")).await.is_none() {
            assert!(started.elapsed() < support::PATIENCE, "{url} never served");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Four picks in a row on one thread (round-robin is strict per thread,
    // and this multi-thread test's task may move between awaits).
    let urls: Vec<_> = (0..4)
        .map(|_| consumer.next_route("provider").expect("a route"))
        .collect();
    let mut bodies = Vec::new();
    for url in urls {
        bodies.push(get(format!("{url}/")).await.expect("a body"));
    }
    assert_alternates(&bodies);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        Router::new(consumer.clone(), RouterConfig::default()).serve(listener, async move {
            let _ = stopped.await;
        }),
    );
    // Each request is served on whichever worker thread accepts it, and
    // round-robin is strict per thread: over 20, each worker's split is
    // even within one, so the whole within one per worker (2).
    let mut bodies = Vec::new();
    for _ in 0..20 {
        bodies.push(
            get(format!("http://{addr}/provider/"))
                .await
                .expect("the router's answer"),
        );
    }
    let ones = bodies.iter().filter(|b| *b == "Provider: 1").count();
    let twos = bodies.iter().filter(|b| *b == "Provider: 2").count();
    assert_eq!(ones + twos, 20, "{bodies:?}");
    assert!(ones.abs_diff(twos) <= 2, "not spread: {bodies:?}");
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_kill_removes_the_entry_from_the_event_not_the_ttl() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let [one, two] = two_providers(&engine);
    // A 60 s lease: longer than the test waits, so only the kill event can
    // take the entry out.
    let registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, &[one.clone(), two.clone()]).await;
    let consumer = consumer(&redis).await;
    eventually("the consumer sees both", || {
        consumer.routes("provider").len() == 2
    })
    .await;

    engine.run_podman(&["kill", "provider1"]);
    let killed = Instant::now();
    registry_becomes(&redis, std::slice::from_ref(&two)).await;
    let in_registry = killed.elapsed();
    eventually("the consumer drops it", || {
        consumer
            .routes("provider")
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            == [two.1.clone()]
    })
    .await;
    let in_table = killed.elapsed();
    eprintln!(
        "podman kill returned → entry gone from Redis after {in_registry:?}, from the consumer's table after {in_table:?} (TTL {LONG_TTL})"
    );
    assert_eq!(
        registrar.count(&["deregistered", &one.0, "stopped serving"]),
        1,
        "removed because of the event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_registrar_leaves_its_entries_to_expire_within_the_ttl() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let entries = two_providers(&engine);
    let mut registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", "1s")]);
    registry_becomes(&redis, &entries).await;
    let consumer = consumer(&redis).await;
    eventually("the consumer sees both", || {
        consumer.routes("provider").len() == 2
    })
    .await;
    // The registrar renews the leases: one's time left goes up again.
    let name = &entries[0].0;
    let left = |leases: std::collections::HashMap<String, Duration>| leases.get(name).copied();
    let first = left(consumer.leases().await.unwrap()).expect("a lease");
    let started = Instant::now();
    while left(consumer.leases().await.unwrap()).expect("a lease") <= first {
        assert!(
            started.elapsed() < support::PATIENCE,
            "the lease was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    registrar.kill_9();
    let killed = Instant::now();
    eventually("the consumer's table empties as the leases run out", || {
        consumer.routes("provider").is_empty()
    })
    .await;
    eprintln!(
        "kill -9 → both gone from the consumer's table after {:?} (TTL 1 s)",
        killed.elapsed()
    );
    assert!(
        engine.running("provider1") && engine.running("provider2"),
        "the containers still run: only the leases explain it"
    );
    assert_eq!(registry(&redis), [], "reaped from Redis too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_registrar_reconciles_what_changed_while_it_was_down() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let [one, two] = two_providers(&engine);
    let mut first = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, &[one.clone(), two.clone()]).await;
    first.kill_9();

    // While no registrar runs: one container dies, another starts.
    engine.run_podman(&["kill", "provider1"]);
    let three = engine.serve("provider3", PROVIDER, "Provider: 3");
    let three = entry("provider", &three, &engine.ip("provider3"));
    let mut before = vec![one.clone(), two.clone()];
    before.sort();
    assert_eq!(
        registry(&redis),
        before,
        "nothing changed the registry meanwhile"
    );

    let second = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, &[two.clone(), three]).await;
    assert_eq!(
        second.count(&["deregistered", &one.0, "earlier run"]),
        1,
        "the dead container's entry was removed by the reconciliation, not its 60 s lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlabelled_containers_are_ignored_and_a_bad_label_is_warned_about_once() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let good = engine.serve("good", PROVIDER, "good");
    let good = entry("provider", &good, &engine.ip("good"));
    engine.serve("plain", &[], "unlabelled");
    engine.serve(
        "badport",
        &[("gosd.service", "provider"), ("gosd.port", "http")],
        "x",
    );
    engine.serve("noport", &[("gosd.service", "provider")], "x");
    engine.serve(
        "badname",
        &[("gosd.service", "bad name"), ("gosd.port", "8080")],
        "x",
    );
    let registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, std::slice::from_ref(&good)).await;
    registrar.wait_for(1, &["reconciled"]).await;
    for (container, says) in [
        ("badport", "gosd.port=\"http\""),
        ("noport", "gosd.port"),
        ("badname", "gosd.service=\"bad name\""),
    ] {
        assert_eq!(
            registrar.count(&["WARN", "skipped", says, &format!("container={container} (")]),
            1,
            "one warning naming {container}"
        );
    }
    assert_eq!(
        registrar.count(&["plain"]),
        0,
        "an unlabelled container is not ours to mention"
    );

    // A bad container started later is warned about from its event, once;
    // one restarted is not warned about again.
    engine.serve(
        "badlate",
        &[("gosd.service", "provider"), ("gosd.port", "0")],
        "x",
    );
    engine.run_podman(&["restart", "--time", "0", "badport"]);
    // Events are handled in order: once this one is registered, the ones
    // before it have been handled.
    let sentinel = engine.serve("sentinel", PROVIDER, "sentinel");
    let sentinel = entry("provider", &sentinel, &engine.ip("sentinel"));
    registry_becomes(&redis, &[good, sentinel]).await;
    assert_eq!(
        registrar.count(&["WARN", "skipped", "container=badlate ("]),
        1
    );
    assert_eq!(
        registrar.count(&["WARN", "skipped", "container=badport ("]),
        1
    );
    assert_eq!(registrar.count(&["WARN"]), 4, "no other warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_is_logged_once_each_way_and_reconciled() {
    let mut engine = Engine::start();
    let redis = RedisServer::start();
    let [one, two] = two_providers(&engine);
    let registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    registry_becomes(&redis, &[one.clone(), two.clone()]).await;
    registrar.wait_for(1, &["reconciled"]).await;

    engine.stop_service();
    registrar.wait_for(1, &["container engine lost"]).await;
    // Retried, with backoff, without another "lost".
    registrar
        .wait_for(3, &["container engine still unreachable"])
        .await;
    // While the API is down (the containers run on): one dies, one starts.
    engine.run_podman(&["kill", "provider1"]);
    let three = engine.serve("provider3", PROVIDER, "Provider: 3");
    let three = entry("provider", &three, &engine.ip("provider3"));

    engine.start_service();
    registrar.wait_for(1, &["container engine restored"]).await;
    registry_becomes(&redis, &[two, three]).await;
    assert_eq!(registrar.count(&["container engine lost"]), 1);
    assert_eq!(registrar.count(&["container engine restored"]), 1);
    assert_eq!(registrar.count(&["WARN", "registry lost"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_container_is_marked_down_consumers_avoid_it_and_healthy_marks_it_up() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let steady = engine.serve("steady", PROVIDER, "steady");
    let steady = entry("provider", &steady, &engine.ip("steady"));
    // Healthy while /www/ok exists. Podman runs health checks from systemd
    // timers, absent here: the test runs each check with `podman healthcheck run`.
    let id = engine.serve_with(
        "checked",
        PROVIDER,
        "checked",
        &[
            "--health-cmd",
            r#"["/bin/busybox","test","-f","/www/ok"]"#,
            "--health-interval",
            "0",
            "--health-retries",
            "1",
        ],
    );
    let checked = entry("provider", &id, &engine.ip("checked"));
    let mut both = vec![steady.clone(), checked.clone()];
    both.sort();
    let mut first = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    first.wait_for(1, &["reconciled", "registered=1"]).await;
    assert_eq!(
        registry(&redis),
        std::slice::from_ref(&steady),
        "health: starting is not serving yet"
    );

    engine.run_podman(&["exec", "checked", "/bin/busybox", "touch", "/www/ok"]);
    engine.run_podman(&["healthcheck", "run", "checked"]);
    registry_becomes(&redis, &both).await;
    assert_eq!(stored_meta(&redis, &checked.0), "", "up, no metadata");
    let consumer = consumer(&redis).await;
    consumer_sees(&consumer, "both up", |c| {
        status_seen(c, &checked.0) == Some(Status::Up) && c.routes("provider").len() == 2
    })
    .await;

    engine.run_podman(&["exec", "checked", "/bin/busybox", "rm", "/www/ok"]);
    // Exits 1: the check fails, as it should.
    let _ = engine
        .podman()
        .args(["healthcheck", "run", "checked"])
        .output();
    stored_meta_becomes(&redis, &checked.0, "down").await;
    assert_eq!(registry(&redis), both, "down keeps its entry and lease");
    consumer_sees(&consumer, "it is down", |c| {
        status_seen(c, &checked.0) == Some(Status::Down)
    })
    .await;
    assert_eq!(
        picks(&consumer, 4),
        vec![steady.1.clone(); 4],
        "picks avoid the down instance while another is up"
    );
    assert_eq!(
        first.count(&["status changed", &checked.0, "status=down"]),
        1
    );

    // A reconciliation (a registrar started again) holds it down, not absent.
    first.kill_9();
    let second = Registrar::start(&engine, &redis, &[("GOSD_TTL", LONG_TTL)]);
    second.wait_for(1, &["reconciled", "registered=2"]).await;
    assert_eq!(registry(&redis), both);
    assert_eq!(stored_meta(&redis, &checked.0), "down");

    engine.run_podman(&["exec", "checked", "/bin/busybox", "touch", "/www/ok"]);
    engine.run_podman(&["healthcheck", "run", "checked"]);
    stored_meta_becomes(&redis, &checked.0, "").await;
    consumer_sees(&consumer, "it is up again", |c| {
        status_seen(c, &checked.0) == Some(Status::Up)
    })
    .await;
    let mut picked = picks(&consumer, 4);
    picked.sort();
    picked.dedup();
    let mut urls = vec![steady.1.clone(), checked.1.clone()];
    urls.sort();
    assert_eq!(picked, urls, "picked again");
    assert!(engine.running("checked"));
    assert_eq!(second.count(&["deregistered"]), 0, "never removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_labels_are_the_instances_metadata_renewals_keep_it_and_a_bad_one_is_warned_once() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let tagged = engine.serve(
        "tagged",
        &provider_with(&[("gosd.meta.version", "2"), ("gosd.meta.zone", "z1")]),
        "tagged",
    );
    let tagged = entry("provider", &tagged, &engine.ip("tagged"));
    let plain = engine.serve("plain", PROVIDER, "plain");
    let plain = entry("provider", &plain, &engine.ip("plain"));
    engine.serve(
        "badmeta",
        &provider_with(&[("gosd.meta.weight", "0"), ("gosd.meta.team", "a b")]),
        "x",
    );
    // A short lease: renewals come every 333 ms.
    let registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", "1s")]);
    registry_becomes(&redis, &[tagged.clone(), plain.clone()]).await;
    registrar.wait_for(1, &["reconciled"]).await;
    assert_eq!(stored_meta(&redis, &tagged.0), "up,version=2,zone=z1");
    assert_eq!(stored_meta(&redis, &plain.0), "");
    let bad = registrar.count(&["WARN", "skipped", "container=badmeta ("]);
    assert_eq!(bad, 1, "one warning for the container");
    assert_eq!(
        registrar.count(&["WARN", "skipped", "container=badmeta (", "label gosd.meta."]),
        1,
        "naming the label"
    );

    // The zone label drives a consumer's zone preference, as GOSD_ZONE does.
    let consumer = consumer_in(&redis, Some("z1")).await;
    consumer_sees(&consumer, "both", |c| c.routes("provider").len() == 2).await;
    let seen = consumer
        .instances()
        .into_iter()
        .find(|i| i.name == tagged.0)
        .expect("tagged is seen");
    assert_eq!(
        (seen.meta.get("version"), seen.meta.get("zone")),
        (Some("2"), Some("z1"))
    );
    assert_eq!(
        picks(&consumer, 4),
        vec![tagged.1.clone(); 4],
        "picks prefer zone z1"
    );

    // Renewals keep it: the lease's time left goes up again, the metadata stays.
    let left = || async { consumer.leases().await.expect("leases")[&tagged.0] };
    let before = left().await;
    let started = Instant::now();
    while left().await <= before {
        assert!(started.elapsed() < support::PATIENCE, "never renewed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stored_meta(&redis, &tagged.0), "up,version=2,zone=z1");
    assert_eq!(registrar.count(&["WARN"]), 1, "no other warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_host_ip_the_published_port_is_registered() {
    let engine = Engine::start();
    let redis = RedisServer::start();
    let port = support::redis_server::free_port();
    let id = engine.serve_with(
        "published",
        PROVIDER,
        "published",
        &[
            "--publish",
            &format!("127.0.0.1:{port}:{}", support::podman::PORT),
        ],
    );
    let _registrar = Registrar::start(
        &engine,
        &redis,
        &[
            ("GOSD_TTL", LONG_TTL),
            ("GOSD_REGISTRAR_HOST_IP", "127.0.0.1"),
        ],
    );
    let url = format!("http://127.0.0.1:{port}");
    registry_becomes(
        &redis,
        &[(format!("provider-{}", Engine::short(&id)), url.clone())],
    )
    .await;
    let started = Instant::now();
    while get(format!("{url}/")).await.as_deref() != Some("published") {
        assert!(started.elapsed() < support::PATIENCE, "{url} never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_empty_gets_the_entries_back_from_the_heartbeat() {
    let engine = Engine::start();
    let mut redis = RedisServer::start();
    let [one, two] = two_providers(&engine);
    let tagged = engine.serve(
        "tagged",
        &provider_with(&[("gosd.meta.version", "2")]),
        "tagged",
    );
    let tagged = entry("provider", &tagged, &engine.ip("tagged"));
    let entries = [one, two, tagged.clone()];
    let registrar = Registrar::start(&engine, &redis, &[("GOSD_TTL", "2s")]);
    registry_becomes(&redis, &entries).await;

    let port = redis.port();
    redis.stop();
    registrar.wait_for(1, &["registry lost"]).await;
    // Retried every heartbeat, without another "lost".
    registrar.wait_for(2, &["registry still unreachable"]).await;

    let redis = RedisServer::start_on(port); // empty: persistence is off
    registry_becomes(&redis, &entries).await;
    assert_eq!(
        stored_meta(&redis, &tagged.0),
        "up,version=2",
        "written again with its metadata"
    );
    registrar.wait_for(1, &["registry restored"]).await;
    assert_eq!(registrar.count(&["registry lost"]), 1);
    assert_eq!(registrar.count(&["registry restored"]), 1);
}
