//! The one connection a driver shares between its calls: made on first
//! use (to the server, the primary the sentinels name, or the cluster),
//! and dropped after a failure that may have left it useless, so the next
//! call makes a new one.

use std::time::Duration;

use gosd_driver::DriverError;
use redis::aio::ConnectionManagerConfig;
use redis::{Client, RedisError};

use crate::cluster::Conn;
use crate::{RedisDriver, TIMEOUT};

/// The shared connection, and how many have been made: a failure on one
/// that has since been replaced must not drop its successor.
#[derive(Default)]
pub(crate) struct Shared {
    made: u64,
    manager: Option<Conn>,
}

fn lock(m: &std::sync::Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Nothing panics while holding it; a poisoned lock still holds a
    // consistent pair.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisDriver {
    /// A redis-rs client for the server: the one the options name, or the
    /// primary the sentinels name now (asking them connects).
    pub(crate) async fn client(&self) -> Result<Client, RedisError> {
        match &self.options.sentinel {
            None => self.options.client(),
            Some(s) => tokio::time::timeout(TIMEOUT, s.primary(self.options.settings()))
                .await
                .map_err(|_| {
                    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })?,
        }
    }

    /// The shared connection (made on first use, and again after a
    /// failover lost it), with its number for [`lost`](Self::lost).
    pub(crate) async fn conn(&self) -> Result<(u64, Conn), DriverError> {
        {
            let shared = lock(&self.conn);
            if let Some(manager) = &shared.manager {
                return Ok((shared.made, manager.clone()));
            }
        }
        if self.options.cluster.is_some() {
            let conn = Conn::Cluster(self.cluster_conn(None).await?);
            let mut shared = lock(&self.conn);
            if let Some(won) = &shared.manager {
                return Ok((shared.made, won.clone()));
            }
            shared.made += 1;
            shared.manager = Some(conn.clone());
            return Ok((shared.made, conn));
        }
        let client = self.client().await.map_err(|e| self.error(e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            // The gosd client retries with its own backoff; the
            // manager's own retries would only hide the outage, and
            // would send a refused password twice.
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_millis(500));
        let primary = client.get_connection_info().addr().to_string();
        let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| self.error(e))?;
        let manager = Conn::Single(manager);
        let mut shared = lock(&self.conn);
        if let Some(won) = &shared.manager {
            return Ok((shared.made, won.clone()));
        }
        if self.options.sentinel.is_some() {
            tracing::info!(backend = %self.backend, %primary, "connecting to the primary the sentinels name");
        }
        shared.made += 1;
        shared.manager = Some(manager.clone());
        Ok((shared.made, manager))
    }

    /// A new connection to the cluster (it reads the slots from the first
    /// node that answers), handing pushes to `push` if given.
    pub(crate) async fn cluster_conn(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> Result<redis::cluster_async::ClusterConnection, DriverError> {
        let client = self
            .options
            .cluster_client(push)
            .map_err(|e| self.error(e))?;
        tokio::time::timeout(TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| self.error(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
            .map_err(|e| self.error(e))
    }

    /// After `e` on connection number `made`, the next call makes a new
    /// connection:
    /// - behind Sentinel, a server that is gone or read-only may have been
    ///   replaced by a new primary, which only asking the sentinels again
    ///   finds (redis-rs keeps reconnecting to the old address);
    /// - a command that timed out may sit on a connection whose packets are
    ///   being dropped (a partition). redis-rs keeps that connection, and
    ///   after the heal it resumed only at TCP's next retransmission, which
    ///   backs off to seconds as the partition lasts; a new connection is
    ///   answered as soon as the path is back.
    pub(crate) fn lost(&self, made: u64, e: &DriverError) {
        if e.is_transient() {
            let mut shared = lock(&self.conn);
            if shared.made == made {
                shared.manager = None;
            }
        }
    }

    /// Drops the shared connection, so the next command asks the
    /// sentinels where the primary is.
    pub(crate) fn forget_primary(&self) {
        lock(&self.conn).manager = None;
    }
}
