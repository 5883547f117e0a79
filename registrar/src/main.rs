//! `gosd-registrar`: registers the labelled containers of a Docker or
//! Podman engine in the gosd registry, and follows the engine's events.
//!
//! ```text
//! DOCKER_HOST=unix:///run/podman/podman.sock gosdRedisAddr=localhost:6379 gosd-registrar
//! docker run -d -l gosd.service=web -l gosd.port=80 nginx   # registered as web-<id>
//! ```
//! Settings: gosd's registry variables (`gosdRedisAddr`, `GOSD_TTL`, …),
//! `DOCKER_HOST` (default `unix:///var/run/docker.sock`),
//! `GOSD_REGISTRAR_HOST_IP` and `GOSD_REGISTRAR_LABEL_PREFIX` (default
//! `gosd`). SIGINT/SIGTERM end it without deregistering: the containers
//! still run, a restarted registrar renews their entries, and if none
//! comes they expire within the TTL.

use std::io::IsTerminal;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = match gosd_registrar::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gosd-registrar: {e}");
            return ExitCode::FAILURE;
        }
    };
    match gosd_registrar::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gosd-registrar: {e}");
            ExitCode::FAILURE
        }
    }
}
