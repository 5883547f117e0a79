//! The consumer through the reqwest middleware: N requests to
//! `http://provider/ping`, each sent to the next instance of `provider`,
//! printing each body. An instance that cannot be reached is retried on
//! another (within the retry budget) and, after `GOSD_EJECT_AFTER`
//! failures in a row, gets no requests for `GOSD_EJECT_FOR`.
//!
//! ```text
//! cargo run --features reqwest --example reqwest_consumer -- [N=10] [SERVICE=provider]
//! ```
//! Exits non-zero if any request failed.

mod support;

use std::process::ExitCode;

use gosd::reqwest::{Discovery, Picked};

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: reqwest_consumer [N=10] [SERVICE=provider]");
            return ExitCode::from(2);
        }
    };
    let service = args.next().unwrap_or_else(|| "provider".to_owned());
    let client = match gosd::connect().await.and_then(|()| gosd::client()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reqwest_consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Discovery::new(client.clone()))
        .build();
    let url = format!("http://{}/ping", service.to_ascii_lowercase());
    let mut failed = 0;
    for _ in 0..n {
        let response = match http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("reqwest_consumer: {url}: {e}");
                failed += 1;
                continue;
            }
        };
        let picked = response.extensions().get::<Picked>().cloned();
        match response.text().await {
            Ok(body) => {
                if let Some(p) = picked {
                    tracing::debug!(route = %p.route, attempts = p.attempts, "answered");
                }
                println!("{body}");
            }
            Err(e) => {
                eprintln!("reqwest_consumer: {url}: reading the body: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("reqwest_consumer: {failed} of {n} requests failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
