//! Dropping a `Registration` deregisters, bounded in time, wherever the
//! drop happens: inside a runtime of either flavour, or after the runtime
//! is gone; and it returns while the registry hangs.

mod support;

use support::{RedisServer, client, registry};
use tokio::runtime::{Builder, Runtime};

fn register_in(rt: &Runtime, server: &RedisServer) -> gosd::Registration {
    rt.block_on(async {
        let c = client(server).await;
        c.register("provider", "http://localhost:3333")
            .await
            .unwrap()
    })
}

#[test]
fn drop_inside_a_multi_thread_runtime() {
    let server = RedisServer::start();
    let rt = Builder::new_multi_thread().enable_all().build().unwrap();
    let me = register_in(&rt, &server);
    assert_eq!(registry(&server).len(), 1);
    rt.block_on(async move { drop(me) });
    assert!(registry(&server).is_empty());
}

#[test]
fn drop_inside_a_current_thread_runtime() {
    let server = RedisServer::start();
    let rt = Builder::new_current_thread().enable_all().build().unwrap();
    let me = register_in(&rt, &server);
    rt.block_on(async move { drop(me) });
    assert!(registry(&server).is_empty());
}

#[test]
fn drop_after_the_runtime_shut_down() {
    let server = RedisServer::start();
    let rt = Builder::new_multi_thread().enable_all().build().unwrap();
    let me = register_in(&rt, &server);
    drop(rt);
    drop(me);
    assert!(registry(&server).is_empty());
}

/// The drop is bounded (1 s, documented) even when the registry hangs:
/// redis-server stopped with SIGSTOP keeps its connections open and
/// answers nothing. The drop must return while it is still stopped; the
/// wait for it is a generous hang guard, not a timing threshold.
#[test]
fn drop_returns_while_the_registry_hangs() {
    let server = RedisServer::start();
    let rt = Builder::new_multi_thread().enable_all().build().unwrap();
    let me = register_in(&rt, &server);
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} redis-server");
    };
    signal("-STOP");
    let (dropped, returned) = std::sync::mpsc::channel();
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        handle.block_on(async move { drop(me) });
        let _ = dropped.send(());
    });
    let outcome = returned.recv_timeout(support::PATIENCE);
    signal("-CONT"); // before asserting, so that a failure leaves no stopped server
    assert!(
        outcome.is_ok(),
        "the drop did not return within {:?} while the registry hung",
        support::PATIENCE
    );
    // Once resumed the registry still answers (the test stopped it, nothing else).
    let _: u64 = redis::cmd("HLEN")
        .arg("gosd")
        .query(&mut server.connection())
        .unwrap();
}
