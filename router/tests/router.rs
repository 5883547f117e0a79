//! gosd-router against a real redis-server, real providers (the example
//! provider, as processes) and an upstream that echoes what it receives.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use gosd_router::{Router, RouterConfig};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Proc, RedisServer, client, free_port, routes_become};
use tokio::net::TcpListener;

/// The router on a free port, over its own gosd client; stops when dropped.
struct Running {
    addr: SocketAddr,
    client: gosd::Client,
    router: Router,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn router(server: &RedisServer, tweak: impl FnOnce(&mut RouterConfig)) -> Running {
    serve(client(server).await, tweak).await
}

/// The router over `client`, on a free port.
async fn serve(client: gosd::Client, tweak: impl FnOnce(&mut RouterConfig)) -> Running {
    let mut config = RouterConfig::default();
    config.timeout = Duration::from_secs(5);
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let r = Router::new(client.clone(), config);
    tokio::spawn(r.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        client,
        router: r,
        _stop: stop,
    }
}

/// The router over `client` with default settings on a free port, for
/// tests of its shutdown: serves until the sender is used, and the handle
/// resolves once `serve` has returned.
async fn serve_until_stopped(
    client: gosd::Client,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(Router::new(client, RouterConfig::default()).serve(
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, serving)
}

/// How many URLs the router keeps counters for, once they follow the
/// client's table as it is now.
async fn tracked_urls(r: &Running) -> usize {
    let version = *r.client.changes().borrow();
    r.router.tracked_urls(version).await
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, Bytes) {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = http
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let (status, body) = send(addr, Method::GET, path, &[], Bytes::new()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An upstream that echoes POST bodies and answers anything else with the
/// path and headers it received, as JSON.
async fn echo_upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let response: Response<BoxBody<Bytes, hyper::Error>> = if req.method()
                    == Method::POST
                {
                    Response::new(req.into_body().boxed())
                } else {
                    let headers: serde_json::Map<String, serde_json::Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().into()))
                        .collect();
                    let body = serde_json::json!({ "path": req.uri().path(), "headers": headers })
                        .to_string();
                    Response::new(
                        Full::new(Bytes::from(body))
                            .map_err(|never| match never {})
                            .boxed(),
                    )
                };
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An echo upstream registered as `service`; returns its URL and keeps
/// its registration alive as long as the returned value lives.
async fn registered_echo(server: &RedisServer, service: &str) -> (String, gosd::Registration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(echo_upstream(listener));
    let me = client(server).await.register(service, &url).await.unwrap();
    (url, me)
}

#[tokio::test]
async fn routes_round_robin_to_real_providers() {
    let server = RedisServer::start();
    let (_p1, _, _) = Proc::provider(&server, "1", &[]);
    let (_p2, _, _) = Proc::provider(&server, "2", &[]);
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "provider", "both providers", |routes| {
        routes.len() == 2
    })
    .await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let (status, body) = get(r.addr, "/provider/ping").await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    assert_ne!(bodies[0], bodies[1], "round-robin: {bodies:?}");
    assert_eq!(bodies[0], bodies[2], "round-robin: {bodies:?}");
    assert!(
        bodies.contains(&"\"Provider: 1\"".to_owned())
            && bodies.contains(&"\"Provider: 2\"".to_owned())
    );
}

#[tokio::test]
async fn no_instance_is_503_naming_the_service() {
    let server = RedisServer::start();
    let r = router(&server, |_| {}).await;
    let (status, body) = get(r.addr, "/nobody/ping").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["service"], "nobody");
    let (status, body) = get(r.addr, "/-/health").await;
    assert_eq!(
        (status, json(&body)["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn an_unreachable_instance_is_retried_on_another_then_502() {
    let server = RedisServer::start();
    let (_p1, _, _) = Proc::provider(&server, "1", &[]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let _dead_provider = client(&server)
        .await
        .register("provider", &dead)
        .await
        .unwrap();
    let _dead_only = client(&server).await.register("dead", &dead).await.unwrap();
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "provider", "live and dead providers", |routes| {
        routes.len() == 2
    })
    .await;
    for _ in 0..6 {
        let (status, body) = get(r.addr, "/provider/ping").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "\"Provider: 1\""),
            "the dead one is retried on the live one"
        );
    }
    routes_become(&r.client, "dead", "the dead service", |routes| {
        routes.len() == 1
    })
    .await;
    let (status, body) = get(r.addr, "/dead/ping").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let body = json(&body);
    assert_eq!(
        (body["service"].as_str(), body["instance"].as_str()),
        (Some("dead"), Some(dead.as_str()))
    );
}

/// The instance of `service` at `url` on `/-/services`.
async fn instance_at(r: &Running, service: &str, url: &str) -> serde_json::Value {
    let (_, services) = get(r.addr, "/-/services").await;
    let services = json(&services);
    let all = services["services"].as_array().unwrap().clone();
    let service = all.into_iter().find(|s| s["name"] == service).unwrap();
    let instances = service["instances"].as_array().unwrap().clone();
    instances.into_iter().find(|i| i["url"] == url).unwrap()
}

/// A dead instance beside a live one: every request is answered (the dead
/// one's are retried on the live one), the client's outlier detector
/// ejects it after 3 failures, and once its cooldown is over it gets
/// traffic again.
#[tokio::test]
async fn a_failing_instance_is_retried_around_ejected_then_back_after_the_cooldown() {
    let server = RedisServer::start();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _flaky = client(&server).await.register("flaky", &url).await.unwrap();
    let (_live_url, _live) = registered_echo(&server, "flaky").await;
    let mut config = support::config(&server);
    config.eject_for = Duration::from_millis(300);
    let consumer = gosd::Client::builder()
        .config(config)
        .build()
        .await
        .unwrap();
    let r = serve(consumer, |_| {}).await;
    routes_become(&r.client, "flaky", "both instances", |routes| {
        routes.len() == 2
    })
    .await;
    // Round-robin brings the dead one up every other request: at most 6
    // requests give it its 3 failures.
    let mut sent = 0;
    while instance_at(&r, "flaky", &url).await["ejected_for_ms"].is_null() {
        assert!(sent < 6, "not ejected after {sent} requests");
        let (status, body) = get(r.addr, "/flaky/x").await;
        assert_eq!(status, StatusCode::OK, "retried on the live one: {body}");
        sent += 1;
    }
    let ejected = instance_at(&r, "flaky", &url).await;
    assert_eq!(
        (ejected["requests"].as_u64(), ejected["errors"].as_u64()),
        (Some(3), Some(3)),
        "{ejected}"
    );
    assert!(!r.client.routes("flaky").iter().any(|u| u.as_str() == url));

    // The instance comes up; once the cooldown is over it gets traffic again.
    tokio::spawn(echo_upstream(
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
    ));
    routes_become(&r.client, "flaky", "the cooldown over", |routes| {
        routes.len() == 2
    })
    .await;
    for _ in 0..2 {
        let (status, body) = get(r.addr, "/flaky/after").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json(&body)["path"], "/after");
    }
    let back = instance_at(&r, "flaky", &url).await;
    assert_eq!(
        (back["requests"].as_u64(), back["errors"].as_u64()),
        (Some(4), Some(3)),
        "answered once, no new failure: {back}"
    );
    assert!(back["ejected_for_ms"].is_null(), "{back}");
}

