//! Redis driver for [gosd](https://docs.rs/gosd), wire-compatible with Go gosd.
//!
//! # Data model
//! | key | type | content |
//! |---|---|---|
//! | `gosd` | hash | field `<service>-<id>` → URL: exactly Go gosd's layout |
//! | `{gosd}:leases` | sorted set | member `<service>-<id>`, score = lease expiry (ms, Redis clock) |
//! | `{gosd}:rev` | string | revision, incremented on every register, deregister, reap and restore |
//! | `{gosd}:gone` | sorted set | deregistered names, score = when their lease would have run out |
//! | `{gosd}:gen` | string | the generation: Redis's `TIME` when this registry's state began |
//! | `{gosd}:events` | channel | one message per change, with the version after it |
//! | `{gosd}:log` | list | the last 64 of those messages, newest first |
//! | `{gosd}:clock` | string | `<ms> <beat_ms> <ms>`: when a script last wrote, the shortest heartbeat seen lately, when (stalls, below) |
//! | `{gosd}:meta` | hash | field `<service>-<id>` → status and metadata ([`gosd_driver::Meta`]'s compact form); no field for an entry that is up with no metadata |
//!
//! A Redis that restarts empty has no `{gosd}:gen`; the next script writes
//! a new one, and clients see the registry lost its state instead of
//! mistaking it for everyone leaving.
//!
//! A stalled registry does not evict the instances it kept from renewing:
//! after a gap between scripts longer than the shortest heartbeat seen
//! (Redis was stopped, forking, failing over), leases that a heartbeat
//! renewed right before the gap get one heartbeat from the end of the gap,
//! enough for the renewals that queued up to land. An instance that
//! crashed in such a gap stays at most one heartbeat longer, once.
//! (Instances whose heartbeat is more than half their TTL are not covered;
//! the default is a third.) A key of gosd's holding garbage is repaired by
//! the next script (a revision or generation that is not a number starts a
//! new
//! generation); the hash or the leases of the wrong type fail every script
//! with a `WRONGTYPE` error naming the key and the fix.
//!
//! (`gosd` is the default key; the others follow it.) The extra keys carry
//! the hash key as a hash tag, so all of them live in one Redis Cluster slot.
//!
//! Every operation is one Lua script, so it is atomic, and every script
//! reads the time from Redis (`TIME`), so clients never compare clocks.
//! Each script first reaps the expired leases: their hash fields and leases
//! go, and the revision moves. Fields with no lease (written by Go gosd or
//! by hand) are never reaped: they behave as static routes. A deregistered
//! name stays in `{gosd}:gone` for the rest of its lease, so that a renewal
//! already in flight cannot write it back.
//!
//! A fetch from a client a few changes behind (up to 63) answers with those
//! changes from `{gosd}:log`, in the same one command that answers
//! "unchanged" when nothing moved: a refresh after one change costs one
//! round trip and a few hundred bytes, not a read of the whole hash. The
//! log must also hold the change that took the client to the version it
//! sends, with that version; if not (another history after a failover, a
//! Go gosd write since), or if a reap of more than 32 leases at once is
//! among the changes, the driver reads the whole hash. (A smaller reap is
//! logged as one removal per entry, so a crashed instance reaches clients
//! the cheap way too, unless a Go write had removed its field already: the
//! entry count then tells the client to read the whole hash.) The client
//! checks too that the changes follow on from what it has, entry count
//! included. What the count cannot show — Go gosd replacing one instance
//! with another in between — a client catches at its next whole read:
//! after a reconnection or a new subscription, and at least every 5
//! minutes.
//!
//! Requires Redis 5 or newer (scripts that call `TIME` before writing need
//! effect replication, the default since 5).
//!
//! # Connections
//! - [`RedisOptions`] say where the Redis is (a URL, or an address with a
//!   password and a database) and which hash holds the registry; they are
//!   checked as they are set, so [`RedisDriver::new`] cannot fail.
//! - Commands share one multiplexed connection ([`ConnectionManager`](redis::aio::ConnectionManager)),
//!   opened on first use, so constructing a driver never blocks or fails on
//!   a down server.
//! - A command that fails because the connection dropped returns
//!   [`DriverError::Unavailable`]; the manager reconnects in the background
//!   and the caller (the gosd client) decides when to retry.
//! - Connecting and every reply are bounded by timeouts (2 s each), so a
//!   wedged server is an error, not a hang.
//! - Deregistration opens a connection of its own: it runs at shutdown,
//!   possibly on a fresh runtime while the one that drove the shared
//!   connection is blocked.
//! - TLS (`rediss://`, rustls): every connection, with the CA and client
//!   certificate [`RedisOptions::tls_ca`] and
//!   [`RedisOptions::tls_client_cert`] set.
//! - Behind Redis Sentinel ([`RedisOptions::sentinels`]) the sentinels
//!   name the primary. A command that finds no server (or `READONLY`), and
//!   a `+switch-master` announcement, make the driver ask them again and
//!   move the shared connection and the subscription to the new primary.
//! - A Redis Cluster ([`RedisOptions::cluster`], Redis 7+): every script
//!   and read goes to the primary of the gosd slot, `MOVED`/`ASK` are
//!   followed, and events are sharded pub/sub on that slot's shard
//!   (`SPUBLISH`/`SSUBSCRIBE`); a subscription that the slot's move or its
//!   primary's failover ends is made again on the new owner.

