//! A consumer, as in gosd's README: registers nothing, makes N requests to
//! `GET <route>/ping` through `iterate_service_route`, prints each body.
//!
//! ```text
//! cargo run --example consumer -- [N=10] [SERVICE=provider]
//! ```

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

/// A provider that does not answer is dropped from the table and the
/// request goes to the next one, this many times at most.
const TRIES: usize = 3;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: consumer [N=10] [SERVICE=provider]");
            return ExitCode::from(2);
        }
    };
    let service = args.next().unwrap_or_else(|| "provider".to_owned());
    if let Err(e) = gosd::connect().await {
        eprintln!("consumer: {e}");
        return ExitCode::FAILURE;
    }
    for _ in 0..n {
        match request(&service).await {
            Ok(body) => println!("{body}"),
            Err(e) => {
                eprintln!("consumer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

async fn request(service: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut last = None;
    for _ in 0..TRIES {
        let route = gosd::iterate_service_route(service).await?;
        match support::http_get(&format!("{route}/ping")).await {
            Ok(body) => return Ok(body),
            Err(e) => {
                tracing::warn!(%route, error = %e, "request failed; dropping that route");
                gosd::delete_service_with_url(&route).await?;
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| "no attempt made".into()))
}
