//! The reqwest middleware (`gosd::reqwest::Discovery`) against real
//! provider processes and a real redis-server: spreading, new and leaving
//! providers, a `kill -9` with no failed request, the retry budget, the
//! fail-open rule, and hosts that are not services.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gosd::reqwest::{Discovery, Picked, RetryBudget};
use gosd::{Client, Route};
use reqwest_middleware::ClientWithMiddleware;
use support::{Proc, RedisServer, routes_become};

fn http(client: &Client, budget: RetryBudget) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Discovery::new(client.clone()).with_retry_budget(budget))
        .build()
}

/// `n` GETs of `http://provider/ping`: which route answered each, and how
/// many failed.
async fn pings(http: &ClientWithMiddleware, n: usize) -> (Vec<Route>, usize) {
    let (picked, failed) = picks(http, n).await;
    (picked.into_iter().map(|p| p.route).collect(), failed)
}

/// [`pings`], with what the middleware says of each answer.
async fn picks(http: &ClientWithMiddleware, n: usize) -> (Vec<Picked>, usize) {
    let mut answered = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match http.get("http://provider/ping").send().await {
            Ok(r) if r.status().is_success() => {
                answered.push(r.extensions().get::<Picked>().expect("Picked").clone());
            }
            Ok(r) => panic!("status {}", r.status()),
            Err(e) => {
                eprintln!("failed: {e}");
                failed += 1;
            }
        }
    }
    (answered, failed)
}

fn counts(routes: &[Route]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for r in routes {
        *by.entry(r.to_string()).or_default() += 1;
    }
    by
}