#[tokio::test]
async fn streams_a_large_body_both_ways() {
    let server = RedisServer::start();
    let (_url, _me) = registered_echo(&server, "echo").await;
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "echo", "the echo service", |routes| {
        routes.len() == 1
    })
    .await;
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (status, echoed) = send(
        r.addr,
        Method::POST,
        "/echo/upload",
        &[],
        Bytes::from(big.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed.len(), big.len());
    assert!(echoed == big, "the body came back intact");
}

#[tokio::test]
async fn hop_by_hop_headers_stay_and_forwarded_headers_are_set() {
    let server = RedisServer::start();
    let (url, _me) = registered_echo(&server, "echo").await;
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "echo", "the echo service", |routes| {
        routes.len() == 1
    })
    .await;
    let headers = [
        ("connection", "x-secret"),
        ("x-secret", "1"),
        ("x-kept", "1"),
        ("x-forwarded-for", "10.0.0.1"),
    ];
    let (status, body) = send(
        r.addr,
        Method::GET,
        "/echo/seen?q=1",
        &headers,
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = json(&String::from_utf8_lossy(&body));
    assert_eq!(seen["path"], "/seen", "the service prefix is stripped");
    let h = &seen["headers"];
    assert!(
        h.get("x-secret").is_none(),
        "named by Connection: not forwarded: {h}"
    );
    assert_eq!(h["x-kept"], "1");
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], r.addr.to_string());
    assert_eq!(
        h["host"],
        url.trim_start_matches("http://"),
        "Host is the instance's"
    );
}

