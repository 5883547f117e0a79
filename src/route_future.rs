//! The future [`iterate_service_route`](crate::iterate_service_route)
//! returns, written by hand so that awaiting a pick costs little more than
//! the synchronous [`Client::next_route`].
//!
//! As an `async fn`, the pick compiled to a poll function the caller could
//! not inline: it reserved stack for the whole refresh-and-retry machinery
//! and copied the 80-byte `Result<Route>` through memory. Here `poll` is a
//! few lines the caller inlines: pick from the table and, only when the
//! service has no route, box the slow path and poll that. Nothing takes
//! the future's address on the way, so the compiler keeps it in
//! registers, and an awaited pick costs what [`Client::next_route`] costs
//! (BENCHMARKS.md, "the pick path's shape").
//!
//! [`Client::next_route`]: crate::Client::next_route

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::route::Route;

/// What a pick picks from: a client. A trait, so that this module needs
/// nothing of the client's insides.
pub(crate) trait Pick: Sync {
    /// A route from the table as it is now, round-robin; never waits.
    fn next_route(&self, service: &str) -> Option<Route>;
    /// The refresh-and-retry search, boxed: only a service without routes
    /// gets here.
    fn search<'a>(&'a self, service: &'a str) -> SlowPath<'a>;
}

/// Where the [`Pick`] comes from, looked up by each poll that starts a
/// pick (a future does nothing until polled): a client given, or the
/// process-wide one, so that `NotStarted` is decided at the poll. Generic,
/// not dynamic: each kind compiles to its own inlined poll.
pub(crate) trait PickSource<'a>: Copy {
    /// The client picked from.
    type Picker: Pick + 'a;
    /// The client, or why there is none.
    fn picker(self) -> Result<&'a Self::Picker>;
}

impl<'a, P: Pick> PickSource<'a> for &'a P {
    type Picker = P;

    #[inline(always)]
    fn picker(self) -> Result<&'a P> {
        Ok(self)
    }
}

pub(crate) type SlowPath<'a> = Pin<Box<dyn Future<Output = Result<Route>> + Send + 'a>>;

pub(crate) struct RouteFuture<'a, S> {
    source: S,
    service: &'a str,
    /// The refresh-and-retry search, once the table had no route.
    slow: Option<SlowPath<'a>>,
}

impl<'a, S: PickSource<'a>> RouteFuture<'a, S> {
    pub(crate) fn new(source: S, service: &'a str) -> Self {
        Self {
            source,
            service,
            slow: None,
        }
    }
}
/// Polls the search. Out of line, like [`Pick::search`]: only a service
/// without routes gets here. It takes the search and gives it back while
/// pending, instead of borrowing the future: the future's address then
/// never escapes `poll`, and a pick from the table need not store the
/// future to memory first.
#[inline(never)]
fn poll_search<'a>(
    mut search: SlowPath<'a>,
    cx: &mut Context<'_>,
) -> (Poll<Result<Route>>, Option<SlowPath<'a>>) {
    match search.as_mut().poll(cx) {
        Poll::Pending => (Poll::Pending, Some(search)),
        // Dropped once done: a poll after `Ready` picks afresh instead of
        // resuming a finished `async fn`, which would panic.
        done => (done, None),
    }
}

impl<'a, S: PickSource<'a> + Unpin> Future for RouteFuture<'a, S> {
    type Output = Result<Route>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Route>> {
        let this = self.get_mut();
        let search = match this.slow.take() {
            Some(search) => search,
            None => {
                let picker = match this.source.picker() {
                    Ok(picker) => picker,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                if let Some(route) = picker.next_route(this.service) {
                    return Poll::Ready(Ok(route));
                }
                picker.search(this.service)
            }
        };
        let (done, pending) = poll_search(search, cx);
        this.slow = pending;
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use gosd_driver::{Driver, InstanceName};
    use gosd_memory::MemoryDriver;
    use tokio::runtime::Handle;

    use super::*;
    use crate::client::Client;
    use crate::config::Config;

    /// A client over `registry` with no background tasks: its table
    /// changes only when a test (or the slow path) refreshes it.
    fn client(registry: &MemoryDriver) -> Client {
        let config = Config {
            cron: None,
            try_find_service_amount: 1,
            ..Config::default()
        };
        Client::with_parts(config, Arc::new(registry.clone()), Handle::current())
    }

    async fn register(registry: &MemoryDriver, id: &str, url: &str) {
        let name = InstanceName::new("provider", id).unwrap();
        registry
            .register(&name, url, Duration::from_secs(60))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_service_missing_from_the_table_is_found_by_refreshing() {
        let registry = MemoryDriver::new();
        let client = client(&registry);
        register(&registry, "1", "http://a:1").await;
        assert_eq!(client.next_route("provider"), None, "not refreshed yet");
        let route = client.iterate_service_route("provider").await.unwrap();
        assert_eq!(&*route, "http://a:1");
        assert!(client.next_route("provider").is_some(), "the table kept it");
    }

    #[tokio::test]
    async fn a_pending_search_is_resumed_not_started_again() {
        let registry = MemoryDriver::new();
        let client = Client::with_parts(
            Config {
                cron: None,
                try_find_service_amount: 2,
                // The search waits this long between its two looks.
                try_find_service_delay: Duration::from_secs(3600),
                ..Config::default()
            },
            Arc::new(registry.clone()),
            Handle::current(),
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut future = RouteFuture::new(&client, "provider");
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert!(future.slow.is_some(), "the search is kept");
        // A search started afresh would refresh and find it at once; the
        // resumed one is still waiting out its delay.
        register(&registry, "1", "http://a:1").await;
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn a_future_polled_again_after_ready_picks_again() {
        let registry = MemoryDriver::new();
        let client = client(&registry);
        register(&registry, "1", "http://a:1").await;
        register(&registry, "2", "http://b:1").await;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut future = RouteFuture::new(&client, "provider");
        // The first poll has to search: it refreshes, so it may wait.
        let first = loop {
            if let Poll::Ready(r) = Pin::new(&mut future).poll(&mut cx) {
                break r.unwrap();
            }
            tokio::task::yield_now().await;
        };
        let Poll::Ready(second) = Pin::new(&mut future).poll(&mut cx) else {
            panic!("a pick from a loaded table waited");
        };
        assert_ne!(first, second.unwrap(), "round-robin over two");
    }
}
