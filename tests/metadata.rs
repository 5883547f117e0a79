//! Status, metadata, weights and zones against a real redis-server: what
//! providers publish beside their entry, and what consumers pick from it.
//! (A global log subscriber: this file is its own process.)

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use gosd::{Client, Config, Registration, Status};
use support::{
    PATIENCE, RedisServer, config, eventually, fast_config, only, picks, picks_become, registry,
};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line logged in this process.
fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("gosd=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        log
    })
}

fn log_lines(needle: &str, service: &str) -> usize {
    String::from_utf8_lossy(&log().0.lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle) && l.contains(&format!("service=\"{service}\"")))
        .count()
}

/// A provider of `service` at `url` with these metadata pairs.
async fn provider(
    server: &RedisServer,
    service: &str,
    url: &str,
    meta: &[(&str, &str)],
) -> (Client, Registration) {
    let mut b = Client::builder().config(fast_config(server));
    for (k, v) in meta {
        b = b.metadata(k, v);
    }
    let client = b.build().await.expect("provider client");
    let me = client.register(service, url).await.expect("register");
    (client, me)
}

/// A consumer, in `zone` if given.
async fn consumer(server: &RedisServer, zone: Option<&str>) -> Client {
    let mut c = config(server);
    if let Some(zone) = zone {
        c.metadata.insert("zone", zone).unwrap();
    }
    Client::builder().config(c).build().await.expect("consumer")
}

#[tokio::test]
async fn weights_1_to_3_split_400_picks_100_300_and_spread_them() {
    let server = RedisServer::start();
    let (_a, _la) = provider(&server, "w", "http://light:1", &[("weight", "1")]).await;
    let (_b, _hb) = provider(&server, "w", "http://heavy:1", &[("weight", "3")]).await;
    let c = consumer(&server, None).await;
    picks_become(
        &c,
        "w",
        8,
        "both providers",
        only(&["http://light:1", "http://heavy:1"]),
    )
    .await;
    let picked = picks(&c, "w", 400);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in &picked {
        *counts.entry(p).or_default() += 1;
    }
    assert_eq!(counts["http://light:1"], 100, "{counts:?}");
    assert_eq!(counts["http://heavy:1"], 300, "{counts:?}");
    // Smooth: every 4 picks in a row hold exactly one light one, so the
    // heavy one never comes more than 3 times in a row (which 1:3 forces).
    for (i, window) in picked.windows(4).enumerate() {
        let light = window.iter().filter(|p| *p == "http://light:1").count();
        assert_eq!(light, 1, "picks {i}..{}: {window:?}", i + 4);
    }
}

#[tokio::test]
async fn equal_weights_keep_strict_alternation() {
    let server = RedisServer::start();
    let (_a, _ra) = provider(&server, "eq", "http://a:1", &[("weight", "7")]).await;
    let (_b, _rb) = provider(&server, "eq", "http://b:1", &[("weight", "7")]).await;
    let c = consumer(&server, None).await;
    picks_become(
        &c,
        "eq",
        4,
        "both providers",
        only(&["http://a:1", "http://b:1"]),
    )
    .await;
    let picked = picks(&c, "eq", 100);
    assert!(picked.windows(2).all(|w| w[0] != w[1]), "{picked:?}");
}

#[tokio::test]
async fn a_consumer_prefers_its_zone_and_fails_over_to_the_others_and_back() {
    let server = RedisServer::start();
    let (_a, local) = provider(&server, "z", "http://a-1:1", &[("zone", "a")]).await;
    let (_b, _rb) = provider(&server, "z", "http://b-1:1", &[("zone", "b")]).await;
    let (_c, _rc) = provider(&server, "z", "http://b-2:1", &[("zone", "b")]).await;
    let in_a = consumer(&server, Some("a")).await;
    let nowhere = consumer(&server, None).await;
    picks_become(
        &nowhere,
        "z",
        6,
        "all three",
        only(&["http://a-1:1", "http://b-1:1", "http://b-2:1"]),
    )
    .await;
    picks_become(&in_a, "z", 6, "zone a only", only(&["http://a-1:1"])).await;
    local.set_status(Status::Down).await.unwrap();
    picks_become(
        &in_a,
        "z",
        6,
        "failover to zone b",
        only(&["http://b-1:1", "http://b-2:1"]),
    )
    .await;
    local.set_status(Status::Up).await.unwrap();
    picks_become(&in_a, "z", 6, "back to zone a", only(&["http://a-1:1"])).await;
}

