//! A service's instances as a [`::tower::discover::Discover`], for tower's
//! balancers (`tower::balance::p2c::Balance`) and anything else built on
//! it. Feature `tower`.
//!
//! ```no_run
//! # async fn f(gosd: gosd::Client) -> Result<(), tower::BoxError> {
//! use tower::balance::p2c::Balance;
//! use tower::load::{CompleteOnResponse, PendingRequests};
//! use tower::{Service, ServiceExt};
//!
//! let discover = gosd.discover("provider", |_name, route: &gosd::Route| {
//!     let route = route.clone();
//!     // Your client for one instance; here one that says where it is.
//!     let one = tower::service_fn(move |path: &'static str| {
//!         std::future::ready(Ok::<_, std::convert::Infallible>(format!("{route}{path}")))
//!     });
//!     PendingRequests::new(one, CompleteOnResponse::default())
//! });
//! let mut balanced = Balance::new(discover);
//! let url = balanced.ready().await?.call("/ping").await?;
//! # Ok(()) }
//! ```
//!
//! It is [`Client::watch_service`] with each new instance's service made
//! by your function: every instance there is now, then each one as it
//! registers or moves to another URL, and a removal as its deregistration
//! (or lease expiry) reaches the client's table. The balancer drops a
//! removed instance at once. An instance set draining or down (while
//! another is up) is removed too, and inserted again when it is up: the
//! balancer sends it no new requests, and those it already sent finish.
//! [`Client::discover_selected`] does the same for the instances a
//! [`Selector`](crate::Selector) matches.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use gosd_driver::InstanceName;

use crate::client::Client;
use crate::route::Route;
use crate::service_watch::{Change, ServiceWatch};

/// The instances of one service as a [`::tower::discover::Discover`] (a
/// stream of [`::tower::discover::Change`]s keyed by [`InstanceName`]), each
/// instance's service made by `F`; from [`Client::discover`]. Ends when the
/// client is dropped.
#[must_use = "a Discovered does nothing unless polled"]
pub struct Discovered<F> {
    watch: ServiceWatch,
    make: F,
}

impl Client {
    /// The instances of `service` for tower's balancers; `make` builds the
    /// service that talks to one instance from its name and route (a
    /// tonic `Endpoint`'s channel, an HTTP client pointed at the route, …).
    /// See [`crate::tower`].
    pub fn discover<S, F>(&self, service: &str, make: F) -> Discovered<F>
    where
        F: FnMut(&InstanceName, &Route) -> S,
    {
        Discovered {
            watch: self.watch_service(service),
            make,
        }
    }

    /// [`discover`](Self::discover) over the instances `selector` matches
    /// (a version, say), by the rules of [`Client::watch_selected`].
    pub fn discover_selected<S, F>(&self, selector: &crate::Selector, make: F) -> Discovered<F>
    where
        F: FnMut(&InstanceName, &Route) -> S,
    {
        Discovered {
            watch: self.watch_selected(selector),
            make,
        }
    }
}

impl<F, S> Stream for Discovered<F>
where
    F: FnMut(&InstanceName, &Route) -> S + Unpin,
{
    type Item = Result<tower::discover::Change<InstanceName, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let change = match ready!(Pin::new(&mut this.watch).poll_next(cx)) {
            Some(Change::Insert(name, route)) => {
                let service = (this.make)(&name, &route);
                tower::discover::Change::Insert(name, service)
            }
            Some(Change::Remove(name)) => tower::discover::Change::Remove(name),
            None => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(change)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next<F: FnMut(&InstanceName, &Route) -> String + Unpin>(
        d: &mut Discovered<F>,
    ) -> Option<Result<tower::discover::Change<InstanceName, String>, Infallible>> {
        std::future::poll_fn(|cx| Pin::new(&mut *d).poll_next(cx)).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn instances_come_as_tower_changes_with_their_services() {
        let registry = gosd_memory::MemoryDriver::new();
        let client = Client::builder()
            .driver(registry.clone())
            .build()
            .await
            .unwrap();
        let provider = Client::builder().driver(registry).build().await.unwrap();
        let me = provider.register("p", "http://10.0.0.1:80").await.unwrap();
        client.get().await.unwrap();
        let mut d = client.discover("p", |_, route: &Route| route.to_string());
        match next(&mut d).await {
            Some(Ok(tower::discover::Change::Insert(name, url))) => {
                assert_eq!(name.as_str(), me.name().as_str());
                assert_eq!(url, "http://10.0.0.1:80");
            }
            _ => panic!("an insert first"),
        }
        me.finish().await.unwrap();
        client.get().await.unwrap();
        assert!(matches!(
            next(&mut d).await,
            Some(Ok(tower::discover::Change::Remove(_)))
        ));
    }
}
