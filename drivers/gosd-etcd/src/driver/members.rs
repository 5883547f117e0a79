//! Which etcd member the driver talks to, and moving to the next one when
//! it stops answering.
//!
//! Not one channel balanced over every member, as etcd-client makes from
//! a list of endpoints: a member that stops answering without closing its
//! connections (frozen with SIGSTOP, a paused VM, a partition that drops
//! packets) still counted as connected there, so it kept getting its share
//! of the keep-alives, each of which waited out the request timeout. With
//! one of three members frozen, leases went a whole TTL without a renewal
//! and etcd's new leader expired them (`tests/etcd_cluster.rs`). So the
//! driver pins one member, as etcd's own Go client does, and moves to the
//! next after a request to it fails for a transport reason.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;

/// One lazily opened channel per member, and the member in use.
pub(super) struct Members {
    endpoints: Box<[String]>,
    channels: Box<[OnceCell<Client>]>,
    current: AtomicUsize,
    /// When the driver last moved on: requests that failed together (sent
    /// to the same member within one timeout) move it once, not once each.
    moved_at: Mutex<Option<Instant>>,
    options: ConnectOptions,
    timeout: Duration,
}

impl Members {
    pub(super) fn new(endpoints: &[String], options: ConnectOptions, timeout: Duration) -> Self {
        Self {
            endpoints: endpoints.into(),
            channels: endpoints.iter().map(|_| OnceCell::new()).collect(),
            current: AtomicUsize::new(0),
            moved_at: Mutex::new(None),
            options,
            timeout,
        }
    }

    /// The channel to the member in use, opened on first use.
    pub(super) async fn client(&self) -> Result<Client, etcd_client::Error> {
        let at = self.current.load(Ordering::Acquire) % self.channels.len().max(1);
        let (Some(channel), Some(endpoint)) = (self.channels.get(at), self.endpoints.get(at))
        else {
            // No endpoints: the options refuse that, so this is unreachable
            // in practice; etcd-client names the problem.
            return Client::connect(Vec::<String>::new(), None).await;
        };
        let opened = channel
            .get_or_try_init(|| Client::connect([endpoint.as_str()], Some(self.options.clone())))
            .await
            .cloned();
        if opened.is_err() {
            self.move_on();
        }
        opened
    }

    /// A channel of its own to the member in use, not shared with other
    /// requests (deregistration from `Drop` may run while the runtime that
    /// opened the shared one shuts down).
    pub(super) async fn connect_alone(&self) -> Result<Client, etcd_client::Error> {
        let at = self.current.load(Ordering::Acquire) % self.endpoints.len().max(1);
        let endpoint: Vec<&str> = self
            .endpoints
            .get(at)
            .map(String::as_str)
            .into_iter()
            .collect();
        let opened = Client::connect(endpoint, Some(self.options.clone())).await;
        if opened.is_err() {
            self.move_on();
        }
        opened
    }

    /// A request to the member in use failed for a transport reason: the
    /// next request goes to the next member.
    pub(super) fn move_on(&self) {
        if self.channels.len() < 2 {
            return;
        }
        let Ok(mut moved_at) = self.moved_at.lock() else {
            return;
        };
        let now = Instant::now();
        if moved_at.is_some_and(|at| now.duration_since(at) < self.timeout) {
            return;
        }
        *moved_at = Some(now);
        let from = self.current.fetch_add(1, Ordering::AcqRel) % self.channels.len();
        let to = (from + 1) % self.channels.len();
        tracing::warn!(
            from = %self.endpoints[from],
            to = %self.endpoints[to],
            "etcd member not answering; moving to the next one"
        );
    }
}
