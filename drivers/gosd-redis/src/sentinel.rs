//! Redis Sentinel: which server is the primary now, and word of a
//! failover (`+switch-master`).
//!
//! redis-rs resolves the primary once per client and does not move an
//! existing connection after a failover (redis-rs#1438), so the driver asks
//! again: whenever a command fails for want of a server (the primary died,
//! or it came back as a replica and answers READONLY), and whenever a
//! sentinel announces `+switch-master` for our primary.

use std::fmt;

use futures_util::{Stream, StreamExt};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ErrorKind, RedisConnectionInfo, RedisError, RedisResult};

/// The sentinels, the name they know the primary by, and the password
/// they want (if any).
#[derive(Clone)]
pub(crate) struct Sentinels {
    pub(crate) addrs: Vec<(String, u16)>,
    pub(crate) master: String,
    pub(crate) password: Option<String>,
}

impl fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinels")
            .field("addrs", &self.shown_addrs())
            .field("master", &self.master)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Sentinels {
    /// `host:port,host:port`, for errors and logs.
    pub(crate) fn shown_addrs(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        addrs.join(",")
    }

    fn sentinel_client(&self, (host, port): &(String, u16)) -> RedisResult<Client> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info = redis::IntoConnectionInfo::into_connection_info(ConnectionAddr::Tcp(
            host.clone(),
            *port,
        ))?;
        Client::open(info.set_redis_settings(settings))
    }

    /// A client for the server the sentinels call the primary now, with
    /// the primary's credentials and database from `settings`. redis-rs
    /// checks the server's own `ROLE` before answering.
    pub(crate) async fn primary(&self, settings: &RedisConnectionInfo) -> RedisResult<Client> {
        let addrs = self
            .addrs
            .iter()
            .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let mut builder =
            SentinelClientBuilder::new(addrs, &self.master, SentinelServerType::Master)?
                .set_client_to_redis_db(settings.db());
        if let Some(user) = settings.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        // A fresh client each time: its cached connections to the
        // sentinels would belong to the runtime that made them, and
        // deregistration may run on another one.
        builder.build()?.async_get_client().await
    }

    /// `+switch-master` announcements for our primary, from the first
    /// sentinel that takes the subscription. The stream ends when that
    /// sentinel's connection does.
    pub(crate) async fn switches(&self) -> RedisResult<impl Stream<Item = ()> + use<>> {
        let mut last = RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel"));
        for addr in &self.addrs {
            let subscribed = async {
                let mut pubsub = self.sentinel_client(addr)?.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, RedisError>(pubsub)
            };
            match subscribed.await {
                Ok(pubsub) => {
                    // "<master> <old-ip> <old-port> <new-ip> <new-port>"
                    let ours = format!("{} ", self.master);
                    return Ok(pubsub.into_on_message().filter_map(move |msg| {
                        let is_ours = msg.get_payload_bytes().starts_with(ours.as_bytes());
                        std::future::ready(is_ours.then_some(()))
                    }));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Parses `host:port,host:port,…`; `Err` says what is wrong.
pub(crate) fn parse_addrs(list: &str) -> Result<Vec<(String, u16)>, String> {
    let addrs: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err("the list is empty; expected host:port,host:port,…".into());
    }
    addrs
        .into_iter()
        .map(|a| crate::options::check_addr(a).map_err(|e| format!("`{a}`: {e}")))
        .collect()
}

/// The hint for a primary the sentinels could not name, or a "sentinel"
/// that is not one.
pub(crate) fn hint(e: &RedisError, master: &str) -> Option<String> {
    if e.kind() == ErrorKind::MasterNameNotFoundBySentinel {
        return Some(format!(
            "no sentinel reports a reachable primary named `{master}` (GOSD_REDIS_MASTER): \
             the name is not the one in their `sentinel monitor` lines, or a failover is under way"
        ));
    }
    e.to_string().contains("not point to a sentinel").then(|| {
        "GOSD_REDIS_SENTINELS names a server that is not a Redis Sentinel (a sentinel's port is usually 26379)".to_owned()
    })
}
