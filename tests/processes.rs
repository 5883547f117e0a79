//! The examples as real processes against a real redis-server: the seed's
//! provider/consumer alternation, crashes and signals.

mod support;

use std::time::{Duration, Instant};

use support::{Proc, RedisServer, client, eventually, registry};

#[test]
fn two_providers_and_a_consumer_alternate_strictly() {
    let server = RedisServer::start();
    let (_p1, _, _) = Proc::provider(&server, "1", &[]);
    let (_p2, _, _) = Proc::provider(&server, "2", &[]);
    let mut consumer = Proc::spawn("consumer", &["10"], &server, &[]);
    assert_eq!(consumer.wait(), Some(0));
    let lines = consumer.lines();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {lines:?}");
    }
    assert_eq!(
        lines.iter().filter(|l| *l == "\"Provider: 1\"").count(),
        5,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "\"Provider: 2\"").count(),
        5,
        "{lines:?}"
    );
}

#[test]
fn consumer_without_providers_exits_nonzero_saying_why() {
    let server = RedisServer::start();
    let out = std::process::Command::new(support::example("consumer"))
        .args(["3", "nobody"])
        .env("gosdRedisAddr", server.addr())
        .env("gosdTryFindServiceAmount", "1")
        .env("gosdTryFindServiceDelay", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no route to service \"nobody\""),
        "{stderr}"
    );
}

#[test]
fn sigterm_deregisters_then_exits_143() {
    let server = RedisServer::start();
    let (mut p, name, _) = Proc::provider(&server, "1", &[]);
    assert_eq!(registry(&server).len(), 1);
    p.signal("TERM");
    assert_eq!(p.wait(), Some(143));
    assert!(
        registry(&server).iter().all(|(f, _)| *f != name),
        "deregistered before exit"
    );
}

#[test]
fn sigint_deregisters_then_exits_130() {
    let server = RedisServer::start();
    let (mut p, _, _) = Proc::provider(&server, "1", &[]);
    p.signal("INT");
    assert_eq!(p.wait(), Some(130));
    assert!(registry(&server).is_empty());
}

#[test]
fn drain_deregisters_first_and_exits_after_the_drain() {
    let server = RedisServer::start();
    let (mut p, _, _) = Proc::provider(&server, "1", &[("GOSD_DRAIN", "2s")]);
    p.signal("TERM");
    support::wait_until("deregistered", || registry(&server).is_empty());
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "deregistered while still draining"
    );
    assert_eq!(p.wait(), Some(143), "exits once the drain is over");
}

#[tokio::test]
async fn kill_9_provider_is_gone_from_hash_and_tables_within_ttl_plus_1s() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let consumer = client(&server).await; // cron off: lease expiry alone must do it
    let (mut p, name, url) = Proc::provider(&server, "1", &[("GOSD_TTL", "1s")]);
    consumer.get().await.unwrap();
    assert_eq!(
        consumer
            .routes("provider")
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        [url]
    );

    p.child.kill().unwrap(); // SIGKILL: nothing runs in the provider
    let killed = Instant::now();
    p.child.wait().unwrap();
    eventually("evicted from the consumer's table", || {
        consumer.routes("provider").is_empty()
    })
    .await;
    eventually("reaped from the hash", || {
        registry(&server).iter().all(|(f, _)| *f != name)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("kill -9 -> evicted everywhere in {took:?} (TTL {ttl:?})");
    assert!(took <= ttl + Duration::from_secs(1), "took {took:?}");
}
