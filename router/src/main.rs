//! `gosd-router`: a reverse proxy over the gosd registry.
//!
//! ```text
//! gosdRedisAddr=localhost:6379 cargo run -p gosd-router
//! curl localhost:8000/provider/ping      # → an instance of `provider`, as /ping
//! curl localhost:8000/-/services         # every service and instance, as JSON
//! curl -N localhost:8000/-/events        # the same, live: each change as it lands
//! curl localhost:8000/-/metrics          # Prometheus text
//! ```
//! Settings: gosd's variables for the registry, plus `GOSD_ROUTER_ADDR`
//! (default `127.0.0.1:8000`), `GOSD_ROUTER_STRIP_PREFIX` (default `true`)
//! and `GOSD_ROUTER_TIMEOUT` (default 30 s). On SIGINT/SIGTERM it stops
//! accepting, finishes in-flight requests and exits 0.

use std::process::ExitCode;

use gosd_router::{Router, RouterConfig};

// The registry client's tasks run here; requests are served by threads of
// their own (Router::serve_per_thread).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal, not in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gosd-router: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = RouterConfig::from_env()?;
    // Before the client: its metrics register with the recorder there is
    // when they are first recorded.
    gosd_router::install_metrics()?;
    let client = gosd::Client::from_env().await?;
    let threads = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
    let listeners = gosd_router::bind_per_thread(config.addr, threads)
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let addr = listeners.first().map(|l| l.local_addr()).transpose()?;
    if let Some(addr) = addr {
        println!("gosd-router listening on http://{addr}");
        tracing::info!(threads, "serving from one event loop per thread");
    }
    Router::new(client.clone(), config)
        // gosd's own signal handling: with no global client it resolves on
        // SIGINT/SIGTERM alone, and the router then drains and exits.
        .serve_per_thread(listeners, gosd::shutdown_signal())
        .await?;
    client.finish().await?;
    Ok(())
}
