//! A provider, as in gosd's README: registers service `provider` and
//! answers `GET /ping` with `"Provider: <n>"`.
//!
//! ```text
//! cargo run --example provider -- :3333 1
//! ```
//! `:3333` listens on every interface, port 3333, and registers
//! `http://localhost:3333`; `host:port` listens there and registers
//! `http://host:port`. On SIGINT/SIGTERM it deregisters, then exits with
//! status 130/143.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: provider <:port | host:port> <number>   e.g. provider :3333 1");
        return ExitCode::from(2);
    };
    let (bind, url) = match listen.strip_prefix(':') {
        Some(port) => (
            format!("0.0.0.0:{port}"),
            format!("http://localhost:{port}"),
        ),
        None => (listen.clone(), format!("http://{listen}")),
    };
    // Listen before registering: nobody should be routed to a port we could not take.
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("provider: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = match gosd::start("provider", &url).await {
        Ok(me) => me,
        Err(e) => {
            eprintln!("provider: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(instance = %me, %url, "serving");
    println!("registered as {me}");
    // Every request gives gosd a chance to refresh on its cron cadence.
    let app = support::ping_app(n, || {}).layer(gosd::layer::UpdateByCron::global());
    // gosd handles SIGINT/SIGTERM: deregisters, then exits 130/143.
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("provider: {e}");
        return ExitCode::FAILURE;
    }
    drop(me);
    ExitCode::SUCCESS
}