#[tokio::test]
async fn the_prefix_can_be_kept() {
    let server = RedisServer::start();
    let (_url, _me) = registered_echo(&server, "echo").await;
    let r = router(&server, |c| c.strip_prefix = false).await;
    routes_become(&r.client, "echo", "the echo service", |routes| {
        routes.len() == 1
    })
    .await;
    let (_, body) = get(r.addr, "/echo/seen").await;
    assert_eq!(json(&body)["path"], "/echo/seen");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let server = RedisServer::start();
    // An upstream that says when a request arrived, then answers 300 ms later.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", upstream.local_addr().unwrap());
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = arrived.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                return;
            };
            let notify = notify.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let notify = notify.clone();
                    async move {
                        notify.notify_one();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"done"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let _slow = client(&server).await.register("slow", &url).await.unwrap();

    let gosd = client(&server).await;
    routes_become(&gosd, "slow", "the slow service", |routes| {
        routes.len() == 1
    })
    .await;
    let (addr, stop, serving) = serve_until_stopped(gosd).await;
    let in_flight = tokio::spawn(get(addr, "/slow/work"));
    arrived.notified().await;
    stop.send(()).unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "done"),
        "the in-flight request finished"
    );
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve returns once in-flight requests are done")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// Instances come and go, each at a URL of its own (as ephemeral ports
/// do), and each gets traffic; the router keeps counters for the live ones
/// only. The registry is the in-process one: this is about the router's
/// own bookkeeping, and 10,000 registrations through it take no network.
#[tokio::test]
async fn counters_stay_bounded_by_the_table_while_10000_urls_come_and_go() {
    let registry = gosd::MemoryDriver::new();
    let mut config = gosd::Config::default();
    config.cron = None;
    let gosd_client = gosd::Client::builder()
        .config(config)
        .driver(registry.clone())
        .build()
        .await
        .unwrap();
    let r = serve(gosd_client, |_| {}).await;
    // One upstream answers every URL: they differ by path, so each is a
    // distinct instance to the router.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", upstream.local_addr().unwrap());
    tokio::spawn(echo_upstream(upstream));
    let ttl = Duration::from_secs(600);
    let stable = gosd::InstanceName::new("stable", "1").unwrap();
    let stable_url = format!("{base}/stable");
    assert!(
        gosd::Driver::register(&registry, &stable, &stable_url, ttl)
            .await
            .unwrap()
    );
    routes_become(&r.client, "stable", "the stable instance", |routes| {
        routes.len() == 1
    })
    .await;
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get_path = async |path: &str| {
        let response = http
            .get(format!("http://{}{path}", r.addr).parse().unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, json(&String::from_utf8_lossy(&body)))
    };

    for i in 0..10_000 {
        let name = gosd::InstanceName::new("churn", &i.to_string()).unwrap();
        let url = format!("{base}/u{i}");
        assert!(
            gosd::Driver::register(&registry, &name, &url, ttl)
                .await
                .unwrap()
        );
        routes_become(&r.client, "churn", "the new instance alone", |routes| {
            routes.len() == 1 && routes[0].as_str() == url
        })
        .await;
        let (status, seen) = get_path("/churn/x").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen["path"], format!("/u{i}/x"), "routed to instance {i}");
        if i % 1000 == 0 {
            let (status, _) = get_path("/stable/x").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(tracked_urls(&r).await, 2, "the live set, at instance {i}");
        }
        assert!(
            gosd::Driver::deregister(&registry, &name, &url)
                .await
                .unwrap()
        );
    }
    routes_become(
        &r.client,
        "churn",
        "every churned instance gone",
        |routes| routes.is_empty(),
    )
    .await;
    assert_eq!(
        tracked_urls(&r).await,
        1,
        "only the stable instance is left"
    );
    let (_, services) = get(r.addr, "/-/services").await;
    let services = json(&services);
    assert_eq!(services["services"].as_array().map(Vec::len), Some(1));
    let instance = &services["services"][0]["instances"][0];
    assert_eq!(instance["url"], stable_url.as_str());
    assert_eq!(
        instance["requests"].as_u64(),
        Some(10),
        "its counters were kept"
    );
}

