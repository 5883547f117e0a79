//! Pieces the examples share: the provider's `/ping` app and a tiny HTTP GET.
#![allow(dead_code)] // each example uses part of it

use std::time::Duration;

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

/// How long a GET may take before its instance counts as unreachable.
pub const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a GET gave no body.
#[derive(Debug)]
pub enum GetError {
    /// No answer at all: the connection failed or [`GET_TIMEOUT`] passed.
    /// The one failure that says the instance may be gone.
    Unreachable(String),
    /// The instance answered, with an error status: it is alive.
    Status(String),
    /// Anything else (a bad URL, a broken body).
    Other(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) | Self::Status(m) | Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for GetError {}

/// GETs `url` and returns the body as text, if the status is a success.
pub async fn http_get(url: &str) -> Result<String, GetError> {
    let uri = url
        .parse()
        .map_err(|e| GetError::Other(format!("{url}: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = match tokio::time::timeout(GET_TIMEOUT, client.get(uri)).await {
        Err(_) => {
            return Err(GetError::Unreachable(format!(
                "{url}: no answer within {GET_TIMEOUT:?}"
            )));
        }
        Ok(Err(e)) if e.is_connect() => return Err(GetError::Unreachable(format!("{url}: {e}"))),
        Ok(Err(e)) => return Err(GetError::Other(format!("{url}: {e}"))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let body = match tokio::time::timeout(GET_TIMEOUT, response.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return Err(GetError::Other(format!("{url}: reading the body: {e}"))),
        Err(_) => {
            return Err(GetError::Unreachable(format!(
                "{url}: body not sent within {GET_TIMEOUT:?}"
            )));
        }
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(GetError::Status(format!("{url} answered {status}: {body}")));
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
        // Colour codes only on a terminal, not in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
