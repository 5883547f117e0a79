//! The global client is set once: a second start or connect is a typed
//! error, and a failed start does not use up the slot.
//! (Global state: this file is its own process.)

use gosd::{Error, MemoryDriver};

#[tokio::test]
async fn start_once_then_already_started() {
    let registry = MemoryDriver::new();
    // A start that fails (bad URL) leaves the slot free.
    assert!(matches!(
        gosd::start_with("provider", "nope", registry.clone()).await,
        Err(Error::InvalidUrl { .. })
    ));
    let me = gosd::start_with("provider", "http://localhost:3333", registry.clone())
        .await
        .unwrap();
    assert!(me.name().starts_with("provider-"));
    assert!(matches!(
        gosd::start_with("provider", "http://b:1", registry.clone()).await,
        Err(Error::AlreadyStarted)
    ));
    assert!(matches!(gosd::connect().await, Err(Error::AlreadyStarted)));

    assert_eq!(
        &*gosd::iterate_service_route("provider").await.unwrap(),
        "http://localhost:3333"
    );
    gosd::add_service_manually("static", "http://static:1").unwrap();
    assert_eq!(
        &*gosd::iterate_service_route("static").await.unwrap(),
        "http://static:1"
    );
    gosd::get().await.unwrap();
    gosd::update_by_cron();

    gosd::finish().await.unwrap();
    gosd::finish().await.unwrap(); // idempotent
    drop(me); // and so is the drop after it
    use gosd::Driver;
    assert!(registry.snapshot().await.unwrap().entries.is_empty());
}
