//! Dropping a `Registration` deregisters, bounded in time, wherever the
//! drop happens: inside a runtime of either flavour, or after the runtime
//! is gone.

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