/// An instance's counters stay while other instances come and go; once it
/// leaves the table they go, and the same URL registered again starts
/// afresh. The failing instance is its service's only one, so it is never
/// ejected (fail open).
#[tokio::test]
async fn counters_survive_table_changes_while_registered_and_go_when_the_url_leaves() {
    let server = RedisServer::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let flaky = client(&server)
        .await
        .register("flaky", &dead)
        .await
        .unwrap();
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "flaky", "the flaky service", |routes| {
        routes.len() == 1
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(r.addr, "/flaky/x").await.0, StatusCode::BAD_GATEWAY);
    }
    let flaky_instance = async || instance_at(&r, "flaky", &dead).await;
    let before = flaky_instance().await;
    assert_eq!(before["errors"].as_u64(), Some(3));
    // The last instance of its service: failing, but never ejected.
    assert!(before["ejected_for_ms"].is_null(), "{before}");

    // Another instance comes, and the counters follow that table.
    let (_url, other) = registered_echo(&server, "echo").await;
    routes_become(&r.client, "echo", "the echo service", |routes| {
        routes.len() == 1
    })
    .await;
    assert_eq!(tracked_urls(&r).await, 2);
    let after = flaky_instance().await;
    assert_eq!(after["errors"].as_u64(), Some(3), "{after}");
    // Still routed to (fail open), and still counted.
    assert_eq!(get(r.addr, "/flaky/x").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(flaky_instance().await["errors"].as_u64(), Some(4));

    // It leaves: its counters go with it.
    flaky.finish().await.unwrap();
    routes_become(&r.client, "flaky", "the flaky instance gone", |routes| {
        routes.is_empty()
    })
    .await;
    assert_eq!(tracked_urls(&r).await, 1);
    drop(other);
    routes_become(&r.client, "echo", "the echo instance gone", |routes| {
        routes.is_empty()
    })
    .await;
    assert_eq!(tracked_urls(&r).await, 0);

    // The same URL again is a new instance to the router.
    let _again = client(&server)
        .await
        .register("flaky", &dead)
        .await
        .unwrap();
    routes_become(&r.client, "flaky", "the flaky service again", |routes| {
        routes.len() == 1
    })
    .await;
    assert_eq!(tracked_urls(&r).await, 1);
    let fresh = flaky_instance().await;
    assert_eq!(
        (fresh["requests"].as_u64(), fresh["errors"].as_u64()),
        (Some(0), Some(0)),
        "{fresh}"
    );
    assert!(fresh["ejected_for_ms"].is_null(), "{fresh}");
}

/// Reads `/-/events`, gosd-router's server-sent events, one event at a time.
struct Feed {
    body: Incoming,
    buffer: String,
}

impl Feed {
    async fn open(addr: SocketAddr) -> Self {
        let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::get(format!("http://{addr}/-/events"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[hyper::header::CONTENT_TYPE],
            "text/event-stream"
        );
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event as (kind, data), skipping the `retry:` advice; `None`
    /// once the router ends the feed.
    async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut kind, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event: ") {
                        kind = Some(k.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(json(d));
                    }
                }
                match (kind, data) {
                    (Some(kind), Some(data)) => return Some((kind, data)),
                    _ => continue,
                }
            }
            let frame = tokio::time::timeout(support::PATIENCE, self.body.frame())
                .await
                .expect("an event within PATIENCE")?
                .expect("the feed streams without an error");
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next `insert` or `remove`, skipping the counters.
    async fn next_change(&mut self) -> (String, serde_json::Value) {
        loop {
            let (kind, data) = self.next().await.expect("the feed goes on");
            if kind != "stats" {
                return (kind, data);
            }
        }
    }
}

/// The status page's feed: each instance there is, then each change as the
/// router's table takes it in, and this router's counters once a second.
#[tokio::test]
async fn the_live_feed_streams_instances_then_changes_and_counters() {
    let server = RedisServer::start();
    let (a_url, a) = registered_echo(&server, "svc").await;
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "svc", "a", |routes| routes.len() == 1).await;

    let mut feed = Feed::open(r.addr).await;
    assert_eq!(
        feed.next_change().await,
        (
            "insert".into(),
            serde_json::json!({ "service": "svc", "name": a.name(), "url": a_url })
        )
    );
    let (status, _) = get(r.addr, "/svc/hello").await;
    assert_eq!(status, StatusCode::OK);
    loop {
        let (kind, data) = feed.next().await.expect("the feed goes on");
        if kind == "stats" && data["services"][0]["instances"][0]["requests"] == 1 {
            assert_eq!(data["services"][0]["instances"][0]["name"], a.name());
            break;
        }
    }

    let (b_url, b) = registered_echo(&server, "other").await;
    assert_eq!(
        feed.next_change().await,
        (
            "insert".into(),
            serde_json::json!({ "service": "other", "name": b.name(), "url": b_url })
        )
    );
    let b_name = b.name();
    b.finish().await.unwrap();
    assert_eq!(
        feed.next_change().await,
        (
            "remove".into(),
            serde_json::json!({ "service": "other", "name": b_name })
        )
    );
}