#[test]
fn the_example_spreads_requests_over_two_providers() {
    let server = RedisServer::start();
    let (_p1, _, _) = Proc::provider(&server, "1", &[]);
    let (_p2, _, _) = Proc::provider(&server, "2", &[]);
    let mut consumer = Proc::spawn("reqwest_consumer", &["10"], &server, &[]);
    assert_eq!(consumer.wait(), Some(0));
    let lines = consumer.lines();
    for n in ["1", "2"] {
        let got = lines
            .iter()
            .filter(|l| **l == format!("\"Provider: {n}\""))
            .count();
        assert_eq!(got, 5, "{lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_that_come_and_go_get_traffic_and_a_killed_one_costs_no_request() {
    let server = RedisServer::start();
    let client = support::client(&server).await;
    let (mut p1, _, url1) = Proc::provider(&server, "1", &[]);
    let (_p2, _, url2) = Proc::provider(&server, "2", &[]);
    routes_become(&client, "provider", "two providers", |r| r.len() == 2).await;
    let http = http(&client, RetryBudget::default());

    let (answered, failed) = pings(&http, 10).await;
    assert_eq!(failed, 0);
    let by = counts(&answered);
    assert_eq!((by[&url1], by[&url2]), (5, 5), "{by:?}");

    // A third one gets its share as soon as the table has it.
    let (p3, _, url3) = Proc::provider(&server, "3", &[]);
    routes_become(&client, "provider", "the third", |r| r.len() == 3).await;
    let (answered, failed) = pings(&http, 9).await;
    assert_eq!(failed, 0);
    assert_eq!(counts(&answered)[&url3], 3, "{answered:?}");

    // SIGTERM: it deregisters, and gets nothing once that is pushed.
    p3.signal("TERM");
    routes_become(&client, "provider", "the third gone", |r| r.len() == 2).await;
    let (answered, failed) = pings(&http, 10).await;
    assert_eq!(failed, 0);
    assert!(!counts(&answered).contains_key(&url3), "{answered:?}");

    // kill -9: still registered (its lease runs for 10 s), so the
    // middleware meets a refused connection, retries on the other, and
    // the detector ejects it.
    p1.child.kill().unwrap();
    p1.wait();
    let (picked, failed) = picks(&http, 20).await;
    assert_eq!(failed, 0, "every request answered");
    assert!(picked.iter().all(|p| *p.route == url2), "{picked:?}");
    let retried = picked.iter().filter(|p| p.attempts == 2).count();
    assert_eq!(retried, 3, "retried until ejected: {picked:?}");
    let routes: Vec<String> = client
        .routes("provider")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(routes, [url2], "the killed one ejected");
}

/// A listener that accepts connections and closes them at once, counting
/// them: an instance that never answers, whose attempts can be counted.
struct Closing {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl Closing {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { url, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A client of its own registry, with `config` changed by `tune`.
async fn local_client(tune: impl FnOnce(&mut gosd::Config)) -> Client {
    let mut config = gosd::Config::default();
    config.cron = None;
    config.try_find_service_amount = 1;
    config.try_find_service_delay = std::time::Duration::ZERO;
    tune(&mut config);
    Client::builder()
        .config(config)
        .driver(gosd::MemoryDriver::new())
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn with_every_instance_failing_retries_stay_within_the_budget() {
    // No ejection, so that every request could be retried: only the budget
    // holds them back.
    let client = local_client(|c| c.eject_for = std::time::Duration::ZERO).await;
    let (a, b) = (Closing::start().await, Closing::start().await);
    client.add_service_manually("provider", &a.url).unwrap();
    client.add_service_manually("provider", &b.url).unwrap();
    let http = http(&client, RetryBudget::new(0.2, 0));
    let requests = 50;
    let (answered, failed) = pings(&http, requests).await;
    assert_eq!((answered.len(), failed), (0, requests));
    let attempts = a.accepted() + b.accepted();
    let retries = attempts - requests;
    assert!(
        retries <= requests / 5,
        "{retries} retries for {requests} requests"
    );
    assert!(retries > 0, "the budget allows some");
}

#[tokio::test]
async fn the_last_instance_is_never_ejected() {
    let client = local_client(|_| {}).await;
    let (dead, alive) = (Closing::start().await, Closing::start().await);
    client.add_service_manually("provider", &dead.url).unwrap();
    client.add_service_manually("provider", &alive.url).unwrap();
    let http = http(&client, RetryBudget::none());
    let (_, failed) = pings(&http, 20).await;
    assert_eq!(failed, 20);
    // One of them went out at its third failure; the other failed as often
    // and more, and stays: something to try beats nothing.
    let routes = client.routes("provider");
    assert_eq!(routes.len(), 1, "{routes:?}");
    let last = if routes[0].as_str() == dead.url {
        &dead
    } else {
        &alive
    };
    let other = if std::ptr::eq(last, &dead) {
        &alive
    } else {
        &dead
    };
    assert_eq!(other.accepted(), 3, "ejected at its third failure");
    assert_eq!(last.accepted(), 17, "every other request still reached it");
}

#[tokio::test]
async fn a_host_that_is_not_a_service_passes_through_untouched() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/echo",
        get(
            |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                format!("{uri} {host}")
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = local_client(|_| {}).await;
    // Even a service of the same name as the host part would not matter:
    // a port makes it a real address.
    client
        .add_service_manually("provider", "http://10.255.255.1:9")
        .unwrap();
    let http = http(&client, RetryBudget::default());
    let r = http
        .get(format!("http://{addr}/echo?x=1"))
        .send()
        .await
        .unwrap();
    assert!(r.extensions().get::<Picked>().is_none());
    assert_eq!(r.text().await.unwrap(), format!("/echo?x=1 {addr}"));
}

#[tokio::test]
async fn a_service_with_no_instance_is_a_typed_no_route() {
    let client = local_client(|_| {}).await;
    let http = http(&client, RetryBudget::default());
    let e = http.get("http://nobody/x").send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(e) = e else {
        panic!("{e:?}")
    };
    match e.downcast_ref::<gosd::Error>() {
        Some(gosd::Error::NoRoute(service)) => assert_eq!(service, "nobody"),
        other => panic!("{other:?}"),
    }
}
