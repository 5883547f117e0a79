//! `gosd::tonic::balanced_channel` and the gRPC examples, against real
//! provider processes and a real redis-server: calls spread over the
//! instances, a new one gets calls, a deregistered one gets none.

mod support;

use std::collections::HashMap;

use support::{Proc, RedisServer, free_port, routes_become};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "grpc-provider";

/// A gRPC provider example numbered `n`, once it has registered.
fn provider(server: &RedisServer, n: &str) -> Proc {
    let port = format!(":{}", free_port());
    let mut p = Proc::spawn("grpc_provider", &[&port, n], server, &[]);
    let line = p.next_line().expect("grpc_provider printed nothing");
    assert!(line.starts_with("registered as "), "{line:?}");
    p
}

/// `n` health checks: how many each provider answered.
async fn calls(channel: &tonic::transport::Channel, n: usize) -> HashMap<String, usize> {
    let mut health = HealthClient::new(channel.clone());
    let mut by = HashMap::new();
    for _ in 0..n {
        let answer = health.check(HealthCheckRequest::default()).await.unwrap();
        let who = answer
            .metadata()
            .get("x-provider")
            .unwrap()
            .to_str()
            .unwrap();
        *by.entry(who.to_owned()).or_default() += 1;
    }
    by
}

#[test]
fn the_grpc_consumer_is_balanced_over_every_provider() {
    let server = RedisServer::start();
    let _p1 = provider(&server, "1");
    let _p2 = provider(&server, "2");
    let mut consumer = Proc::spawn("grpc_consumer", &["40"], &server, &[]);
    assert_eq!(consumer.wait(), Some(0));
    let lines = consumer.lines();
    assert_eq!(lines.len(), 40, "{lines:?}");
    // p2c chooses at random between equals: all 40 to one provider would
    // be a one-in-2^39 event (or a provider the channel never had).
    for n in ["1", "2"] {
        let want = format!("Provider: {n}");
        assert!(lines.contains(&want), "{lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balanced_channel_follows_the_registry() {
    let server = RedisServer::start();
    let client = support::client(&server).await;
    let p1 = provider(&server, "1");
    let _p2 = provider(&server, "2");
    routes_become(&client, SERVICE, "two providers", |r| r.len() == 2).await;
    let channel = gosd::tonic::balanced_channel(&client, SERVICE);
    let by = calls(&channel, 40).await;
    assert!(by.contains_key("1") && by.contains_key("2"), "{by:?}");

    let _p3 = provider(&server, "3");
    routes_become(&client, SERVICE, "the third", |r| r.len() == 3).await;
    // The channel's feed runs beside the table: wait until a call lands.
    let mut third = 0;
    for _ in 0..20 {
        third += calls(&channel, 10).await.get("3").copied().unwrap_or(0);
        if third > 0 {
            break;
        }
    }
    assert!(third > 0, "the third provider never got a call");

    let mut p1 = p1;
    p1.signal("TERM");
    routes_become(&client, SERVICE, "the first gone", |r| r.len() == 2).await;
    // The channel's feed takes the removal from the same notification as
    // the wait above, in a task of its own; the provider exits only after
    // deregistering, by when the feed has long had it. A call that went to
    // it anyway would fail, and fail the test.
    assert_eq!(p1.wait(), Some(143));
    let by = calls(&channel, 40).await;
    assert!(!by.contains_key("1"), "{by:?}");
}
