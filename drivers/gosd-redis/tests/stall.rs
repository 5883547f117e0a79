//! The stall rule of the scripts (see `scripts.rs`) against a real
//! redis-server stopped with SIGSTOP: what the registry learns of the
//! fleet's heartbeat must survive the burst of renewals that a stall
//! queues up.

#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use gosd_driver::{Driver, InstanceName, Renewal};
use gosd_redis::RedisDriver;
use redis_server::RedisServer;

const TTL: Duration = Duration::from_secs(1);

fn name(n: &str) -> InstanceName {
    InstanceName::new("svc", n).expect("name")
}

fn signal(server: &RedisServer, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig}");
}

/// Two renewals of one lease a moment apart (a client retrying, or the
/// renewals a stall queued up) are not a heartbeat: were they taken for
/// one, the next stall's grace would be a few milliseconds, and an
/// instance renewing a moment after the resume would find itself reaped.
#[tokio::test]
async fn a_burst_of_renewals_does_not_shrink_the_grace_after_a_stall() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    let (a, b) = (name("a"), name("b"));
    assert!(d.register(&a, "http://a", TTL).await.unwrap());
    assert!(d.register(&b, "http://b", TTL).await.unwrap());
    // The burst: a's lease renewed twice in a row.
    for _ in 0..2 {
        assert_eq!(
            d.renew(&a, "http://a", TTL).await.unwrap(),
            Renewal::Renewed
        );
    }
    assert_eq!(
        d.renew(&b, "http://b", TTL).await.unwrap(),
        Renewal::Renewed
    );

    // The fault: the registry frozen for longer than the TTL.
    signal(&server, "STOP");
    std::thread::sleep(TTL + TTL / 2);
    signal(&server, "CONT");

    // a's renewal is the first script after the stall: b's lease is moved
    // to run out a heartbeat from now. A read a moment later reaps what
    // ran out; then b's renewal, late by that moment, must still find it.
    assert_eq!(
        d.renew(&a, "http://a", TTL).await.unwrap(),
        Renewal::Renewed
    );
    tokio::time::sleep(Duration::from_millis(50)).await; // b's lateness: the fault's shape
    d.snapshot().await.expect("a read");
    assert_eq!(
        d.renew(&b, "http://b", TTL).await.unwrap(),
        Renewal::Renewed,
        "b was reaped: the grace after the stall was shorter than 50 ms"
    );
}