#![warn(missing_docs)]

use std::sync::LazyLock;
use std::time::Duration;

use gosd_driver::{
    Driver, DriverError, Entry, Event, EventSink, Fetched, InstanceName, Meta, Renewal, Snapshot,
    Version,
};
use redis::{AsyncConnectionConfig, RedisError, Script, Value};

mod cluster;
mod connection;
mod diagnose;
mod hints;
mod options;
mod replies;
mod scripts;
mod sentinel;
mod tls;

use cluster::Conn;
use connection::Shared;
pub use options::RedisOptions;
use replies::*;
use scripts::*;

const TIMEOUT: Duration = Duration::from_secs(2);

/// How often an idle subscription is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(15);

/// Behind Sentinel, how long a subscription that found no primary waits
/// for a `+switch-master` before it reports the failure.
const FAILOVER_WAIT: Duration = Duration::from_secs(10);

/// A gosd registry in Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisDriver {
    /// Holds the password: never shown.
    options: RedisOptions,
    conn: std::sync::Arc<std::sync::Mutex<Shared>>,
    keys: Keys,
    backend: String,
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the options: they hold the password.
        f.debug_struct("RedisDriver")
            .field("backend", &self.backend)
            .field("key", &self.keys.hash)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct Keys {
    hash: String,
    leases: String,
    revision: String,
    gone: String,
    generation: String,
    events: String,
    log: String,
    clock: String,
    meta: String,
}

impl RedisDriver {
    /// A driver for the registry [`RedisOptions`] describe. Nothing is
    /// connected until first use, so this never blocks or fails: the
    /// options were checked when they were set.
    ///
    /// ```
    /// use gosd_redis::{RedisDriver, RedisOptions};
    /// let driver = RedisDriver::new(RedisOptions::from_url("redis://:secret@127.0.0.1:6379/2")?);
    /// assert_eq!(gosd_driver::Driver::backend(&driver), "redis at 127.0.0.1:6379/2");
    /// # Ok::<_, gosd_driver::DriverError>(())
    /// ```
    pub fn new(options: RedisOptions) -> Self {
        let key = &options.key;
        Self {
            backend: options.backend(),
            conn: Default::default(),
            keys: Keys {
                hash: key.to_owned(),
                leases: format!("{{{key}}}:leases"),
                revision: format!("{{{key}}}:rev"),
                gone: format!("{{{key}}}:gone"),
                generation: format!("{{{key}}}:gen"),
                events: format!("{{{key}}}:events"),
                log: format!("{{{key}}}:log"),
                clock: format!("{{{key}}}:clock"),
                meta: format!("{{{key}}}:meta"),
            },
            options,
        }
    }

    /// The name of the hash that holds the routes (`gosd` by default).
    pub fn key(&self) -> &str {
        &self.keys.hash
    }

