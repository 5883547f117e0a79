//! The leases a driver holds for the names it registered: granting one,
//! keeping it alive, and repairing an entry that is not simply ours on
//! our lease. etcd counts leases in whole seconds.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn};
use gosd_driver::{DriverError, InstanceName, Meta, Renewal};

use super::{EtcdDriver, LEASE_NOT_FOUND, RACE_RETRIES};

/// A lease we hold, and the TTL (in seconds) it was granted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) id: i64,
    pub(super) ttl: i64,
}

impl EtcdDriver {
    pub(super) fn remembered(&self, field: &str) -> Option<Lease> {
        self.leases.lock().ok()?.get(field).copied()
    }

    pub(super) fn remember(&self, field: &str, lease: Option<Lease>) {
        if let Ok(mut leases) = self.leases.lock() {
            match lease {
                Some(l) => leases.insert(field.to_owned(), l),
                None => leases.remove(field),
            };
        }
    }

    pub(super) async fn grant(&self, c: &mut Client, ttl: i64) -> Result<Lease, DriverError> {
        let granted = c.lease_grant(ttl, None).await.map_err(|e| self.error(e))?;
        Ok(Lease {
            id: granted.id(),
            ttl,
        })
    }

    /// Keeps `lease` alive once. `Ok(false)` when etcd no longer has it.
    pub(super) async fn keep_alive(&self, c: &mut Client, lease: i64) -> Result<bool, DriverError> {
        match c.lease_keep_alive(lease).await {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == LEASE_NOT_FOUND => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Time left on `lease` and the TTL it was granted with; `None` when
    /// etcd no longer has it.
    pub(super) async fn time_to_live(
        &self,
        c: &mut Client,
        lease: i64,
    ) -> Result<Option<(Duration, i64)>, DriverError> {
        let r = c
            .lease_time_to_live(lease, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok((r.ttl() >= 0).then(|| (Duration::from_secs(r.ttl() as u64), r.granted_ttl())))
    }

    /// `renew` when the entry is not simply ours on our lease: look at what
    /// is there and repair it, retrying when another writer wins a race.
    pub(super) async fn renew_slow(
        &self,
        c: &mut Client,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: i64,
        alive: Option<Lease>,
    ) -> Result<Renewal, DriverError> {
        let key = self.key_of(name.as_str());
        let mut granted: Option<Lease> = None;
        for _ in 0..RACE_RETRIES {
            let (entry, gone) = self.state_of(c, name).await?;
            // The entry decides first: an instance registered again under
            // a name it once deregistered is alive, tombstone or not.
            let outcome = match entry {
                Some(kv) if kv.value() != url.as_bytes() => Some(Renewal::Conflict),
                Some(kv) => {
                    // Ours, but on a lease we do not hold (another handle
                    // registered it) or of another TTL: adopt or move it.
                    if kv.lease() != 0
                        && let Some((_, granted_ttl)) = self.time_to_live(c, kv.lease()).await?
                        && granted_ttl == ttl
                        && self.keep_alive(c, kv.lease()).await?
                    {
                        // Still there on that lease after the keep-alive?
                        let txn = Txn::new().when([
                            Compare::value(key.clone(), CompareOp::Equal, url),
                            Compare::lease(key.clone(), CompareOp::Equal, kv.lease()),
                        ]);
                        if self.txn(c, txn).await?.succeeded() {
                            let lease = Lease {
                                id: kv.lease(),
                                ttl,
                            };
                            self.remember(name.as_str(), Some(lease));
                            if let Some(l) = granted {
                                let _ = c.lease_revoke(l.id).await;
                            }
                            return Ok(Renewal::Renewed);
                        }
                        continue;
                    }
                    let lease = match alive.filter(|l| l.ttl == ttl).or(granted) {
                        Some(l) => l,
                        None => *granted.insert(self.grant(c, ttl).await?),
                    };
                    if self.put_if(c, name, url, meta, lease.id, Some(&kv)).await? {
                        if kv.lease() != 0 && kv.lease() != lease.id {
                            let _ = c.lease_revoke(kv.lease()).await;
                        }
                        self.remember(name.as_str(), Some(lease));
                        return Ok(Renewal::Renewed);
                    }
                    None
                }
                None if gone => Some(Renewal::Gone),
                None => {
                    let lease = match alive.filter(|l| l.ttl == ttl).or(granted) {
                        Some(l) => l,
                        None => *granted.insert(self.grant(c, ttl).await?),
                    };
                    if self.put_if(c, name, url, meta, lease.id, None).await? {
                        self.remember(name.as_str(), Some(lease));
                        return Ok(Renewal::Restored);
                    }
                    None
                }
            };
            if let Some(outcome) = outcome {
                if let Some(l) = granted {
                    let _ = c.lease_revoke(l.id).await;
                }
                return Ok(outcome);
            }
        }
        if let Some(l) = granted {
            let _ = c.lease_revoke(l.id).await;
        }
        Err(self.protocol(format!("renewing {name}: the entry kept changing under us")))
    }
}

/// etcd leases count whole seconds: round up, at least one.
/// etcd's longest lease (its `MaxLeaseTTL`).
const MAX_LEASE_SECONDS: i64 = 9_000_000_000;

pub(super) fn lease_seconds(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .clamp(1, MAX_LEASE_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_up_to_whole_seconds() {
        assert_eq!(lease_seconds(Duration::from_millis(100)), 1);
        assert_eq!(lease_seconds(Duration::from_secs(10)), 10);
        assert_eq!(lease_seconds(Duration::from_millis(10_001)), 11);
        assert_eq!(lease_seconds(Duration::ZERO), 1);
        assert_eq!(lease_seconds(Duration::MAX), MAX_LEASE_SECONDS);
    }
}
