//! A [`::tonic::transport::Channel`] that balances over a service's
//! instances and follows the registry. Feature `tonic`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let gosd = gosd::Client::from_env().await?;
//! let channel = gosd::tonic::balanced_channel(&gosd, "grpc-provider");
//! let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
//! let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await?;
//! # Ok(()) }
//! ```
//!
//! Built on [`::tonic::transport::Channel::balance_channel`] (tower's p2c over each instance's
//! pending requests): a task feeds it from [`Client::watch_service`], so a
//! new instance is added as soon as the client's table has it, and a
//! removed one (deregistered, its lease run out, or set draining or down
//! while another is up) is dropped at once.
//! The task ends with the last clone of the channel, at the next change.
//!
//! There are no retries here: a request that an instance fails is that
//! request's error. Wrap the channel in a retry layer of your own if your
//! calls are idempotent.

use tonic::transport::channel::Change as TowerChange;
use tonic::transport::{Channel, Endpoint};

use crate::client::Client;
use crate::route::Route;
use crate::service_watch::Change;

/// How many changes may wait for the channel's balancer to take them in.
const QUEUED_CHANGES: usize = 64;

/// A channel balancing over the instances of `service`, following the
/// registry; each instance's [`Endpoint`] as tonic's defaults make it. Must
/// be called inside a Tokio runtime.
pub fn balanced_channel(client: &Client, service: &str) -> Channel {
    balanced_channel_with(client, service, |endpoint| endpoint)
}

/// [`balanced_channel`], with each instance's [`Endpoint`] set up by
/// `configure` (timeouts, keep-alive, TLS).
pub fn balanced_channel_with(
    client: &Client,
    service: &str,
    configure: impl Fn(Endpoint) -> Endpoint + Send + 'static,
) -> Channel {
    let (channel, changes) = Channel::balance_channel(QUEUED_CHANGES);
    let mut watch = client.watch_service(service);
    let service = service.to_owned();
    tokio::spawn(async move {
        while let Some(change) = watch.next().await {
            let change = match change {
                Change::Insert(name, route) => match endpoint(&route) {
                    Ok(e) => TowerChange::Insert(name, configure(e)),
                    Err(e) => {
                        // The registry validated the URL; tonic may still
                        // want what a URL allows to be absent.
                        tracing::warn!(%service, instance = %name, url = %route, error = %e, "not a gRPC endpoint; left out");
                        continue;
                    }
                },
                Change::Remove(name) => TowerChange::Remove(name),
            };
            if changes.send(change).await.is_err() {
                return; // every clone of the channel is gone
            }
        }
    });
    channel
}

fn endpoint(route: &Route) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(route.to_string())
}
