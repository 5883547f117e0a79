//! The [`Driver`] contract for etcd, over the connection and read helpers
//! of the parent module and the lease ones of `leases`.

use super::leases::lease_seconds;
use super::*;

impl Driver for EtcdDriver {
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
        let mut c = self.client().await?;
        let lease = self.grant(&mut c, lease_seconds(ttl)).await?;
        let key = self.key_of(name.as_str());
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key, url, Some(PutOptions::new().with_lease(lease.id))),
                self.put_meta(name, meta, lease.id),
                self.touch(),
                // A tombstone from an earlier life of this name is moot now.
                TxnOp::delete(self.gone_key(name.as_str()), None),
            ]);
        match self.txn(&mut c, txn).await {
            Ok(r) if r.succeeded() => {
                self.remember(name.as_str(), Some(lease));
                Ok(true)
            }
            outcome => {
                // Not ours after all: the lease would only keep nothing alive.
                let _ = c.lease_revoke(lease.id).await;
                outcome.map(|_| false)
            }
        }
    }

    async fn renew_with(
        &self,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        ttl: Duration,
    ) -> Result<Renewal, DriverError> {
        let ttl = lease_seconds(ttl);
        let mut c = self.client().await?;
        let mut alive = None;
        if let Some(lease) = self.remembered(name.as_str()) {
            if self.keep_alive(&mut c, lease.id).await? {
                alive = Some(lease);
            } else {
                self.remember(name.as_str(), None);
            }
        }
        // The common case in one transaction: our URL, on our live lease.
        let key = self.key_of(name.as_str());
        if let Some(lease) = alive.filter(|l| l.ttl == ttl) {
            let ours = [
                Compare::value(key.clone(), CompareOp::Equal, url),
                Compare::lease(key.clone(), CompareOp::Equal, lease.id),
            ];
            let meta_key = self.meta_key(name.as_str());
            let same_meta = match meta.encode() {
                m if m.is_empty() => Compare::create_revision(meta_key, CompareOp::Equal, 0),
                m => Compare::value(meta_key, CompareOp::Equal, m),
            };
            let mut compares = ours.to_vec();
            compares.push(same_meta);
            if self
                .txn(&mut c, Txn::new().when(compares))
                .await?
                .succeeded()
            {
                return Ok(Renewal::Renewed);
            }
            // Ours, with other metadata (a status change): the entry is
            // written again with it, so that watchers see one put of both.
            let txn = Txn::new().when(ours).and_then([
                TxnOp::put(
                    key.clone(),
                    url,
                    Some(PutOptions::new().with_lease(lease.id)),
                ),
                self.put_meta(name, meta, lease.id),
                self.touch(),
            ]);
            if self.txn(&mut c, txn).await?.succeeded() {
                return Ok(Renewal::Renewed);
            }
        }
        // A lease of the old TTL is never the one the entry ends up on, so
        // once the outcome is known it must not outlive this call. After an
        // error the entry may still be on it: leave it to expire instead.
        let spare = alive.filter(|l| l.ttl != ttl);
        let outcome = self.renew_slow(&mut c, name, url, meta, ttl, alive).await;
        if let Some(old) = spare
            && outcome.is_ok()
        {
            let _ = c.lease_revoke(old.id).await;
        }
        if matches!(outcome, Ok(Renewal::Gone | Renewal::Conflict)) {
            self.remember(name.as_str(), None);
        }
        outcome
    }

    async fn deregister(&self, name: &InstanceName, url: &str) -> Result<bool, DriverError> {
        // A channel of its own: see "Connections" in the crate docs.
        let mut c = self.connect().await?;
        let key = self.key_of(name.as_str());
        for _ in 0..RACE_RETRIES {
            let (entry, _) = self.state_of(&mut c, name).await?;
            let Some(kv) = entry.filter(|kv| kv.value() == url.as_bytes()) else {
                return Ok(false);
            };
            let mut ops = vec![
                TxnOp::delete(key.clone(), None),
                TxnOp::delete(self.meta_key(name.as_str()), None),
                self.touch(),
            ];
            if kv.lease() != 0 {
                // The tombstone dies with the lease the entry would have had.
                ops.push(TxnOp::put(
                    self.gone_key(name.as_str()),
                    url,
                    Some(PutOptions::new().with_lease(kv.lease())),
                ));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(ops);
            if self.txn(&mut c, txn).await?.succeeded() {
                self.remember(name.as_str(), None);
                return Ok(true);
            }
        }
        Err(self.protocol(format!(
            "deregistering {name}: the entry kept changing under us"
        )))
    }

    async fn fetch(&self, known: Option<Version>) -> Result<Fetched, DriverError> {
        let mut c = self.client().await?;
        if let Some(known) = known {
            // Nothing at all written to etcd since: one request of two
            // point reads. Counting the entries costs as much again at 4k
            // (etcd walks its index), so it waits until something moved.
            let txn = Txn::new().and_then([TxnOp::get(self.keys.generation.clone(), None)]);
            let floor = self.floor();
            let r = self.txn(&mut c, txn).await?;
            let generation = gets(&r)
                .first()
                .and_then(|g| g.kvs().first().map(generation_of));
            if generation == Some(known.generation)
                && revision_of(&r) == known.revision
                && !self.went_back(floor, known.generation, known.revision)
            {
                return Ok(Fetched::Unchanged { next_expiry: None });
            }
            let now = self.read(&mut c, false).await?;
            let unchanged = now.version.generation == known.generation
                && now.version.entries == known.entries
                && now.last_changed <= known.revision
                && now.version.revision >= known.revision;
            if unchanged {
                return Ok(Fetched::Unchanged { next_expiry: None });
            }
        }
        let now = self.read(&mut c, true).await?;
        Ok(Fetched::Changed(Snapshot {
            entries: now.entries,
            version: now.version,
            next_expiry: None,
        }))
    }

    async fn watch(&self, sink: EventSink) -> Result<(), DriverError> {
        let mut c = self.client().await?;
        let start = self.read(&mut c, false).await?.version;
        // `<prefix>/` up to `<prefix>;`: the entries and the `<prefix>:…`
        // keys, not `<prefix>foo/…` of someone else.
        let options = WatchOptions::new()
            .with_range(format!("{};", self.keys.prefix))
            .with_start_revision(start.revision as i64 + 1);
        let mut stream = c
            .watch(self.keys.entries.clone(), Some(options))
            .await
            .map_err(|e| self.error(e))?;
        let mut since = start.revision;
        let mut entries = start.entries;
        let version = |revision, entries| Version {
            generation: start.generation,
            revision,
            entries,
        };
        loop {
            let Some(message) = stream.message().await.map_err(|e| self.error(e))? else {
                return Ok(());
            };
            if message.created() {
                sink(Event::Subscribed);
            }
            if message.canceled() {
                tracing::debug!(reason = message.cancel_reason(), "etcd cancelled the watch");
                return Ok(());
            }
            // Events of one transaction share a revision: group them.
            let mut events = message.events().iter().peekable();
            while let Some(first) = events.next() {
                let Some(kv) = first.kv() else { continue };
                let revision = kv.mod_revision().max(0) as u64;
                let mut group = vec![first];
                while let Some(e) = events.next_if(|e| {
                    e.kv()
                        .is_some_and(|kv| kv.mod_revision().max(0) as u64 == revision)
                }) {
                    group.push(e);
                }
                if group.iter().any(|e| {
                    e.kv()
                        .is_some_and(|kv| kv.key() == self.keys.generation.as_bytes())
                }) {
                    // The registry was wiped and began anew: start over.
                    return Ok(());
                }
                // Status and metadata come in the same transaction as
                // their entry's put (or go with its lease).
                let meta_of = |field: &str| {
                    group
                        .iter()
                        .filter(|e| e.event_type() == EventType::Put)
                        .filter_map(|e| e.kv())
                        .find(|kv| self.meta_field_of(kv.key()).as_deref() == Some(field))
                        .map(|kv| Meta::decode(&String::from_utf8_lossy(kv.value())))
                        .unwrap_or_default()
                };
                let meta_only = group.iter().all(|e| {
                    e.kv()
                        .is_some_and(|kv| kv.key().starts_with(self.keys.meta.as_bytes()))
                });
                let changes: Vec<_> = group
                    .iter()
                    .filter_map(|e| {
                        let kv = e.kv()?;
                        self.field_of(kv.key())
                            .map(|field| (e.event_type(), kv, field))
                    })
                    .collect();
                for (kind, kv, _) in &changes {
                    match kind {
                        EventType::Put if kv.version() == 1 => entries += 1,
                        EventType::Delete => entries = entries.saturating_sub(1),
                        _ => {}
                    }
                }
                let event = match changes.as_slice() {
                    // Metadata written by hand, without its entry.
                    [] if meta_only => Event::Changed {
                        version: version(revision, entries),
                    },
                    [] => continue, // a tombstone came or went
                    [(EventType::Put, kv, field)] => Event::Put {
                        version: version(revision, entries),
                        since,
                        entry: Entry {
                            field: field.clone(),
                            url: String::from_utf8_lossy(kv.value()).into_owned(),
                            meta: meta_of(field),
                        },
                        lease: None,
                    },
                    [(EventType::Delete, _, field)] => Event::Removed {
                        version: version(revision, entries),
                        since,
                        field: field.clone(),
                    },
                    _ => Event::Changed {
                        version: version(revision, entries),
                    },
                };
                since = revision;
                sink(event);
            }
        }
    }

    async fn leases(&self) -> Result<Vec<(String, Duration)>, DriverError> {
        let mut c = self.client().await?;
        let leased: Vec<(String, i64)> = self
            .all_entries(&mut c)
            .await?
            .iter()
            .filter(|kv| kv.lease() != 0)
            .filter_map(|kv| Some((self.field_of(kv.key())?, kv.lease())))
            .collect();
        let mut distinct: Vec<i64> = leased.iter().map(|(_, l)| *l).collect();
        distinct.sort_unstable();
        distinct.dedup();
        // One request per lease (etcd has no bulk form); 32 in flight.
        let lookups: Vec<_> = distinct
            .into_iter()
            .map(|lease| {
                let mut c = c.clone();
                async move { (lease, self.time_to_live(&mut c, lease).await) }
            })
            .collect();
        let mut answers = futures_util::stream::iter(lookups).buffer_unordered(32);
        let mut left = HashMap::new();
        while let Some((lease, ttl)) = answers.next().await {
            if let Some((ttl, _)) = ttl? {
                left.insert(lease, ttl);
            }
        }
        Ok(leased
            .into_iter()
            .filter_map(|(field, lease)| Some((field, *left.get(&lease)?)))
            .collect())
    }

    async fn remove_stale(&self, url: &str) -> Result<usize, DriverError> {
        let mut c = self.client().await?;
        // Expired leases took their keys with them, so only entries
        // without a lease can be stale.
        let stale: Vec<KeyValue> = self
            .all_entries(&mut c)
            .await?
            .into_iter()
            .filter(|kv| kv.lease() == 0 && kv.value() == url.as_bytes())
            .collect();
        let mut removed = 0;
        for chunk in stale.chunks(REMOVE_PER_TXN) {
            // All of them only if none was rewritten since we looked; a
            // chunk that lost that race is left for the next call.
            let txn = Txn::new()
                .when(
                    chunk
                        .iter()
                        .map(|kv| {
                            Compare::mod_revision(kv.key(), CompareOp::Equal, kv.mod_revision())
                        })
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    chunk
                        .iter()
                        .flat_map(|kv| {
                            let meta = self
                                .field_of(kv.key())
                                .map(|f| TxnOp::delete(self.meta_key(&f), None));
                            [Some(TxnOp::delete(kv.key(), None)), meta]
                        })
                        .flatten()
                        .chain([self.touch()])
                        .collect::<Vec<_>>(),
                );
            if self.txn(&mut c, txn).await?.succeeded() {
                removed += chunk.len();
            }
        }
        Ok(removed)
    }
}
