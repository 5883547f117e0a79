//! `let me = gosd::start(..)` in `#[tokio::main]`, then `main` returns: the
//! instance is deregistered. (Global state and env: its own process.)

mod support;

use support::{RedisServer, registry};

#[test]
fn returning_from_main_deregisters() {
    let server = RedisServer::start();
    // SAFETY: this process runs this one test; nothing else reads the env.
    unsafe { std::env::set_var("gosdRedisAddr", server.addr()) };
    // What #[tokio::main] expands to.
    let main = async {
        let me = gosd::start("provider", "http://localhost:3333")
            .await
            .unwrap();
        assert_eq!(registry(&server).len(), 1, "registered as {me}");
        Ok::<(), gosd::Error>(())
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(main)
        .unwrap();
    assert!(
        registry(&server).is_empty(),
        "deregistered when main returned"
    );
}