/// An open status page must not hold up a graceful shutdown: its feed ends
/// when the router stops accepting.
#[tokio::test]
async fn shutdown_ends_open_feeds() {
    let server = RedisServer::start();
    let (_, _a) = registered_echo(&server, "svc").await;
    let gosd = client(&server).await;
    routes_become(&gosd, "svc", "a", |routes| routes.len() == 1).await;
    let (addr, stop, serving) = serve_until_stopped(gosd).await;
    let mut feed = Feed::open(addr).await;
    assert_eq!(feed.next_change().await.0, "insert");
    stop.send(()).unwrap();
    tokio::time::timeout(support::PATIENCE, serving)
        .await
        .expect("serve returns although a feed was open")
        .unwrap();
    while let Some((kind, _)) = feed.next().await {
        assert_eq!(kind, "stats", "nothing but counters before the end");
    }
}

/// An instance that closes its idle connections, without saying so (no
/// `Connection: close`), between two requests, as an instance with an idle
/// timeout would: the router's pooled connection to it is stale by the next
/// request. Each request must still succeed, on a fresh connection, and
/// none counts as a failure of the instance.
#[tokio::test]
async fn a_connection_the_instance_closed_while_pooled_is_not_a_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = RedisServer::start();
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", upstream.local_addr().unwrap());
    // Bumped to close every idle connection; each connection task reports
    // when it has closed its socket.
    let (close_idle, idle_closer) = tokio::sync::watch::channel(0u32);
    let (closed, mut closings) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = upstream.accept().await else {
                return;
            };
            let mut close = idle_closer.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                close.borrow_and_update();
                let mut buf = [0u8; 4096];
                loop {
                    let mut request = Vec::new();
                    while !request.ends_with(b"\r\n\r\n") {
                        let n = tokio::select! {
                            n = stream.read(&mut buf) => n.unwrap_or(0),
                            _ = close.changed() => 0,
                        };
                        if n == 0 {
                            drop(stream);
                            let _ = closed.send(());
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let _me = client(&server)
        .await
        .register("closer", &url)
        .await
        .unwrap();
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "closer", "the instance", |routes| {
        routes.len() == 1
    })
    .await;
    let mut open = 0;
    for n in 0..10 {
        let (status, body) = get(r.addr, "/closer/x").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok"),
            "request {n}"
        );
        // The router keeps its connection; the instance now closes it.
        open += 1;
        close_idle.send_modify(|c| *c += 1);
        while open > 0 {
            closings.recv().await.expect("the upstream runs");
            open -= 1;
        }
    }
    let (_, services) = get(r.addr, "/-/services").await;
    let instance = &json(&services)["services"][0]["instances"][0];
    assert_eq!(
        (&instance["requests"], &instance["errors"]),
        (&serde_json::json!(10), &serde_json::json!(0)),
        "{instance}"
    );
}

#[tokio::test]
async fn a_draining_instance_gets_no_requests_and_the_services_page_shows_its_status_and_metadata()
{
    let server = RedisServer::start();
    let mut echoes = Vec::new();
    for version in ["1", "2"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(echo_upstream(listener));
        let provider = gosd::Client::builder()
            .config(support::config(&server))
            .metadata("version", version)
            .build()
            .await
            .unwrap();
        let me = provider.register("svc", &url).await.unwrap();
        echoes.push((url, me, provider));
    }
    let r = router(&server, |_| {}).await;
    routes_become(&r.client, "svc", "both", |routes| routes.len() == 2).await;
    let (draining_url, draining, _) = &echoes[0];
    draining.set_status(gosd::Status::Draining).await.unwrap();
    support::eventually("the router sees it draining", || {
        r.client
            .instances()
            .iter()
            .any(|i| i.url.as_str() == draining_url && i.meta.status == gosd::Status::Draining)
    })
    .await;
    for _ in 0..6 {
        assert_eq!(get(r.addr, "/svc/x").await.0, StatusCode::OK);
    }
    let (_, services) = get(r.addr, "/-/services").await;
    let services = json(&services);
    let instances = services["services"][0]["instances"].as_array().unwrap();
    let of = |url: &str| instances.iter().find(|i| i["url"] == url).unwrap().clone();
    let (d, up) = (of(draining_url), of(&echoes[1].0));
    assert_eq!(d["status"], "draining", "{d}");
    assert_eq!(d["meta"]["version"], "1", "{d}");
    assert_eq!(d["requests"].as_u64(), Some(0), "no new requests: {d}");
    assert_eq!(up["status"], "up", "{up}");
    assert_eq!(up["meta"]["version"], "2", "{up}");
    assert_eq!(up["requests"].as_u64(), Some(6), "{up}");
}
