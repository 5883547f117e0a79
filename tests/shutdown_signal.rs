//! An app that awaits `shutdown_signal()` keeps control of the exit: on
//! SIGTERM the instance deregisters, the future resolves, and the process
//! lives on. (Signals are process-wide: this file is its own process.)

mod support;

use support::{RedisServer, client, registry};

#[tokio::test]
async fn shutdown_signal_deregisters_and_hands_the_exit_to_the_app() {
    let server = RedisServer::start();
    let c = client(&server).await;
    let _me = c
        .register("provider", "http://localhost:3333")
        .await
        .unwrap();
    let mut signalled = std::pin::pin!(c.shutdown_signal());
    // Poll it once so it has taken over shutdown before the signal is sent.
    tokio::select! {
        biased;
        _ = &mut signalled => panic!("resolved before any signal"),
        _ = async {} => {}
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    signalled.await;
    assert!(
        registry(&server).is_empty(),
        "deregistered before the future resolved"
    );
    // Still alive: the app decides when to exit.
}
