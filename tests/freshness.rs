//! Freshness against a real redis-server: pushed changes, one-command
//! refreshes, a Redis restart that loses everything, a killed subscription.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gosd::Client;
use support::{Monitor, PATIENCE, Proc, RedisServer, config, eventually, registry, routes_become};

/// A consumer with push on and nothing else that could refresh it within
/// the test: no cron, and the providers it sees are on [`LONG_LEASE`]s
/// (see [`long_lease_client`]), so its lease-expiry refresh is a minute away.
async fn watching_consumer(server: &RedisServer) -> Client {
    let mut c = config(server);
    c.watch = true;
    Client::builder().config(c).build().await.unwrap()
}

/// A lease much longer than a test waits for a change ([`PATIENCE`]): a
/// consumer's lease-expiry refresh (at the earliest expiry in its table)
/// cannot land inside the wait, so only a push can pass a test that
/// registers its providers with it. At the default 10 s TTL it could.
const LONG_LEASE: Duration = Duration::from_secs(60);

/// A provider's client whose registrations are on a [`LONG_LEASE`].
async fn long_lease_client(server: &RedisServer) -> Client {
    const { assert!(LONG_LEASE.as_secs() >= 2 * PATIENCE.as_secs()) };
    let mut c = config(server);
    c.ttl = LONG_LEASE;
    c.heartbeat = LONG_LEASE / 3;
    c.watch = false; // a provider: only the consumer under test listens
    Client::builder().config(c).build().await.unwrap()
}

#[tokio::test]
async fn registrations_and_removals_reach_a_watching_client_without_any_refresh_call() {
    let server = RedisServer::start();
    let consumer = watching_consumer(&server).await;
    let provider = long_lease_client(&server).await;
    let me = provider.register("provider", "http://p:1").await.unwrap();
    let took = routes_become(&consumer, "provider", "registration pushed", |r| {
        r.len() == 1
    })
    .await;
    eprintln!("registration visible after {took:?}");
    me.finish().await.unwrap();
    let took = routes_become(&consumer, "provider", "removal pushed", |r| r.is_empty()).await;
    eprintln!("deregistration visible after {took:?}");
}

#[tokio::test]
async fn a_kill_9_eviction_reaches_a_watching_client() {
    let server = RedisServer::start();
    let consumer = watching_consumer(&server).await;
    let (mut p, _, url) = Proc::provider(&server, "1", &[("GOSD_TTL", "1s")]);
    routes_become(&consumer, "provider", "provider seen", |r| {
        r.iter().any(|r| **r == *url)
    })
    .await;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let took = routes_become(&consumer, "provider", "eviction seen", |r| r.is_empty()).await;
    eprintln!("kill -9 -> evicted from a watching client after {took:?} (TTL 1s)");
}

#[tokio::test]
async fn an_unchanged_refresh_is_one_command_and_one_after_a_go_write_two_round_trips() {
    let server = RedisServer::start();
    server.write_raw("provider-1", "http://a:1");
    let mut quiet = config(&server);
    quiet.watch = false; // only get() talks to Redis
    let consumer = Client::builder().config(quiet).build().await.unwrap();
    let mut monitor = Monitor::start(&server);
    consumer.get().await.unwrap();
    let sent = monitor.client_commands();
    assert_eq!(sent.len(), 1, "an unchanged refresh: {sent:#?}");
    assert!(sent[0].to_lowercase().contains("\"evalsha\""), "{sent:?}");

    // A Go gosd write (no revision bump) is still seen: the script says
    // "changed", then one atomic read brings the table (two round trips).
    server.write_raw("provider-2", "http://b:1");
    monitor.client_commands();
    consumer.get().await.unwrap();
    let sent: Vec<String> = monitor
        .client_commands()
        .iter()
        .map(|l| l.split('"').nth(1).unwrap_or_default().to_lowercase())
        .collect();
    // The second HGETALL reads the status and metadata beside the hash.
    let expected = [
        "evalsha", "multi", "get", "get", "hlen", "hgetall", "hgetall", "zrange", "time", "exec",
    ];
    assert_eq!(sent, expected, "a changed refresh");
    assert_eq!(
        consumer.routes("provider").len(),
        2,
        "the Go write is in the table"
    );
}

