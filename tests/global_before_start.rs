//! Every global function before `start`: `NotStarted`, never a panic.
//! (Global state: this file is its own process.)

use gosd::Error;
use std::future::Future;

#[tokio::test]
async fn every_global_function_says_not_started() {
    assert!(matches!(gosd::client(), Err(Error::NotStarted)));
    assert!(matches!(gosd::get().await, Err(Error::NotStarted)));
    assert!(matches!(
        gosd::iterate_service_route("provider").await,
        Err(Error::NotStarted)
    ));
    assert!(matches!(
        gosd::delete_service_with_url("http://a:1").await,
        Err(Error::NotStarted)
    ));
    assert!(matches!(
        gosd::add_service_manually("s", "http://a:1"),
        Err(Error::NotStarted)
    ));
    assert!(matches!(gosd::finish().await, Err(Error::NotStarted)));
    gosd::update_by_cron(); // a no-op, by design: middleware calls it as a statement
    assert!(Error::NotStarted.to_string().contains("gosd::start"));
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let build = gosd::Client::builder()
        .driver(gosd::MemoryDriver::new())
        .build();
    // Polled by a plain executor, not Tokio.
    let err = std::pin::pin!(build)
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(matches!(err, std::task::Poll::Ready(Err(Error::NoRuntime))));
}
