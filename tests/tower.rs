//! `Client::discover` under tower's p2c balancer, against real provider
//! processes and a real redis-server: requests spread over the instances,
//! a new one gets traffic, a deregistered one gets none.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gosd::Route;
use support::{Proc, RedisServer, routes_become};
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{Service, ServiceExt};

/// `GET <route>/ping` for any request: the body.
#[derive(Clone)]
struct Ping {
    http: reqwest::Client,
    url: String,
}

impl Service<()> for Ping {
    type Response = String;
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<String, reqwest::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), reqwest::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let get = self.http.get(&self.url).send();
        Box::pin(async move { get.await?.error_for_status()?.text().await })
    }
}

async fn bodies<S>(balanced: &mut S, n: usize) -> Vec<String>
where
    S: Service<(), Response = String>,
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let body = balanced.ready().await.unwrap().call(()).await.unwrap();
        out.push(body);
    }
    out
}

fn count(bodies: &[String], n: &str) -> usize {
    let want = format!("\"Provider: {n}\"");
    bodies.iter().filter(|b| **b == want).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_over_discover_follows_the_registry() {
    let server = RedisServer::start();
    let client = support::client(&server).await;
    let (p1, _, _) = Proc::provider(&server, "1", &[]);
    let (_p2, _, _) = Proc::provider(&server, "2", &[]);
    routes_become(&client, "provider", "two providers", |r| r.len() == 2).await;
    let http = reqwest::Client::new();
    let discover = client.discover("provider", move |_, route: &Route| {
        let ping = Ping {
            http: http.clone(),
            url: format!("{route}/ping"),
        };
        PendingRequests::new(ping, CompleteOnResponse::default())
    });
    let mut balanced = Balance::new(discover);

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
