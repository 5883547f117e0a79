//! A service's instances (or every service's) as a stream of changes, in
//! the shape of tower's `discover::Change` (and so of tonic's
//! `balance_channel`): first an [`Change::Insert`] for every instance there
//! is, then each insert and removal as the client's table takes it in.
//! Which instances are in is the caller's (`ReadInstances`): one service's
//! that take new requests, or every registered one.
//!
//! It is computed from the client's table, not from the registry's events:
//! every state it reports is one the table held, so it never shows an
//! instance the registry did not have, and a burst of changes between two
//! polls comes out as the net difference (an instance that came and went
//! in between is not reported at all).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use gosd_driver::InstanceName;
use tokio::sync::watch;

use crate::route::Route;

/// A change to a service's instances, from [`Client::watch_service`](crate::Client::watch_service)
/// or [`Client::watch_all_services`](crate::Client::watch_all_services).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A new instance, one that takes new requests again, or a known one
    /// now at another URL (which replaces the old one, as tower's
    /// `Change::Insert` with a known key does).
    Insert(InstanceName, Route),
    /// The instance is gone from the registry, or (in a service's stream)
    /// takes no new requests: draining or down while another is up.
    Remove(InstanceName),
}

/// Reads the watched instances now; `None` once the client is gone.
pub(crate) type ReadInstances = Box<dyn Fn() -> Option<Vec<(InstanceName, Route)>> + Send + Sync>;

// Sync as well, so that a ServiceWatch can sit in a Sync type (an HTTP
// body, a shared balancer) without a wrapper.
type Wait = Pin<Box<dyn Future<Output = Option<watch::Receiver<u64>>> + Send + Sync>>;

enum State {
    /// Has the table's notifications in hand; `stale` when the table may
    /// have changed since the last diff.
    Idle {
        changes: watch::Receiver<u64>,
        stale: bool,
    },
    Waiting(Wait),
    Ended,
}

/// The stream of [`Change`]s of one service, or of all of them. Ends when
/// the client is dropped. Poll it with `next().await`, or as a [`Stream`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gosd::Error> {
/// use gosd::Change;
/// let registry = gosd::MemoryDriver::new();
/// let client = gosd::Client::builder().driver(registry.clone()).build().await?;
/// let provider = gosd::Client::builder().driver(registry).build().await?;
/// let mut changes = client.watch_service("provider");
/// let me = provider.register("provider", "http://10.0.0.1:80").await?;
/// client.get().await?;
/// let Some(Change::Insert(name, route)) = changes.next().await else { panic!() };
/// assert_eq!((name.as_str(), route.as_str()), (me.name().as_str(), "http://10.0.0.1:80"));
/// me.finish().await?;
/// client.get().await?;
/// assert!(matches!(changes.next().await, Some(Change::Remove(_))));
/// # Ok(()) }
/// ```
#[must_use = "a ServiceWatch does nothing unless polled"]
pub struct ServiceWatch {
    read: ReadInstances,
    known: BTreeMap<InstanceName, Route>,
    pending: VecDeque<Change>,
    state: State,
}

impl ServiceWatch {
    pub(crate) fn new(read: ReadInstances, changes: watch::Receiver<u64>) -> Self {
        Self {
            read,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
            state: State::Idle {
                changes,
                stale: true,
            },
        }
    }

    /// The next change; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<Change> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Queues what differs between `known` and the table now; false if
    /// the client is gone.
    fn diff(&mut self) -> bool {
        let Some(now) = (self.read)() else {
            return false;
        };
        let now: BTreeMap<InstanceName, Route> = now.into_iter().collect();
        for name in self.known.keys() {
            if !now.contains_key(name) {
                self.pending.push_back(Change::Remove(name.clone()));
            }
        }
        for (name, route) in &now {
            if self.known.get(name) != Some(route) {
                self.pending
                    .push_back(Change::Insert(name.clone(), route.clone()));
            }
        }
        self.known = now;
        true
    }
}

impl Stream for ServiceWatch {
    type Item = Change;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(change));
            }
            match std::mem::replace(&mut this.state, State::Ended) {
                State::Idle {
                    mut changes,
                    stale: true,
                } => {
                    // Seen before reading: a change made during the read
                    // wakes us again rather than being missed.
                    changes.borrow_and_update();
                    if !this.diff() {
                        return Poll::Ready(None);
                    }
                    this.state = State::Idle {
                        changes,
                        stale: false,
                    };
                }
                State::Idle {
                    mut changes,
                    stale: false,
                } => {
                    this.state = State::Waiting(Box::pin(async move {
                        changes.changed().await.ok().map(|()| changes)
                    }));
                }
                State::Waiting(mut wait) => match wait.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Waiting(wait);
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(changes)) => {
                        this.state = State::Idle {
                            changes,
                            stale: true,
                        };
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                },
                State::Ended => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A watch can live in a Sync type (an HTTP body, a shared balancer).
    #[test]
    fn a_service_watch_is_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<super::ServiceWatch>();
    }
}