/// The names of the commands a client sent since the last call.
fn command_names(monitor: &mut Monitor) -> Vec<String> {
    monitor
        .client_commands()
        .iter()
        .map(|l| l.split('"').nth(1).unwrap_or_default().to_lowercase())
        .collect()
}

fn sorted_routes(client: &Client, service: &str) -> Vec<String> {
    let mut routes: Vec<String> = client
        .routes(service)
        .iter()
        .map(|r| r.to_string())
        .collect();
    routes.sort();
    routes
}

#[tokio::test]
async fn a_refresh_after_a_few_changes_is_one_command_unless_a_go_write_is_among_them() {
    let server = RedisServer::start();
    let mut quiet = config(&server);
    quiet.watch = false; // only get() talks to Redis
    // No heartbeat or lease expiry within the test: a renewal would add a
    // command, and would restore the lease the test ends by hand.
    quiet.ttl = Duration::from_secs(24 * 3600);
    quiet.heartbeat = Duration::from_secs(23 * 3600);
    // Providers as quiet as the consumer, so that what the monitor sees
    // after each mark is the consumer's.
    let quiet_client = || Client::builder().config(quiet.clone()).build();
    let consumer = quiet_client().await.unwrap();
    let a = quiet_client().await.unwrap();
    let a = a.register("provider", "http://a:1").await.unwrap();
    consumer.get().await.unwrap();
    let mut monitor = Monitor::start(&server);

    // Two changes since: the script answers with both from its log.
    let b = quiet_client().await.unwrap();
    let _b = b.register("provider", "http://b:1").await.unwrap();
    a.finish().await.unwrap();
    command_names(&mut monitor);
    consumer.get().await.unwrap();
    assert_eq!(
        command_names(&mut monitor),
        ["evalsha"],
        "a registration and a deregistration"
    );
    assert_eq!(sorted_routes(&consumer, "provider"), ["http://b:1"]);

    // A Go gosd write keeps no record: the changes no longer add up to the
    // registry's count, and the client reads the whole hash instead.
    server.write_raw("provider-20160315122936.1", "http://go:1");
    let c = quiet_client().await.unwrap();
    let c = c.register("provider", "http://c:1").await.unwrap();
    command_names(&mut monitor);
    consumer.get().await.unwrap();
    let sent = command_names(&mut monitor);
    assert_eq!(
        sent.first().map(String::as_str),
        Some("evalsha"),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|c| c == "hgetall"),
        "a whole read: {sent:?}"
    );
    assert_eq!(
        sorted_routes(&consumer, "provider"),
        ["http://b:1", "http://c:1", "http://go:1"]
    );

    // A crashed instance: its lease runs out, the refresh's script reaps
    // it and answers with the removal from its log.
    server.end_leases(&[&c.name()]);
    command_names(&mut monitor);
    consumer.get().await.unwrap();
    assert_eq!(command_names(&mut monitor), ["evalsha"], "a reap");
    assert_eq!(
        sorted_routes(&consumer, "provider"),
        ["http://b:1", "http://go:1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_loses_everything_never_empties_a_table() {
    let mut server = RedisServer::start();
    let port = server.port();
    let mut fast = config(&server);
    fast.ttl = Duration::from_secs(3);
    fast.heartbeat = Duration::from_millis(100);
    let mut registrations = Vec::new();
    for i in 0..2 {
        let p = Client::builder()
            .config(fast.clone())
            .build()
            .await
            .unwrap();
        registrations.push(
            p.register("provider", &format!("http://p{i}:1"))
                .await
                .unwrap(),
        );
    }
    let consumer = watching_consumer(&server).await;
    routes_become(&consumer, "provider", "both providers", |r| r.len() == 2).await;
    let generation = |server: &RedisServer| -> String {
        redis::cmd("GET")
            .arg("{gosd}:gen")
            .query::<Option<String>>(&mut server.connection())
            .unwrap()
            .expect("a generation is set")
    };
    let before = generation(&server);

    // Pick continuously through the whole outage.
    let stop = Arc::new(AtomicBool::new(false));
    let (failed, smallest) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(usize::MAX)),
    );
    let picker = {
        let (consumer, stop, failed, smallest) = (
            consumer.clone(),
            stop.clone(),
            failed.clone(),
            smallest.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if consumer.next_route("provider").is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                smallest.fetch_min(consumer.routes("provider").len(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };

    let _: Result<(), _> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query(&mut server.connection());
    server.stop();
    let server = RedisServer::start_on(port);
    let names: Vec<String> = registrations.iter().map(|r| r.name().to_owned()).collect();
    let took = eventually("both providers registered again", || {
        let all = registry(&server);
        names.iter().all(|n| all.iter().any(|(f, _)| f == n))
    })
    .await;
    eprintln!("providers back in the hash {took:?} after the restart (heartbeat 100ms)");
    assert_ne!(
        generation(&server),
        before,
        "the restarted, empty Redis began a new generation"
    );
    routes_become(
        &consumer,
        "provider",
        "the consumer follows the new registry",
        |r| r.len() == 2,
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    picker.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed pick during the restart"
    );
    assert_eq!(
        smallest.load(Ordering::Relaxed),
        2,
        "the table never shrank"
    );
    drop(registrations);
    drop(server);
}

#[tokio::test]
async fn changes_are_still_pushed_after_the_subscription_is_killed() {
    let server = RedisServer::start();
    let consumer = watching_consumer(&server).await;
    let provider = long_lease_client(&server).await;
    let _first = provider.register("provider", "http://p:1").await.unwrap();
    routes_become(&consumer, "provider", "first provider", |r| r.len() == 1).await;

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.connection())
        .unwrap();
    assert!(killed >= 1, "a subscription was killed");
    let other = long_lease_client(&server).await;
    let _second = other.register("provider", "http://p:2").await.unwrap();
    routes_become(&consumer, "provider", "a change after the kill", |r| {
        r.len() == 2
    })
    .await;
}

/// `watch_service`: the instances there are, then each insert and removal
/// of that service as pushes bring them, and nothing of other services.
#[tokio::test]
async fn watch_service_streams_the_current_instances_then_each_change() {
    use gosd::Change;
    let server = RedisServer::start();
    let consumer = watching_consumer(&server).await;
    let next = async |changes: &mut gosd::ServiceWatch| {
        tokio::time::timeout(PATIENCE, changes.next())
            .await
            .expect("a change within PATIENCE")
            .expect("the client is alive")
    };
    let a_client = long_lease_client(&server).await;
    let a = a_client.register("provider", "http://a:1").await.unwrap();
    routes_become(&consumer, "provider", "a is seen", |r| r.len() == 1).await;

    let mut changes = consumer.watch_service("provider");
    let Change::Insert(name, route) = next(&mut changes).await else {
        panic!("the current instance first")
    };
    assert_eq!(
        (name.to_string(), route.to_string()),
        (a.name(), "http://a:1".into())
    );

    let b_client = long_lease_client(&server).await;
    let other = b_client.register("other", "http://o:1").await.unwrap();
    let b_client = long_lease_client(&server).await;
    let b = b_client.register("provider", "http://b:1").await.unwrap();
    let Change::Insert(name, route) = next(&mut changes).await else {
        panic!("b inserted")
    };
    assert_eq!(
        (name.to_string(), route.to_string()),
        (b.name(), "http://b:1".into())
    );

    let a_name = a.name();
    a.finish().await.unwrap();
    other.finish().await.unwrap();
    let Change::Remove(name) = next(&mut changes).await else {
        panic!("a removed")
    };
    assert_eq!(name.to_string(), a_name);

    drop(consumer);
    assert_eq!(changes.next().await, None, "ends with the client");
}

/// `watch_all_services`: every service's instances, then each insert and
/// removal of any service, each naming its service.
#[tokio::test]
async fn watch_all_services_streams_every_service_then_each_change() {
    use gosd::Change;
    let server = RedisServer::start();
    let consumer = watching_consumer(&server).await;
    let next = async |changes: &mut gosd::ServiceWatch| {
        tokio::time::timeout(support::PATIENCE, changes.next())
            .await
            .expect("a change within PATIENCE")
            .expect("the client is alive")
    };
    let a_client = long_lease_client(&server).await;
    let a = a_client.register("provider", "http://a:1").await.unwrap();
    let o_client = long_lease_client(&server).await;
    let o = o_client.register("other", "http://o:1").await.unwrap();
    routes_become(&consumer, "other", "o is seen", |r| r.len() == 1).await;
    routes_become(&consumer, "provider", "a is seen", |r| r.len() == 1).await;

    let mut changes = consumer.watch_all_services();
    let mut first = Vec::new();
    for _ in 0..2 {
        let Change::Insert(name, route) = next(&mut changes).await else {
            panic!("the current instances first")
        };
        first.push((
            name.service().to_owned(),
            name.to_string(),
            route.to_string(),
        ));
    }
    first.sort();
    assert_eq!(
        first,
        [
            ("other".into(), o.name(), "http://o:1".into()),
            ("provider".into(), a.name(), "http://a:1".into()),
        ]
    );

    let b_client = long_lease_client(&server).await;
    let b = b_client.register("third", "http://b:1").await.unwrap();
    let Change::Insert(name, route) = next(&mut changes).await else {
        panic!("b inserted")
    };
    assert_eq!(
        (name.service(), name.to_string(), route.to_string()),
        ("third", b.name(), "http://b:1".into())
    );

    let o_name = o.name();
    o.finish().await.unwrap();
    let Change::Remove(name) = next(&mut changes).await else {
        panic!("o removed")
    };
    assert_eq!((name.service(), name.to_string()), ("other", o_name));

    drop(consumer);
    assert_eq!(changes.next().await, None, "ends with the client");
}

/// `GOSD_WATCH=false`: the client never subscribes, so a registration
/// reaches it only when it refreshes; a client with push on, built on the
/// same registry at the same time, is told at once.
#[tokio::test]
async fn gosd_watch_false_turns_push_off() {
    let server = RedisServer::start();
    let env = |watch: &str| {
        gosd::Config::from_vars([
            ("gosdRedisAddr", server.addr()),
            ("GOSD_WATCH", watch.to_owned()),
            ("GOSD_CRON", "off".to_owned()),
        ])
        .unwrap()
    };
    let unwatched = Client::builder()
        .config(env("false"))
        .build()
        .await
        .unwrap();
    let watched = Client::builder().config(env("true")).build().await.unwrap();
    let subscribers = || -> usize {
        let (_, n): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("{gosd}:events")
            .query(&mut server.connection())
            .unwrap();
        n
    };
    eventually("the watching client subscribed", || subscribers() >= 1).await;
    assert_eq!(subscribers(), 1, "only the client with push on subscribes");

    let provider = long_lease_client(&server).await;
    let _me = provider.register("provider", "http://p:1").await.unwrap();
    routes_become(&watched, "provider", "pushed to the watching client", |r| {
        r.len() == 1
    })
    .await;
    assert!(
        unwatched.routes("provider").is_empty(),
        "a client with push off saw the registration without refreshing"
    );
    unwatched.get().await.unwrap();
    assert_eq!(unwatched.routes("provider").len(), 1, "seen on refresh");
    assert_eq!(subscribers(), 1);
}
