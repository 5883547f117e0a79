//! gosd-router's README promises, each against a real redis-server and real
//! upstreams: the timeout path, no retry of a request that cannot be sent
//! twice, the default ejection (3 in a row, 10 s), upstream connection
//! pooling counted at the upstream, and the `GOSD_ROUTER_*` settings read
//! by the binary.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gosd_router::{Router, RouterConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{RedisServer, client, free_port, routes_become};
use tokio::net::TcpListener;

/// The router over its own client of `server`, on a free port, until dropped.
struct Running {
    addr: SocketAddr,
    client: gosd::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn router(server: &RedisServer, config: RouterConfig) -> Running {
    let client = client(server).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        Router::new(client.clone(), config).serve(listener, async move {
            let _ = stopped.await;
        }),
    );
    Running {
        addr,
        client,
        _stop: stop,
    }
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &'static str,
) -> (StatusCode, String) {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = http.request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    send(addr, Method::GET, path, "").await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An upstream answering every request with `ok <path>`; counts the
/// connections it accepted and the requests it served.
#[derive(Clone, Default)]
struct Upstream {
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> (String, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let me = Self::default();
        let counts = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let requests = counts.requests.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let body = format!("ok {}", req.uri().path());
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, me)
    }
}

/// An upstream that accepts connections and never answers.
async fn silent_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

/// A URL nothing listens on: connecting is refused.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

async fn register(server: &RedisServer, service: &str, url: &str) -> gosd::Registration {
    client(server).await.register(service, url).await.unwrap()
}

#[tokio::test]
async fn an_instance_that_does_not_answer_in_time_is_502_or_retried_on_another() {
    let server = RedisServer::start();
    let silent = silent_upstream().await;
    let _alone = register(&server, "silent", &silent).await;
    let (live, _) = Upstream::start().await;
    let _mixed_silent = register(&server, "mixed", &silent).await;
    let _mixed_live = register(&server, "mixed", &live).await;
    let mut config = RouterConfig::default();
    config.timeout = Duration::from_millis(300);
    let r = router(&server, config).await;
    routes_become(&r.client, "mixed", "both instances", |routes| {
        routes.len() == 2
    })
    .await;
    routes_become(&r.client, "silent", "the silent one", |routes| {
        routes.len() == 1
    })
    .await;

    // Well before the default 30 s: the configured timeout is the one that
    // applies (PATIENCE is a hang guard, not a threshold on the 300 ms).
    let (status, body) = tokio::time::timeout(support::PATIENCE, get(r.addr, "/silent/x"))
        .await
        .expect("an answer within PATIENCE, well before the default 30 s timeout");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let body = json(&body);
    assert_eq!(body["error"], "no answer within 300ms", "{body}");
    assert_eq!(body["instance"], silent.as_str());
    // A GET without a body that timed out is sent to the other instance.
    for _ in 0..2 {
        assert_eq!(
            get(r.addr, "/mixed/y").await,
            (StatusCode::OK, "ok /y".into())
        );
    }
}

#[tokio::test]
async fn a_request_with_a_body_or_a_non_idempotent_method_is_not_retried() {
    let server = RedisServer::start();
    let (live, upstream) = Upstream::start().await;
    let _dead = register(&server, "half", &dead_url()).await;
    let _live = register(&server, "half", &live).await;
    let r = router(&server, RouterConfig::default()).await;
    routes_become(&r.client, "half", "both instances", |routes| {
        routes.len() == 2
    })
    .await;

    // Round-robin: of two requests in a row, one goes to each instance. The
    // one sent to the dead instance comes back 502 after one attempt.
    for (method, body) in [(Method::POST, ""), (Method::PUT, "a body")] {
        let served = upstream.requests.load(Ordering::SeqCst);
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let (status, answer) = send(r.addr, method.clone(), "/half/z", body).await;
            outcomes.push((status, answer));
        }
        let failed: Vec<_> = outcomes
            .iter()
            .filter(|(s, _)| *s == StatusCode::BAD_GATEWAY)
            .collect();
        assert_eq!(failed.len(), 1, "{method} {body:?}: {outcomes:?}");
        assert_eq!(json(&failed[0].1)["attempts"], 1, "{method}: not retried");
        assert_eq!(
            upstream.requests.load(Ordering::SeqCst) - served,
            1,
            "{method}: the live instance got only its own request"
        );
    }
    // The control: a GET without a body is retried, so both succeed.
    for _ in 0..2 {
        assert_eq!(get(r.addr, "/half/z").await.0, StatusCode::OK);
    }
}

