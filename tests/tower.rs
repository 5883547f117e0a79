//! `Client::discover` under tower's p2c balancer, against real providers
//! (processes, or HTTP servers in this process) and a real redis-server:
//! requests spread over the instances, a new one gets traffic, a
//! deregistered or draining one gets none, and a request in flight to an
//! instance set draining is answered.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gosd::tower::Discovered;
use gosd::{Client, InstanceName, Registration, Route, Status};
use support::{PATIENCE, Proc, RedisServer, only, picks_become, routes_become};
use tokio::sync::{Semaphore, mpsc};
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{BoxError, Service, ServiceExt};

/// `GET <route><path>`: the body of a 200 answer; any other status fails.
#[derive(Clone)]
struct Ping {
    http: reqwest::Client,
    route: String,
}

impl Service<&'static str> for Ping {
    type Response = String;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, path: &'static str) -> Self::Future {
        let get = self.http.get(format!("{}{path}", self.route)).send();
        Box::pin(async move {
            let answer = get.await?;
            match answer.status() {
                reqwest::StatusCode::OK => Ok(answer.text().await?),
                status => Err(format!("answered {status}").into()),
            }
        })
    }
}

type Balanced = Balance<
    Discovered<
        Box<dyn FnMut(&InstanceName, &Route) -> PendingRequests<Ping, CompleteOnResponse> + Send>,
    >,
    &'static str,
>;

/// p2c over the client's instances of `provider`, each by its pending requests.
fn balanced(client: &Client) -> Balanced {
    let http = reqwest::Client::new();
    let discover = client.discover(
        "provider",
        Box::new(move |_: &InstanceName, route: &Route| {
            let ping = Ping {
                http: http.clone(),
                route: route.to_string(),
            };
            PendingRequests::new(ping, CompleteOnResponse::default())
        }) as Box<dyn FnMut(&InstanceName, &Route) -> _ + Send>,
    );
    Balance::new(discover)
}

async fn bodies<S>(balanced: &mut S, n: usize) -> Vec<String>
where
    S: Service<&'static str, Response = String>,
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let body = balanced.ready().await.unwrap().call("/ping").await.unwrap();
        out.push(body);
    }
    out
}

fn count(bodies: &[String], n: &str) -> usize {
    let want = format!("\"Provider: {n}\"");
    bodies.iter().filter(|b| **b == want).count()
}

/// A provider in this process: a real HTTP server whose `/ping` answers
/// `"Provider: <n>"`, and whose `/slow` tells `arrived` it has a request,
/// then answers the same once `release` has a permit; registered as
/// `provider` by a client of its own.
struct InProcess {
    me: Registration,
    url: String,
    release: Arc<Semaphore>,
    _client: Client,
}

