//! `/-/metrics` as a real Prometheus sees it: Debian's prometheus, started
//! here, scrapes the router every second, and its query API must show the
//! router's request counter rise with traffic.
//!
//! One test in this file: a process has one `metrics` recorder.

#[path = "../../tests/support/mod.rs"]
mod support;
// The process spawner alone (support loads its own copy for its servers).
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/support/spawned.rs"]
mod spawned;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gosd_router::{MetricsError, Router, RouterConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spawned::{Log, spawn_until_ready};
use support::{RedisServer, client, free_port, routes_become};
use tokio::net::TcpListener;

/// A Prometheus server scraping `target`'s `/-/metrics`; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: router\n    \
                 metrics_path: /-/metrics\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let child = spawn_until_ready(
            cmd,
            Log::Stderr,
            &["Server is ready to receive web requests"],
            Duration::from_secs(60),
            "prometheus is missing: the metrics test scrapes the router with a real one. \
             Install it with `apt-get install -y prometheus`, or run `scripts/test`, which does.",
        )
        .expect("prometheus became ready within 60 s");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's single result; `None` while it has
    /// none.
    async fn value(&self, query: &str) -> Option<f64> {
        let query: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = get(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            &format!("/api/v1/query?query={query}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "prometheus answered {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An upstream answering every request 200 "ok".
async fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_routers_request_counter_as_it_rises() {
    gosd_router::install_metrics().unwrap();
    assert!(
        matches!(
            gosd_router::install_metrics(),
            Err(MetricsError::AlreadyInstalled)
        ),
        "a second install is refused"
    );
    let server = RedisServer::start();
    let url = upstream().await;
    let _provider = client(&server).await.register("svc", &url).await.unwrap();
    let gosd = client(&server).await;
    routes_become(&gosd, "svc", "the provider", |r| r.len() == 1).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        Router::new(gosd, RouterConfig::default()).serve(listener, async move {
            let _ = stopped.await;
        }),
    );

    for _ in 0..5 {
        assert_eq!(get(addr, "/svc/x").await.0, StatusCode::OK);
    }
    assert_eq!(
        get(addr, "/nothing-here/x").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, text) = get(addr, "/-/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "gosd_router_requests_total{",
        "gosd_router_upstream_duration_seconds_bucket{",
        "gosd_router_unrouted_requests_total{reason=\"no_instance\"} 1",
        "gosd_router_in_flight_requests 0",
    ] {
        assert!(text.contains(name), "/-/metrics has {name}:\n{text}");
    }

    let prometheus = Prometheus::scraping(addr);
    let requests = "gosd_router_requests_total{service=\"svc\",class=\"2xx\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while seen != Some(5.0) {
        assert!(
            Instant::now() < deadline,
            "prometheus never saw 5 requests (last: {seen:?})"
        );
        seen = prometheus.value(requests).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..3 {
        assert_eq!(get(addr, "/svc/x").await.0, StatusCode::OK);
    }
    while seen != Some(8.0) {
        assert!(
            Instant::now() < deadline,
            "prometheus never saw the counter rise to 8 (last: {seen:?})"
        );
        seen = prometheus.value(requests).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
