//! The seed's middleware as a [`tower_layer::Layer`]: every request through
//! it calls [`update_by_cron`](crate::Client::update_by_cron) first, so a
//! server refreshes its route table on the cron cadence without a line of
//! its own. It works wherever tower layers do: axum's `Router::layer`,
//! tonic's `Server::builder().layer(…)`, hyper with `tower::ServiceBuilder`.
//!
//! ```
//! # fn f(app: axum::Router) -> axum::Router {
//! app.layer(gosd::layer::UpdateByCron::global())
//! # }
//! ```
//!
//! The call costs one atomic load when no refresh is due, and never waits:
//! a due refresh runs in the background.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::client::Client;

/// A [`Layer`] calling `update_by_cron()` on each request; see the
/// [module](self).
#[derive(Clone, Debug)]
pub struct UpdateByCron {
    /// `None`: the global client, looked up per request, so the layer can
    /// be built before [`start`](crate::start) has run.
    client: Option<Client>,
}

impl UpdateByCron {
    /// For the process-wide client that [`start`](crate::start) and
    /// friends set up ([`update_by_cron`](crate::update_by_cron)).
    pub fn global() -> Self {
        Self { client: None }
    }

    /// For `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client: Some(client),
        }
    }
}

impl<S> Layer<S> for UpdateByCron {
    type Service = UpdateByCronService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UpdateByCronService {
            inner,
            client: self.client.clone(),
        }
    }
}

/// The [`Service`] [`UpdateByCron`] wraps around another.
#[derive(Clone, Debug)]
pub struct UpdateByCronService<S> {
    inner: S,
    client: Option<Client>,
}

impl<S, R> Service<R> for UpdateByCronService<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        match &self.client {
            Some(client) => client.update_by_cron(),
            None => crate::global::update_by_cron(),
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synchronous service, enough to see the layer hand requests on.
    struct AddOne;

    impl Service<u32> for AddOne {
        type Response = u32;
        type Error = ();
        type Future = std::future::Ready<Result<u32, ()>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(Ok(n + 1))
        }
    }

    #[test]
    fn it_passes_requests_and_readiness_through() {
        let mut svc = UpdateByCron::global().layer(AddOne);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        assert_eq!(svc.call(41).into_inner(), Ok(42));
    }
}
