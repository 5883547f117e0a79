//! `start` with a bad environment value fails naming the variable, and
//! does not spend the global slot.
//! (Global state: this file is its own process and its only test.)

use gosd::{Error, MemoryDriver};

#[tokio::test]
async fn bad_env_value_names_the_variable() {
    // SAFETY: this process runs this one test; no other thread reads the
    // environment concurrently.
    unsafe { std::env::set_var("gosdTryRefreshAmount", "abc") };
    let err = gosd::start_with("provider", "http://localhost:3333", MemoryDriver::new())
        .await
        .unwrap_err();
    match &err {
        Error::Config { var, value, .. } => assert_eq!(
            (var.as_str(), value.as_str()),
            ("gosdTryRefreshAmount", "abc")
        ),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(err.to_string().contains("gosdTryRefreshAmount"), "{err}");

    unsafe { std::env::set_var("gosdTryRefreshAmount", "2") };
    let _me = gosd::start_with("provider", "http://localhost:3333", MemoryDriver::new())
        .await
        .unwrap();
}