async fn in_process(
    server: &RedisServer,
    n: &'static str,
    arrived: mpsc::UnboundedSender<&'static str>,
) -> InProcess {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let release = Arc::new(Semaphore::new(0));
    let body = format!("\"Provider: {n}\"");
    let ping = {
        let body = body.clone();
        move || std::future::ready(body)
    };
    let slow = {
        let release = release.clone();
        move || async move {
            let _ = arrived.send(n);
            release.acquire().await.expect("never closed").forget();
            body
        }
    };
    let app = axum::Router::new()
        .route("/ping", get(ping))
        .route("/slow", get(slow));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder()
        .config(support::fast_config(server))
        .build()
        .await
        .unwrap();
    let me = client.register("provider", &url).await.unwrap();
    InProcess {
        me,
        url,
        release,
        _client: client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_over_discover_follows_the_registry() {
    let server = RedisServer::start();
    let client = support::client(&server).await;
    let (p1, _, _) = Proc::provider(&server, "1", &[]);
    let (_p2, _, _) = Proc::provider(&server, "2", &[]);
    routes_become(&client, "provider", "two providers", |r| r.len() == 2).await;
    let mut balanced = balanced(&client);

    // p2c picks at random between two: 40 requests all to one would be a
    // one-in-2^39 event.
    let got = bodies(&mut balanced, 40).await;
    assert!(count(&got, "1") > 0 && count(&got, "2") > 0, "{got:?}");

    // A new instance is in the balancer as soon as the table has it.
    let (_p3, _, _) = Proc::provider(&server, "3", &[]);
    routes_become(&client, "provider", "the third", |r| r.len() == 3).await;
    let got = bodies(&mut balanced, 60).await;
    assert!(count(&got, "3") > 0, "{got:?}");

    // SIGTERM: deregistered, and out of the balancer once that is pushed.
    p1.signal("TERM");
    routes_become(&client, "provider", "the first gone", |r| r.len() == 2).await;
    let got = bodies(&mut balanced, 40).await;
    assert_eq!(count(&got, "1"), 0, "{got:?}");
    assert_eq!(count(&got, "2") + count(&got, "3"), 40, "{got:?}");
}

/// Draining, through the balancer: the draining instance leaves it (the
/// stream removes it) while the other is up, and is back once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_leaves_the_balancer_until_it_is_up() {
    let server = RedisServer::start();
    let (arrived, _) = mpsc::unbounded_channel();
    let a = in_process(&server, "A", arrived.clone()).await;
    let b = in_process(&server, "B", arrived).await;
    let client = support::client(&server).await;
    routes_become(&client, "provider", "both", |r| r.len() == 2).await;
    let mut balanced = balanced(&client);
    // One-in-2^39 odds that p2c sends 40 requests all to one of two.
    let got = bodies(&mut balanced, 40).await;
    assert!(count(&got, "A") > 0 && count(&got, "B") > 0, "{got:?}");

    a.me.set_status(Status::Draining).await.unwrap();
    picks_become(&client, "provider", 4, "B only", only(&[&b.url])).await;
    let got = bodies(&mut balanced, 40).await;
    assert_eq!(count(&got, "B"), 40, "{got:?}");
    assert_eq!(balanced.len(), 1, "A left the balancer");

    a.me.set_status(Status::Up).await.unwrap();
    picks_become(&client, "provider", 4, "both", only(&[&a.url, &b.url])).await;
    let got = bodies(&mut balanced, 40).await;
    assert!(count(&got, "A") > 0, "A is back: {got:?}");
    assert_eq!(balanced.len(), 2);
}

/// Draining is a deploy without deregistration: a request in flight to the
/// instance set draining is answered (200), new picks and new requests go
/// only to the other instance, and the drained one keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_draining_instance_is_answered() {
    let server = RedisServer::start();
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let a = in_process(&server, "A", arrived.clone()).await;
    let b = in_process(&server, "B", arrived).await;
    let client = support::client(&server).await;
    routes_become(&client, "provider", "both", |r| r.len() == 2).await;
    let mut balanced = balanced(&client);

    // The slow request goes where p2c sends it: that one is drained.
    let slow = tokio::spawn(balanced.ready().await.unwrap().call("/slow"));
    let at = tokio::time::timeout(PATIENCE, arrivals.recv())
        .await
        .expect("the slow request arrives")
        .expect("a provider is alive");
    let (busy, other, other_n) = match at {
        "A" => (&a, &b, "B"),
        _ => (&b, &a, "A"),
    };
    busy.me.set_status(Status::Draining).await.unwrap();
    picks_become(
        &client,
        "provider",
        4,
        "the other only",
        only(&[&other.url]),
    )
    .await;
    let got = bodies(&mut balanced, 20).await;
    assert_eq!(count(&got, other_n), 20, "{got:?}");
    assert_eq!(balanced.len(), 1, "the draining one left the balancer");

    assert!(!slow.is_finished(), "held until released");
    busy.release.add_permits(1);
    let answer = tokio::time::timeout(PATIENCE, slow)
        .await
        .expect("the request in flight is answered")
        .expect("the task ran");
    assert_eq!(answer.unwrap(), format!("\"Provider: {at}\""));

    // Still registered, and its heartbeat still renews the lease.
    let name = busy.me.name();
    let lease = || -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg("{gosd}:leases")
            .arg(&name)
            .query(&mut server.connection())
            .unwrap()
    };
    let first = lease().expect("a draining instance keeps its lease");
    support::eventually("the lease renewed", || lease().is_some_and(|l| l > first)).await;
    assert!(support::registry(&server).contains(&(name.clone(), busy.url.clone())));
}
