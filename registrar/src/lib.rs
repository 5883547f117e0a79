//! gosd-registrar: third-party registration for gosd.
//!
//! It follows a container engine (Docker, or Podman's Docker-compatible
//! service) and registers every running container labelled
//! `gosd.service=<name>` as `<name>-<first 12 hex of its container id>`,
//! at a URL built from its labels, with its `gosd.meta.<key>` labels as
//! its metadata, so the services themselves need no SDK. It holds their
//! leases, renewing them every heartbeat while the container runs; it
//! marks an entry down while its container fails its health check, and
//! removes it the moment the engine reports its container stopping. If the registrar dies, its entries expire with
//! their leases (`GOSD_TTL`).
//!
//! ```no_run
//! # async fn run() -> Result<(), gosd_registrar::SettingsError> {
//! let settings = gosd_registrar::Settings::from_env()?; // DOCKER_HOST, GOSD_*, ...
//! gosd_registrar::run(settings).await?;                 // runs until the process ends
//! # Ok(()) }
//! ```
//!
//! # Which entries are the registrar's
//! The name says it: an instance id of exactly 12 lowercase hex digits
//! (a short container id) is the registrar's; gosd's own ids
//! (`20261121190255.46985214`) never have that shape. On start, and after
//! every reconnection to the engine, the registrar reconciles: it holds
//! every labelled container that serves (an unhealthy one marked down),
//! and removes each registrar entry whose container this engine knows but
//! that does not serve (exited, paused). An entry of a container the
//! engine does not know at all is left to its lease: it may be another
//! engine's (one registrar per engine can share one registry), and if it
//! was this engine's (a container removed while the registrar was down)
//! nobody renews it, so it leaves within the TTL.

#![warn(missing_docs)]

mod engine;
mod events;
mod leases;
mod settings;
mod target;

use std::sync::Arc;

pub use settings::{DEFAULT_DOCKER_HOST, DEFAULT_LABEL_PREFIX, Settings, SettingsError};

/// Runs the registrar: follows the engine and keeps the registry in step,
/// reconnecting to either whenever it is lost. Returns only if the
/// settings cannot be used.
///
/// # Errors
/// [`SettingsError::Gosd`] when gosd's registry settings make no driver.
pub async fn run(settings: Settings) -> Result<(), SettingsError> {
    let driver = settings.gosd.open_driver()?;
    tracing::info!(
        engine = %settings.docker_host,
        registry = %driver.backend(),
        ttl = ?settings.gosd.ttl,
        label_prefix = %settings.label_prefix,
        host_ip = ?settings.host_ip,
        "gosd-registrar starting"
    );
    let leases = Arc::new(leases::Leases::new(driver, settings.gosd.ttl));
    let heartbeat = tokio::spawn(leases::heartbeat(
        Arc::downgrade(&leases),
        settings.gosd.heartbeat,
    ));
    engine::Follower::new(settings, leases).run().await;
    heartbeat.abort();
    Ok(())
}