    /// Runs one of the scripts with its eight keys and `args`.
    async fn run<C: redis::aio::ConnectionLike>(
        &self,
        conn: &mut C,
        script: &Scripts,
        args: &[&[u8]],
    ) -> Result<Value, DriverError> {
        let script = script.get(self.options.cluster.is_some());
        let mut call = script.key(&self.keys.hash);
        call.key(&self.keys.leases)
            .key(&self.keys.revision)
            .key(&self.keys.gone)
            .key(&self.keys.generation)
            .key(&self.keys.log)
            .key(&self.keys.clock)
            .key(&self.keys.meta);
        for a in args {
            call.arg(*a);
        }
        call.invoke_async(conn).await.map_err(|e| self.error(e))
    }

    async fn call(&self, script: &Scripts, args: &[&[u8]]) -> Result<Value, DriverError> {
        let (made, mut conn) = self.conn().await?;
        let answer = self.run(&mut conn, script, args).await;
        answer.inspect_err(|e| self.lost(made, e))
    }

    fn error(&self, e: RedisError) -> DriverError {
        if let Some(denied) = self.denied(&e) {
            return denied;
        }
        let transient = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
            || e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel
            // A server that is loading its data or failing over is down
            // for now; READONLY is a primary demoted under our feet.
            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
            // A cluster still moving a slot or electing a primary.
            || matches!(e.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY" | "MOVED" | "ASK"));
        // The scripts' own verdict on a corrupt key says all there is.
        let named = e.detail().filter(|d| d.starts_with("gosd registry key"));
        if let (Some("WRONGTYPE"), Some(detail)) = (e.code(), named) {
            return DriverError::Protocol {
                backend: self.backend.clone(),
                message: format!("WRONGTYPE {detail}"),
            };
        }
        if transient {
            DriverError::Unavailable {
                backend: self.backend.clone(),
                source: hints::explain(e, &self.options),
            }
        } else {
            DriverError::Protocol {
                backend: self.backend.clone(),
                message: hints::reply(&e, &self.options),
            }
        }
    }

    /// WRONGPASS, NOAUTH (a password is needed), NOPERM (the user may
    /// not run this): not outages, and not worth retrying.
    fn denied(&self, e: &RedisError) -> Option<DriverError> {
        let user = self.options.username().unwrap_or("default").to_owned();
        let said = e.detail().map(|d| format!(" ({d})")).unwrap_or_default();
        let (setting, message) = match e.code() {
            Some("NOPERM") => (
                "username",
                format!(
                    "user {user} may not run gosd's commands{said}; grant them with the README's ACL rule, under In production"
                ),
            ),
            // Redis 7 answers a long command from an unauthenticated
            // connection with this, then closes it: NOAUTH in effect.
            _ if e.detail().is_some_and(|d| d.contains("unauthenticated")) => (
                "password",
                format!("authentication failed for user {user}: the server needs a password{said}"),
            ),
            Some("NOAUTH") => (
                "password",
                format!("authentication failed for user {user}: the server needs a password{said}"),
            ),
            _ if e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.code() == Some("WRONGPASS") =>
            {
                (
                    "password",
                    format!("authentication failed for user {user}{said}"),
                )
            }
            _ => return None,
        };
        Some(DriverError::Denied {
            backend: self.backend.clone(),
            setting: setting.to_owned(),
            message,
        })
    }

    fn unexpected(&self, what: &str, got: &Value) -> DriverError {
        DriverError::Protocol {
            backend: self.backend.clone(),
            message: format!("{what}: unexpected reply {got:?}"),
        }
    }

    fn int(&self, what: &str, v: Value) -> Result<i64, DriverError> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(self.unexpected(what, &other)),
        }
    }
}

fn ttl_ms(ttl: Duration) -> Vec<u8> {
    // At least 1 ms: a zero lease would be reaped by the very script that writes it.
    ttl.as_millis()
        .clamp(1, u64::MAX as u128)
        .to_string()
        .into_bytes()
}

