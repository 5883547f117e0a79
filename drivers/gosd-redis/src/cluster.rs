//! Redis Cluster: the node list, the client that follows the gosd slot,
//! and the one connection type the driver's commands go through (one
//! server, or a cluster).
//!
//! All of gosd's keys hash to one slot (the hash key is the other keys'
//! hash tag), so every script and read goes to that slot's primary;
//! redis-rs routes each by its first key and follows `MOVED` and `ASK`
//! (a script by the keys it is passed), and reloads a script the new
//! owner answers `NOSCRIPT` for. Events are sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7+) on that slot's shard, so a change
//! costs one message on one shard, not one on every node of the cluster.

use std::fmt;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, PushInfo, RedisConnectionInfo, RedisFuture,
    RedisResult, Value, aio::ConnectionManager,
};

/// The nodes to discover the cluster from (any of them will do; the rest
/// are found from `CLUSTER SLOTS`).
#[derive(Clone)]
pub(crate) struct Nodes {
    pub(crate) addrs: Vec<(String, u16)>,
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Nodes").field(&self.shown()).finish()
    }
}

impl Nodes {
    /// `host:port,host:port`, for errors and logs.
    pub(crate) fn shown(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        addrs.join(",")
    }

    /// A cluster client with the credentials of `settings`, over TLS when
    /// `tls` (with `certs`, from `GOSD_REDIS_CA`/`GOSD_REDIS_CERT`, if
    /// set). With `push`, the connection speaks RESP3 and hands every push
    /// (shard messages, disconnections) to it.
    pub(crate) fn client(
        &self,
        settings: &RedisConnectionInfo,
        tls: bool,
        certs: Option<redis::TlsCertificates>,
        timeout: Duration,
        push: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>,
    ) -> RedisResult<ClusterClient> {
        let infos = self
            .addrs
            .iter()
            .map(|(host, port)| {
                let addr = match tls {
                    true => ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    },
                    false => ConnectionAddr::Tcp(host.clone(), *port),
                };
                let info = addr.into_connection_info()?;
                Ok(info.set_redis_settings(settings.clone()))
            })
            .collect::<RedisResult<Vec<_>>>()?;
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // Enough to follow a MOVED, an ASK and a TRYAGAIN or two
            // during a slot migration; the gosd client retries outages
            // itself, with its own backoff.
            .retries(4)
            .min_retry_wait(10)
            .max_retry_wait(200);
        if tls {
            crate::tls::install_provider();
        }
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }
}

/// PING to the primary of `key`'s slot: the node whose connection holds
/// the subscription.
pub(crate) fn ping_owner<'a>(conn: &'a mut ClusterConnection, key: &str) -> RedisFuture<'a, Value> {
    to_owner(conn, redis::cmd("PING"), key)
}

/// `cmd` (one without keys: PING, INFO, TIME) on the primary of `key`'s
/// slot, not on a random node or all of them.
pub(crate) fn to_owner<'a>(
    conn: &'a mut ClusterConnection,
    cmd: Cmd,
    key: &str,
) -> RedisFuture<'a, Value> {
    let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
    Box::pin(conn.route_command(cmd, routing))
}

/// Parses `host:port,host:port,…`; `Err` says what is wrong.
pub(crate) fn parse_addrs(list: &str) -> Result<Vec<(String, u16)>, String> {
    crate::sentinel::parse_addrs(list)
}

/// The hint for a node list that is not a cluster.
pub(crate) fn hint(e: &redis::RedisError) -> Option<String> {
    let text = e.to_string();
    text.contains("cluster support disabled").then(|| {
        "GOSD_REDIS_CLUSTER names a server that is not in cluster mode \
         (`cluster-enabled yes`): for one server use GOSD_REDIS_URL or GOSD_REDIS_ADDR"
            .to_owned()
    })
}

/// The connection the driver's commands go through.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (maybe named by the sentinels).
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the node its key's slot is on.
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl crate::RedisDriver {
    /// [`Driver::watch`](gosd_driver::Driver::watch) on a cluster:
    /// `SSUBSCRIBE` on the node that owns the gosd slot. It ends (and the
    /// caller subscribes again, on the new owner, and reads the registry
    /// whole) when that node unsubscribes us because the slot moved away,
    /// or when a connection drops (the owner died or failed over).
    pub(crate) async fn watch_shard(
        &self,
        sink: gosd_driver::EventSink,
    ) -> Result<(), gosd_driver::DriverError> {
        let timed_out = || self.error(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        let (push, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let mut conn = self.cluster_conn(Some(push)).await?;
        let channel = &self.keys.events;
        tokio::time::timeout(crate::TIMEOUT, conn.ssubscribe(channel))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.error(e))?;
        sink(gosd_driver::Event::Subscribed);
        let mut ping = tokio::time::interval(crate::PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return Ok(()) };
                    match push.kind {
                        redis::PushKind::SMessage => {
                            // [channel, payload]
                            let payload = match push.data.get(1) {
                                Some(Value::BulkString(p)) => p.as_slice(),
                                _ => &[],
                            };
                            match crate::replies::parse_event(payload) {
                                Some(event) => sink(event),
                                None => tracing::warn!(
                                    %channel,
                                    payload = %String::from_utf8_lossy(payload),
                                    "ignoring an event that is not gosd's"
                                ),
                            }
                        }
                        redis::PushKind::SUnsubscribe => {
                            tracing::info!(backend = %self.backend, "the gosd slot moved to another node; subscribing there");
                            return Ok(());
                        }
                        // A node's connection dropped: maybe the owner's.
                        redis::PushKind::Disconnection => return Ok(()),
                        _ => {}
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(crate::TIMEOUT, ping_owner(&mut conn, &self.keys.hash)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(self.error(e)),
                        Err(_) => return Err(timed_out()),
                    }
                }
            }
        }
    }
}