#[tokio::test]
async fn draining_gets_no_new_picks_and_keeps_its_lease() {
    let server = RedisServer::start();
    let (_a, draining) = provider(&server, "d", "http://a:1", &[]).await;
    let (_b, _rb) = provider(&server, "d", "http://b:1", &[]).await;
    let c = consumer(&server, None).await;
    picks_become(&c, "d", 4, "both", only(&["http://a:1", "http://b:1"])).await;
    draining.set_status(Status::Draining).await.unwrap();
    picks_become(&c, "d", 4, "b only", only(&["http://b:1"])).await;
    let name = draining.name();
    let lease = |s: &RedisServer| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg("{gosd}:leases")
            .arg(&name)
            .query(&mut s.connection())
            .unwrap()
    };
    let first = lease(&server).expect("a draining instance keeps its lease");
    eventually("the heartbeat renews the draining instance's lease", || {
        lease(&server).is_some_and(|l| l > first)
    })
    .await;
    assert!(
        registry(&server)
            .iter()
            .any(|(f, u)| *f == name && u == "http://a:1"),
        "still registered"
    );
    let meta: Option<String> = redis::cmd("HGET")
        .arg("{gosd}:meta")
        .arg(&name)
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(meta.as_deref(), Some("draining"));
    let status = c
        .instances()
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| i.meta.status);
    assert_eq!(status, Some(Status::Draining));
}

#[tokio::test]
async fn with_every_instance_down_picks_fail_open_and_say_so_once() {
    let server = RedisServer::start();
    log();
    let (pa, a) = provider(&server, "failopen", "http://a:1", &[]).await;
    let (pb, b) = provider(&server, "failopen", "http://b:1", &[]).await;
    let c = consumer(&server, None).await;
    let clients = [&pa, &pb, &c];
    picks_become(
        &c,
        "failopen",
        4,
        "both",
        only(&["http://a:1", "http://b:1"]),
    )
    .await;
    a.set_status(Status::Down).await.unwrap();
    picks_become(&c, "failopen", 4, "b only", only(&["http://b:1"])).await;
    b.set_status(Status::Down).await.unwrap();
    picks_become(
        &c,
        "failopen",
        4,
        "both again, failing open",
        only(&["http://a:1", "http://b:1"]),
    )
    .await;
    // Each of the three clients (both providers watch too) says so once.
    eventually("every client warns", || {
        log_lines("no instance of this service is up", "failopen") == 3
    })
    .await;
    // More changes while failing open: no more warnings.
    b.set_status(Status::Draining).await.unwrap();
    for client in clients {
        picks_become(
            client,
            "failopen",
            4,
            "still both",
            only(&["http://a:1", "http://b:1"]),
        )
        .await;
        eventually("every client sees b draining", || {
            client
                .instances()
                .iter()
                .any(|i| i.url.as_str() == "http://b:1" && i.meta.status == Status::Draining)
        })
        .await;
    }
    assert_eq!(
        log_lines("no instance of this service is up", "failopen"),
        3
    );
    a.set_status(Status::Up).await.unwrap();
    for client in clients {
        picks_become(client, "failopen", 4, "a only", only(&["http://a:1"])).await;
    }
    assert_eq!(log_lines("is up again", "failopen"), 3);
}

#[tokio::test]
async fn a_go_gosd_entry_routes_as_weight_100_up_and_in_no_zone() {
    let server = RedisServer::start();
    server.write_raw("provider-20160315122936.17256541", "http://go:8080");
    let (_r, me) = provider(
        &server,
        "provider",
        "http://rust:1",
        &[("weight", "100"), ("version", "2.1.0")],
    )
    .await;
    // Our entry is Go gosd's layout exactly; the metadata is beside it.
    assert!(registry(&server).contains(&(me.name(), "http://rust:1".to_owned())));
    let metas: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("{gosd}:meta")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert_eq!(metas[&me.name()], "up,version=2.1.0,weight=100");
    let c = consumer(&server, Some("a")).await;
    picks_become(
        &c,
        "provider",
        4,
        "both",
        only(&["http://go:8080", "http://rust:1"]),
    )
    .await;
    let picked = picks(&c, "provider", 100);
    assert!(
        picked.windows(2).all(|w| w[0] != w[1]),
        "weight 100 each: {picked:?}"
    );
    let go = c
        .instances()
        .into_iter()
        .find(|i| i.url.as_str() == "http://go:8080")
        .unwrap();
    assert_eq!(go.meta, gosd::Meta::default());
    assert_eq!(go.meta.status, Status::Up);
    assert_eq!(go.meta.get("zone"), None);
}