impl Driver for RedisDriver {
    fn backend(&self) -> String {
        self.backend.clone()
    }

    async fn register_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let meta = meta.encode();
        let v = self
            .call(
                &REGISTER,
                &[
                    name.as_str().as_bytes(),
                    url.as_bytes(),
                    &ttl_ms(ttl),
                    meta.as_bytes(),
                ],
            )
            .await?;
        Ok(self.int("register", v)? == 1)
    }

    async fn renew_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> Result<Renewal, DriverError> {
        let meta = meta.encode();
        let v = self
            .call(
                &RENEW,
                &[
                    name.as_str().as_bytes(),
                    url.as_bytes(),
                    &ttl_ms(ttl),
                    meta.as_bytes(),
                ],
            )
            .await?;
        match self.int("renew", v)? {
            1 => Ok(Renewal::Renewed),
            2 => Ok(Renewal::Restored),
            3 => Ok(Renewal::Gone),
            _ => Ok(Renewal::Conflict),
        }
    }

    async fn deregister(&self, name: &InstanceName, url: &str) -> Result<bool, DriverError> {
        if self.options.cluster.is_some() {
            let mut conn = self.cluster_conn(None).await?;
            let v = self
                .run(
                    &mut conn,
                    &DEREGISTER,
                    &[name.as_str().as_bytes(), url.as_bytes()],
                )
                .await?;
            return Ok(self.int("deregister", v)? == 1);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut conn = self
            .client()
            .await
            .map_err(|e| self.error(e))?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))?;
        let v = self
            .run(
                &mut conn,
                &DEREGISTER,
                &[name.as_str().as_bytes(), url.as_bytes()],
            )
            .await?;
        Ok(self.int("deregister", v)? == 1)
    }

    async fn fetch(&self, known: Option<Version>) -> Result<Fetched, DriverError> {
        let known = known
            .map(|k| [k.generation, k.revision, k.entries].map(|n| n.to_string().into_bytes()));
        let args: Vec<&[u8]> = known.iter().flatten().map(Vec::as_slice).collect();
        let (made, mut conn) = self.conn().await?;
        // One command when nothing changed, or when the changes since
        // `known` are still in the log: the script reaps and compares.
        let v = self
            .run(&mut conn, &FETCH, &args)
            .await
            .inspect_err(|e| self.lost(made, e))?;
        if let Some(answer) = parse_unchanged(&v).or_else(|| parse_changes(&v)) {
            return Ok(answer);
        }
        // Changed: read it all in one atomic round trip, without passing the
        // bulk through Lua (which costs ~40% more than a plain HGETALL).
        let k = &self.keys;
        let mut read = redis::pipe();
        read.atomic()
            .get(&k.generation)
            .get(&k.revision)
            .hlen(&k.hash)
            .hgetall(&k.hash)
            .hgetall(&k.meta)
            .zrange_withscores(&k.leases, 0, 0)
            .cmd("TIME");
        let mut repaired = false;
        loop {
            let v: Value = read
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(e))
                .inspect_err(|e| self.lost(made, e))?;
            match parse_changed(v) {
                Ok(fetched) => return Ok(fetched),
                // A revision or generation made garbage between the script
                // and this read: the script repairs it; read once more.
                Err(_) if !repaired => {
                    repaired = true;
                    self.run(&mut conn, &FETCH, &[]).await?;
                }
                Err(got) => return Err(self.unexpected("fetch", &got)),
            }
        }
    }

    async fn watch(&self, sink: EventSink) -> Result<(), DriverError> {
        use futures_util::StreamExt;
        if self.options.cluster.is_some() {
            return self.watch_shard(sink).await;
        }
        let timed_out = || self.error(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        // Behind Sentinel, word of a failover ends the subscription (the
        // caller subscribes again, on the new primary), and a primary that
        // cannot be reached is waited on until the next failover.
        let mut switches = match &self.options.sentinel {
            Some(s) => tokio::time::timeout(TIMEOUT, s.switches())
                .await
                .ok()
                .and_then(Result::ok)
                .map(Box::pin),
            None => None,
        };
        let subscribe = async {
            let mut pubsub = self.client().await?.get_async_pubsub().await?;
            pubsub.subscribe(&self.keys.events).await?;
            Ok(pubsub)
        };
        let subscribed = tokio::time::timeout(TIMEOUT, subscribe)
            .await
            .map_err(|_| timed_out())
            .and_then(|r| r.map_err(|e| self.error(e)));
        let pubsub = match (subscribed, &mut switches) {
            (Ok(pubsub), _) => pubsub,
            (Err(e), None) => return Err(e),
            (Err(e), Some(switches)) => {
                let _ = tokio::time::timeout(FAILOVER_WAIT, switches.next()).await;
                self.forget_primary();
                return Err(e);
            }
        };
        sink(Event::Subscribed);
        let (mut control, mut messages) = pubsub.split();
        // A half-open connection never ends the stream: a PING now and
        // then finds it out.
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let switched = async {
            match &mut switches {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(switched);
        loop {
            tokio::select! {
                Some(()) = &mut switched => {
                    tracing::info!(backend = %self.backend, "the sentinels announced a new primary; moving there");
                    self.forget_primary();
                    return Ok(());
                }
                msg = messages.next() => {
                    // None: the connection ended (Redis died, or it was
                    // killed); the caller subscribes again.
                    let Some(msg) = msg else { return Ok(()) };
                    match parse_event(msg.get_payload_bytes()) {
                        Some(event) => sink(event),
                        None => tracing::warn!(
                            channel = %self.keys.events,
                            payload = %String::from_utf8_lossy(msg.get_payload_bytes()),
                            "ignoring an event that is not gosd's"
                        ),
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(TIMEOUT, control.ping::<Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(self.error(e)),
                        Err(_) => return Err(timed_out()),
                    }
                }
            }
        }
    }

    async fn leases(&self) -> Result<Vec<(String, Duration)>, DriverError> {
        let mut read = redis::pipe();
        read.zrange_withscores(&self.keys.leases, 0, -1).cmd("TIME");
        let (made, mut conn) = self.conn().await?;
        let v: Value = read
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))
            .inspect_err(|e| self.lost(made, e))?;
        parse_leases(v).map_err(|got| self.unexpected("leases", &got))
    }

    async fn remove_stale(&self, url: &str) -> Result<usize, DriverError> {
        let v = self.call(&REMOVE_STALE, &[url.as_bytes()]).await?;
        Ok(usize::try_from(self.int("remove_stale", v)?).unwrap_or(0))
    }

    async fn diagnose(&self) -> Result<Vec<gosd_driver::Finding>, DriverError> {
        diagnose::run(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn changes_parse_oldest_first_and_a_foreign_message_means_a_whole_read() {
        let reply = |log: &[&str]| {
            let head = ["changes", "1500", "7", "12", "3"].map(bulk);
            Value::Array(
                head.into_iter()
                    .chain(log.iter().map(|m| bulk(m)))
                    .collect(),
            )
        };
        let newest_first = ["7 12 3 del svc-1", "7 11 4 put svc-2 10000 http://b"];
        let Some(Fetched::Changes {
            events,
            version,
            next_expiry,
        }) = parse_changes(&reply(&newest_first))
        else {
            panic!("not parsed");
        };
        assert_eq!(version.revision, 12);
        assert_eq!(next_expiry, Some(Duration::from_millis(1500)));
        assert!(matches!(
            &events[..],
            [
                Event::Put { since: 10, .. },
                Event::Removed { since: 11, .. }
            ]
        ));
        assert_eq!(
            parse_changes(&reply(&["7 12 3 del svc-1", "garbage"])),
            None
        );
        assert_eq!(parse_changes(&Value::Array(vec![bulk("changes")])), None);
        assert_eq!(parse_changes(&Value::Array(vec![bulk("changed")])), None);
    }

    #[test]
    fn text_takes_utf8_as_it_is_and_replaces_the_rest() {
        assert_eq!(text(bulk("svc-1")).as_deref(), Some("svc-1"));
        let invalid = Value::BulkString(b"svc-\xff".to_vec());
        assert_eq!(text(invalid).as_deref(), Some("svc-\u{fffd}"));
        assert_eq!(text(Value::Int(1)), None);
    }

    #[test]
    fn replies_of_the_wrong_shape_are_errors_not_panics() {
        assert_eq!(parse_unchanged(&Value::Nil), None);
        assert_eq!(parse_unchanged(&Value::Array(vec![bulk("changed")])), None);
        assert_eq!(
            parse_unchanged(&Value::Array(vec![bulk("same"), bulk("")])),
            Some(Fetched::Unchanged { next_expiry: None })
        );
        assert!(parse_changed(Value::Nil).is_err());
        assert!(parse_changed(Value::Array(vec![Value::Nil])).is_err());
        let odd = Value::Array(vec![
            Value::Nil,
            bulk("3"),
            Value::Int(1),
            Value::Array(vec![bulk("svc-1")]),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![bulk("1000"), bulk("0")]),
        ]);
        let Ok(Fetched::Changed(s)) = parse_changed(odd) else {
            panic!("odd field list is tolerated")
        };
        assert!(s.entries.is_empty());
        assert_eq!((s.version.generation, s.version.revision), (0, 3));
    }

    #[test]
    fn next_expiry_is_time_left_by_the_server_clock() {
        let reply = Value::Array(vec![
            bulk("1732000000000000"),
            bulk("7"),
            Value::Int(2),
            Value::Array(vec![
                bulk("svc-1"),
                bulk("http://a"),
                bulk("go-2"),
                bulk("http://b"),
            ]),
            Value::Array(vec![bulk("svc-1"), bulk("draining,zone=a")]),
            Value::Array(vec![bulk("svc-1"), bulk("1732000001500")]),
            Value::Array(vec![bulk("1732000000"), bulk("000999")]),
        ]);
        let Ok(Fetched::Changed(s)) = parse_changed(reply) else {
            panic!()
        };
        assert_eq!(s.next_expiry, Some(Duration::from_millis(1500)));
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.version.entries, 2);
        let meta = |f: &str| &s.entries.iter().find(|e| e.field == f).unwrap().meta;
        assert_eq!(meta("svc-1").status, gosd_driver::Status::Draining);
        assert_eq!(meta("svc-1").get("zone"), Some("a"));
        assert_eq!(
            *meta("go-2"),
            Meta::default(),
            "no metadata: up, nothing else"
        );
    }

    #[test]
    fn events_parse_and_garbage_does_not() {
        let put = parse_event(b"5 7 2 put svc-1 10000 http://a/b c").unwrap();
        let Event::Put {
            version,
            since,
            entry,
            lease,
        } = put
        else {
            panic!()
        };
        assert_eq!(
            (version.generation, version.revision, version.entries),
            (5, 7, 2)
        );
        assert_eq!(
            (entry.field.as_str(), entry.url.as_str()),
            ("svc-1", "http://a/b c")
        );
        assert_eq!(lease, Some(Duration::from_secs(10)));
        assert_eq!(since, 6, "a Redis change follows the revision before it");
        assert_eq!(entry.meta, Meta::default());
        let Some(Event::Put { entry, .. }) =
            parse_event(b"5 7 2 putm svc-1 10000 down,zone=b http://a/b c")
        else {
            panic!()
        };
        assert_eq!(entry.url, "http://a/b c");
        assert_eq!(entry.meta.status, gosd_driver::Status::Down);
        assert_eq!(entry.meta.get("zone"), Some("b"));
        assert!(matches!(
            parse_event(b"5 8 1 del svc-1"),
            Some(Event::Removed { .. })
        ));
        assert!(matches!(
            parse_event(b"5 9 0 changed"),
            Some(Event::Changed { .. })
        ));
        for junk in [
            &b""[..],
            b"x",
            b"1 2 3",
            b"1 2 3 put a",
            b"1 2 3 putm a 10 up",
            b"1 2 3 del",
            b"1 2 3 nope",
            b"\xff 2 3 changed",
        ] {
            assert_eq!(parse_event(junk), None, "{junk:?}");
        }
    }
}