/// Two dead instances: each GET tries one and is retried on the other, so
/// both fail once per request. The third request gives the first one tried
/// its third failure in a row: it is ejected for 10 s. The other, then the
/// service's last, stays (fail open).
#[tokio::test]
async fn by_default_three_failures_in_a_row_eject_an_instance_for_10_s_but_never_the_last() {
    let server = RedisServer::start();
    let dead = [dead_url(), dead_url()];
    let _dead = [
        register(&server, "flaky", &dead[0]).await,
        register(&server, "flaky", &dead[1]).await,
    ];
    let r = router(&server, RouterConfig::default()).await;
    routes_become(&r.client, "flaky", "the instances", |routes| {
        routes.len() == 2
    })
    .await;
    let ejected_for = async || {
        let (_, services) = get(r.addr, "/-/services").await;
        let services = json(&services);
        let instances = services["services"][0]["instances"]
            .as_array()
            .unwrap()
            .clone();
        let mut left: Vec<_> = instances
            .iter()
            .map(|i| i["ejected_for_ms"].as_u64())
            .collect();
        left.sort();
        (left, services)
    };
    for _ in 0..2 {
        assert_eq!(get(r.addr, "/flaky/x").await.0, StatusCode::BAD_GATEWAY);
    }
    let (after_two, page) = ejected_for().await;
    assert_eq!(after_two, [None, None], "ejected after 2: {page}");
    assert_eq!(get(r.addr, "/flaky/x").await.0, StatusCode::BAD_GATEWAY);
    let (after_three, page) = ejected_for().await;
    let [None, Some(left)] = after_three[..] else {
        panic!("not one ejected and one kept after 3: {page}");
    };
    // The default cooldown is 10 s: what is left of it, read right after.
    assert!(
        left <= 10_000 && left > 5_000,
        "ejected for {left} ms, not a 10 s cooldown: {page}"
    );
    // The last one is tried alone now, and still not ejected.
    assert_eq!(get(r.addr, "/flaky/x").await.0, StatusCode::BAD_GATEWAY);
    let (after_four, page) = ejected_for().await;
    assert!(
        matches!(after_four[..], [None, Some(_)]),
        "the last one ejected, or the first back early: {page}"
    );
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let server = RedisServer::start();
    let (url, upstream) = Upstream::start().await;
    let _me = register(&server, "pooled", &url).await;
    let r = router(&server, RouterConfig::default()).await;
    routes_become(&r.client, "pooled", "the instance", |routes| {
        routes.len() == 1
    })
    .await;
    // 20 requests one after another, each on a new client connection to
    // the router: the router reuses one upstream connection for all.
    for i in 0..20 {
        assert_eq!(
            get(r.addr, &format!("/pooled/{i}")).await,
            (StatusCode::OK, format!("ok /{i}"))
        );
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 20);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "upstream connections accepted for 20 sequential requests"
    );
}

/// The router binary; killed on drop.
struct RouterProcess(Child);

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `gosd-router` binary over `server` with `env`.
fn router_process(server: &RedisServer, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosd-router"));
    cmd.env("gosdRedisAddr", server.addr())
        .env("GOSD_CRON", "off")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `GET path` over a fresh connection; the whole response as text.
fn get_text(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the router");
    // A hang guard, shorter than the router's default 30 s timeout.
    stream.set_read_timeout(Some(support::PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_its_gosd_router_settings() {
    let server = RedisServer::start();
    let (url, _) = Upstream::start().await;
    let _kept = register(&server, "kept", &url).await;
    let silent = silent_upstream().await;
    let _silent = register(&server, "silent", &silent).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = router_process(
        &server,
        &[
            ("GOSD_ROUTER_ADDR", &addr),
            ("GOSD_ROUTER_STRIP_PREFIX", "false"),
            ("GOSD_ROUTER_TIMEOUT", "300ms"),
        ],
    )
    .spawn()
    .expect("run gosd-router");
    let stdout = child.stdout.take().unwrap();
    let _router = RouterProcess(child);
    let mut ready = String::new();
    BufReader::new(stdout).read_line(&mut ready).unwrap();
    assert_eq!(
        ready.trim(),
        format!("gosd-router listening on http://{addr}")
    );

    let addr2 = addr.clone();
    let (kept, silent_answer) = tokio::task::spawn_blocking(move || {
        (
            get_text(&addr2, "/kept/seen"),
            get_text(&addr2, "/silent/x"),
        )
    })
    .await
    .unwrap();
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");
    assert!(
        kept.ends_with("ok /kept/seen"),
        "the prefix is kept: {kept}"
    );
    assert!(silent_answer.starts_with("HTTP/1.1 502"), "{silent_answer}");
    assert!(
        silent_answer.contains("no answer within 300ms"),
        "{silent_answer}"
    );
}

#[test]
fn the_binary_refuses_a_bad_setting_naming_the_variable() {
    let server = RedisServer::start();
    for (var, value) in [
        ("GOSD_ROUTER_ADDR", "localhost"),
        ("GOSD_ROUTER_STRIP_PREFIX", "perhaps"),
        ("GOSD_ROUTER_TIMEOUT", "soon"),
        ("GOSD_ROUTER_TIMEOUT", "0"),
    ] {
        let out = router_process(&server, &[(var, value)]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("gosd-router: invalid {var}={value:?}")),
            "{var}={value}: {stderr}"
        );
    }
}