#[tokio::test]
async fn a_selector_picks_only_matching_instances_by_weight_and_the_global_one_too() {
    let server = RedisServer::start();
    let (_o, _ro) = provider(&server, "sel", "http://old:1", &[("version", "2.0.0")]).await;
    let (_n1, _r1) = provider(
        &server,
        "sel",
        "http://new-1:1",
        &[("version", "2.1.0"), ("weight", "1")],
    )
    .await;
    let (_n2, r2) = provider(
        &server,
        "sel",
        "http://new-2:1",
        &[("version", "2.1.0"), ("weight", "2")],
    )
    .await;
    let c = consumer(&server, None).await;
    support::routes_become(&c, "sel", "all three", |r| r.len() == 3).await;
    let v21 = gosd::Selector::new("sel").with("version", "2.1.0");
    let picked: Vec<String> = (0..300)
        .map(|_| c.pick(&v21).unwrap().to_string())
        .collect();
    let count = |u: &str| picked.iter().filter(|p| *p == u).count();
    assert_eq!(
        (count("http://new-1:1"), count("http://new-2:1")),
        (100, 200)
    );
    assert!(
        c.pick(&gosd::Selector::new("sel").with("version", "9"))
            .is_none()
    );
    // A status change reaches the selector's picks as any other.
    r2.set_status(Status::Draining).await.unwrap();
    let mut changes = c.changes();
    tokio::time::timeout(PATIENCE, async {
        loop {
            changes.borrow_and_update();
            if (0..6).all(|_| c.pick(&v21).unwrap().as_str() == "http://new-1:1") {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the draining one leaves the selector's picks");
    // The global API, on a client of its own in this process.
    let driver = gosd::RedisDriver::new(gosd::RedisOptions::new().addr(&server.addr()).unwrap());
    let me = gosd::start_with("sel-global", "http://global:1", driver)
        .await
        .unwrap();
    let route = gosd::route("sel")
        .with("version", "2.0.0")
        .pick()
        .await
        .unwrap();
    assert_eq!(route.as_str(), "http://old:1");
    let none = gosd::route("sel").with("version", "9").pick().await;
    assert!(
        matches!(&none, Err(gosd::Error::NoRoute(s)) if s == "sel"),
        "{none:?}"
    );
    me.finish().await.unwrap();
}

/// A health endpoint on a free local port that answers with `status`.
async fn health_endpoint(status: Arc<std::sync::atomic::AtomicU16>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let reply = format!("HTTP/1.0 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_failing_health_check_takes_the_instance_out_of_the_picks_until_it_passes() {
    let server = RedisServer::start();
    let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
    let mut checked = fast_config(&server);
    checked.health_url = Some(health_endpoint(status.clone()).await);
    checked.health_failures = 2;
    let pc = Client::builder().config(checked).build().await.unwrap();
    let checked_me = pc.register("h", "http://checked:1").await.unwrap();
    let (_other, _ro) = provider(&server, "h", "http://other:1", &[]).await;
    let c = consumer(&server, None).await;
    picks_become(
        &c,
        "h",
        4,
        "both",
        only(&["http://checked:1", "http://other:1"]),
    )
    .await;
    status.store(503, std::sync::atomic::Ordering::SeqCst);
    picks_become(
        &c,
        "h",
        4,
        "the failing one is out",
        only(&["http://other:1"]),
    )
    .await;
    let status_of = |c: &Client| {
        c.instances()
            .into_iter()
            .find(|i| i.name == checked_me.name())
            .map(|i| i.meta.status)
    };
    assert_eq!(status_of(&c), Some(Status::Down));
    status.store(204, std::sync::atomic::Ordering::SeqCst);
    picks_become(
        &c,
        "h",
        4,
        "back in",
        only(&["http://checked:1", "http://other:1"]),
    )
    .await;
    // A status set by hand stands over a passing check.
    checked_me.set_status(Status::Draining).await.unwrap();
    picks_become(&c, "h", 4, "draining by hand", only(&["http://other:1"])).await;
    let renewed = |s: &RedisServer| -> f64 {
        redis::cmd("ZSCORE")
            .arg("{gosd}:leases")
            .arg(checked_me.name())
            .query(&mut s.connection())
            .unwrap()
    };
    let before = renewed(&server);
    eventually("a heartbeat after the check", || renewed(&server) > before).await;
    c.get().await.unwrap();
    assert_eq!(status_of(&c), Some(Status::Draining));
}

/// The builder's health check, switched by the test: `false`, then a
/// panic, marks the instance down and out of a consumer's picks while
/// another is up; healthy again, it is back each time. The panic leaves
/// the heartbeat running, and each failure is logged once.
#[tokio::test]
async fn a_health_check_closure_takes_the_instance_out_of_the_picks_until_it_passes() {
    use std::sync::atomic::{AtomicU8, Ordering};
    const HEALTHY: u8 = 0;
    const SAYS_NO: u8 = 1;
    const PANICS: u8 = 2;
    log();
    let server = RedisServer::start();
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let mut checked = fast_config(&server);
    checked.health_failures = 2;
    let switch = mode.clone();
    let pc = Client::builder()
        .config(checked)
        .health_check(move || {
            let mode = switch.load(Ordering::SeqCst);
            async move {
                match mode {
                    HEALTHY => true,
                    SAYS_NO => false,
                    _ => panic!("the closure's check broke"),
                }
            }
        })
        .build()
        .await
        .unwrap();
    let checked_me = pc.register("hc", "http://checked:1").await.unwrap();
    let (_other, _ro) = provider(&server, "hc", "http://other:1", &[]).await;
    let c = consumer(&server, None).await;
    let both = || only(&["http://checked:1", "http://other:1"]);
    picks_become(&c, "hc", 4, "both", both()).await;
    for (failing, says) in [
        (SAYS_NO, "the builder's health_check: answered false"),
        (
            PANICS,
            "the builder's health_check: panicked: the closure's check broke",
        ),
    ] {
        mode.store(failing, Ordering::SeqCst);
        picks_become(
            &c,
            "hc",
            4,
            "the failing one out",
            only(&["http://other:1"]),
        )
        .await;
        let status = c
            .instances()
            .into_iter()
            .find(|i| i.name == checked_me.name())
            .map(|i| i.meta.status);
        assert_eq!(status, Some(Status::Down));
        mode.store(HEALTHY, Ordering::SeqCst);
        picks_become(&c, "hc", 4, "back in", both()).await;
        let logged = String::from_utf8_lossy(&log().0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(says))
            .count();
        assert_eq!(logged, 1, "logged once as it went down: {says}");
    }
}

/// The next change of `watch`, which must come.
async fn next_change(watch: &mut gosd::ServiceWatch) -> gosd::Change {
    tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("a change within PATIENCE")
        .expect("the client is alive")
}

/// `watch_service` (what tower's and tonic's balancers are fed) follows
/// the picks' rule: a provider set draining leaves it while another is up,
/// and comes back when up; with none up, every one is in (fail open).
/// `watch_all_services`, for status pages, keeps every instance.
#[tokio::test]
async fn the_change_stream_leaves_out_what_picks_leave_out() {
    use gosd::Change;
    let server = RedisServer::start();
    let (_pa, a) = provider(&server, "st", "http://a:1", &[]).await;
    let (_pb, b) = provider(&server, "st", "http://b:1", &[]).await;
    let c = consumer(&server, None).await;
    support::routes_become(&c, "st", "both", |r| r.len() == 2).await;
    let mut service = c.watch_service("st");
    let mut all = c.watch_all_services();
    for watch in [&mut service, &mut all] {
        let mut first = Vec::new();
        for _ in 0..2 {
            match next_change(watch).await {
                Change::Insert(_, route) => first.push(route.to_string()),
                other => panic!("{other:?}"),
            }
        }
        first.sort();
        assert_eq!(first, ["http://a:1", "http://b:1"]);
    }
    let (a_name, b_name) = (a.name(), b.name());
    let removed = |name: &str| {
        let name = name.to_owned();
        move |change: &Change| matches!(change, Change::Remove(n) if n.as_str() == name)
    };
    let inserted = |name: &str, url: &str| {
        let (name, url) = (name.to_owned(), url.to_owned());
        move |change: &Change| matches!(change, Change::Insert(n, r) if n.as_str() == name && r.as_str() == url)
    };
    a.set_status(Status::Draining).await.unwrap();
    let change = next_change(&mut service).await;
    assert!(removed(&a_name)(&change), "a draining leaves: {change:?}");
    b.set_status(Status::Down).await.unwrap();
    let change = next_change(&mut service).await;
    assert!(
        inserted(&a_name, "http://a:1")(&change),
        "none up: all in, a back: {change:?}"
    );
    a.set_status(Status::Up).await.unwrap();
    let change = next_change(&mut service).await;
    assert!(
        removed(&b_name)(&change),
        "a up: b, down, leaves: {change:?}"
    );
    b.set_status(Status::Up).await.unwrap();
    let change = next_change(&mut service).await;
    assert!(inserted(&b_name, "http://b:1")(&change), "b up: {change:?}");
    // Every status change came and went without a change in the stream of
    // every instance: its next change is the next instance.
    let (_pc, third) = provider(&server, "st", "http://c:1", &[]).await;
    for watch in [&mut service, &mut all] {
        let change = next_change(watch).await;
        assert!(inserted(&third.name(), "http://c:1")(&change), "{change:?}");
    }
}

#[test]
fn bad_metadata_errors_name_the_variable() {
    let err = |vars: &[(&str, &str)]| {
        Config::from_vars(vars.iter().copied())
            .unwrap_err()
            .to_string()
    };
    for (vars, var, says) in [
        (
            vec![("GOSD_META", "bad key=1")],
            "GOSD_META",
            "not allowed in a key",
        ),
        (
            vec![("GOSD_META", "version=2.1 beta")],
            "GOSD_META",
            "not allowed in a value",
        ),
        (vec![("GOSD_META", "novalue")], "GOSD_META", "not key=value"),
        (
            vec![("GOSD_META", "weight=heavy")],
            "GOSD_META",
            "1 to 1000",
        ),
        (vec![("GOSD_WEIGHT", "0")], "GOSD_WEIGHT", "1 to 1000"),
        (vec![("GOSD_WEIGHT", "1001")], "GOSD_WEIGHT", "1 to 1000"),
        (
            vec![("GOSD_ZONE", "eu west")],
            "GOSD_ZONE",
            "not allowed in a value",
        ),
        (
            vec![("GOSD_META", "zone=a"), ("GOSD_ZONE", "b")],
            "GOSD_ZONE",
            "one place",
        ),
    ] {
        let e = err(&vars);
        assert!(
            e.starts_with(&format!("invalid {var}=")) && e.contains(says),
            "{vars:?}: {e}"
        );
    }
    let long_key = format!("{}=1", "k".repeat(65));
    assert!(err(&[("GOSD_META", &long_key)]).contains("1 to 64"));
    let long_value = format!("k={}", "v".repeat(257));
    assert!(err(&[("GOSD_META", &long_value)]).contains("at most 256"));
    let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let e = err(&[("GOSD_META", &many.join(","))]);
    assert!(
        e.starts_with("invalid GOSD_META=") && e.contains("at most 32 pairs"),
        "{e}"
    );
    let big: Vec<String> = (0..20)
        .map(|i| format!("k{i}={}", "v".repeat(250)))
        .collect();
    let e = err(&[("GOSD_META", &big.join(","))]);
    assert!(
        e.starts_with("invalid GOSD_META=") && e.contains("4096"),
        "{e}"
    );
    let c = Config::from_vars([
        ("GOSD_META", "version=2.1.0, team=payments"),
        ("GOSD_ZONE", "eu-1"),
        ("GOSD_WEIGHT", "250"),
    ])
    .unwrap();
    assert_eq!(c.metadata.get("version"), Some("2.1.0"));
    assert_eq!(c.metadata.get("team"), Some("payments"));
    assert_eq!(c.zone(), Some("eu-1"));
    assert_eq!(c.metadata.get("weight"), Some("250"));
    let mut in_code = Config::default();
    in_code.metadata.insert("weight", "0").unwrap();
    assert!(
        in_code
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid GOSD_WEIGHT=\"0\"")
    );
}
