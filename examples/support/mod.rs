//! Pieces the examples share: the provider's `/ping` app and a tiny HTTP GET.
#![allow(dead_code)] // each example uses part of it

use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `GET /ping` → 200 with the JSON string `"Provider: <n>"`; every request
/// gives gosd a chance to refresh (`refresh` is `gosd::update_by_cron` or a
/// client's own).
pub fn ping_app(n: String, refresh: impl Fn() + Clone + Send + Sync + 'static) -> Router {
    Router::new().route(
        "/ping",
        get(move || {
            refresh();
            let body = format!("Provider: {n}");
            async move { Json(body) }
        }),
    )
}

/// GETs `url` and returns the body as text.
pub async fn http_get(url: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse()?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {body}").into());
    }
    Ok(body)
}

/// Logs to stderr at `info` (or as `RUST_LOG` says), so stdout stays the
/// examples' output.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
