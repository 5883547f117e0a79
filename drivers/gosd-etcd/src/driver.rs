//! [`EtcdDriver`]: the registry over etcd-client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::EtcdOptions;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use futures_util::StreamExt;
use gosd_driver::{
    Driver, DriverError, Entry, Event, EventSink, Fetched, InstanceName, Meta, Renewal, Snapshot,
    Version,
};

mod contract;
mod leases;
mod members;

use leases::Lease;
use members::Members;

const TIMEOUT: Duration = Duration::from_secs(2);

/// The largest reply a read may bring (tonic's default is 4 MiB, about
/// 50k entries): a whole registry must always fit.
const MAX_REPLY: usize = 1 << 30;

/// Stale entries removed per transaction, each with its metadata key (two
/// operations): etcd refuses transactions of more than 128 operations by
/// default (`--max-txn-ops`).
const REMOVE_PER_TXN: usize = 60;

/// How often an idle connection is pinged (HTTP/2), so a watch on a dead
/// server ends instead of waiting forever.
const PING_EVERY: Duration = Duration::from_secs(5);

/// How many times a transaction that lost a race is tried again before
/// the operation gives up with an error.
const RACE_RETRIES: usize = 5;

/// A gosd registry in etcd v3. Cheap to clone; clones share the channel
/// and the lease bookkeeping.
#[derive(Clone)]
pub struct EtcdDriver {
    keys: Arc<Keys>,
    members: Arc<Members>,
    /// The lease we hold for each name we registered, and its TTL in
    /// seconds: a renewal keeps this lease alive.
    leases: Arc<Mutex<HashMap<String, Lease>>>,
    /// The generation and the highest revision this driver has read, to
    /// notice etcd going back in time.
    seen: Arc<Mutex<(u64, u64)>>,
    backend: String,
}

#[derive(Debug)]
struct Keys {
    /// `<prefix>/`: entries live under it.
    entries: String,
    /// `<prefix>:gone/`: tombstones.
    gone: String,
    /// `<prefix>:meta/`: status and metadata, on the entry's lease.
    meta: String,
    /// `<prefix>:generation`.
    generation: String,
    /// `<prefix>:changed`.
    changed: String,
    /// `<prefix>`, without a trailing `/`.
    prefix: String,
}

impl std::fmt::Debug for EtcdDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDriver")
            .field("backend", &self.backend)
            .field("prefix", &self.keys.prefix)
            .finish()
    }
}

impl EtcdDriver {
    /// A driver for the registry [`EtcdOptions`] describe. Nothing is
    /// connected until first use, so this never blocks or fails: the
    /// options were checked when they were made.
    ///
    /// ```
    /// use gosd_etcd::{EtcdDriver, EtcdOptions};
    /// let options = EtcdOptions::new(["127.0.0.1:2379", "http://10.0.0.2:2379"], "/gosd")?;
    /// let driver = EtcdDriver::new(options);
    /// assert_eq!(
    ///     gosd_driver::Driver::backend(&driver),
    ///     "etcd at 127.0.0.1:2379,10.0.0.2:2379 under /gosd"
    /// );
    /// # Ok::<_, gosd_driver::DriverError>(())
    /// ```
    pub fn new(options: EtcdOptions) -> Self {
        let prefix = options.prefix();
        let shown: Vec<&str> = options
            .endpoints()
            .iter()
            .map(|e| e.trim_start_matches("http://"))
            .collect();
        Self {
            backend: format!("etcd at {} under {prefix}", shown.join(",")),
            keys: Arc::new(Keys {
                entries: format!("{prefix}/"),
                gone: format!("{prefix}:gone/"),
                meta: format!("{prefix}:meta/"),
                generation: format!("{prefix}:generation"),
                changed: format!("{prefix}:changed"),
                prefix: prefix.to_owned(),
            }),
            members: Arc::new(Members::new(
                options.endpoints(),
                ConnectOptions::new()
                    .with_connect_timeout(TIMEOUT)
                    .with_timeout(TIMEOUT)
                    .with_keep_alive(PING_EVERY, TIMEOUT)
                    .with_keep_alive_while_idle(true),
                TIMEOUT,
            )),
            leases: Default::default(),
            seen: Default::default(),
        }
    }

    /// The key prefix (`/gosd` by default), without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// The key that holds the entry for `field` (`<service>-<id>`):
    /// `<prefix>/<service>/<id>`. A field with no `-` lives at
    /// `<prefix>/<field>`. For operators and tests writing entries by hand.
    ///
    /// ```
    /// use gosd_etcd::{EtcdDriver, EtcdOptions};
    /// let d = EtcdDriver::new(EtcdOptions::new(["127.0.0.1:2379"], "/gosd")?);
    /// assert_eq!(d.key_of("order-api-20261121.1"), "/gosd/order-api/20261121.1");
    /// # Ok::<_, gosd_driver::DriverError>(())
    /// ```
    pub fn key_of(&self, field: &str) -> String {
        key_under(&self.keys.entries, field)
    }

    fn gone_key(&self, field: &str) -> String {
        key_under(&self.keys.gone, field)
    }

    /// The sibling key of `field`'s entry that holds its status and
    /// metadata, on the same lease: `<prefix>:meta/<service>/<id>`.
    fn meta_key(&self, field: &str) -> String {
        key_under(&self.keys.meta, field)
    }

    /// The field a metadata key belongs to.
    fn meta_field_of(&self, key: &[u8]) -> Option<String> {
        field_under(&self.keys.meta, key)
    }

    /// Writes `meta` beside `name`'s entry on `lease`, or removes it when
    /// there is none to store (up, no pairs), so that such an entry reads
    /// as one written by hand.
    fn put_meta(&self, name: &InstanceName, meta: &Meta, lease: i64) -> TxnOp {
        let key = self.meta_key(name.as_str());
        match meta.encode() {
            m if m.is_empty() => TxnOp::delete(key, None),
            m => TxnOp::put(key, m, Some(PutOptions::new().with_lease(lease))),
        }
    }

    fn field_of(&self, key: &[u8]) -> Option<String> {
        field_under(&self.keys.entries, key)
    }
}

/// The field whose key under `dir` is `key` (see [`key_under`]).
fn field_under(dir: &str, key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(dir.as_bytes())?;
    let mut field = String::from_utf8_lossy(rest).into_owned();
    if let Some(at) = field.rfind('/') {
        field.replace_range(at..=at, "-");
    }
    Some(field)
}

impl EtcdDriver {
    fn unavailable(&self, source: etcd_client::Error) -> DriverError {
        DriverError::Unavailable {
            backend: self.backend.clone(),
            source: Box::new(source),
        }
    }

    fn protocol(&self, message: impl Into<String>) -> DriverError {
        DriverError::Protocol {
            backend: self.backend.clone(),
            message: message.into(),
        }
    }

    /// Sorts a client library error into "try again later" and "wrong".
    fn error(&self, e: etcd_client::Error) -> DriverError {
        use etcd_client::Error as E;
        use tonic::Code;
        let transient = match &e {
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) => true,
            E::LeaseKeepAliveError(m) => m != LEASE_NOT_FOUND,
            E::GRpcStatus(s) => matches!(
                s.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unknown
                    | Code::Aborted
                    | Code::ResourceExhausted
            ),
            _ => false,
        };
        if transient {
            self.members.move_on();
            self.unavailable(e)
        } else {
            self.protocol(e.to_string())
        }
    }

    /// A channel of its own to the member in use.
    async fn connect(&self) -> Result<Client, DriverError> {
        self.members
            .connect_alone()
            .await
            .map_err(|e| self.error(e))
    }

    /// The channel to the member in use, opened on first use.
    async fn client(&self) -> Result<Client, DriverError> {
        self.members.client().await.map_err(|e| self.error(e))
    }

    async fn txn(&self, c: &mut Client, txn: Txn) -> Result<TxnResponse, DriverError> {
        c.kv_client()
            .max_decoding_message_size(MAX_REPLY)
            .txn(txn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Every key under the entries prefix, with values and leases.
    async fn all_entries(&self, c: &mut Client) -> Result<Vec<KeyValue>, DriverError> {
        let all = GetOptions::new().with_prefix();
        let txn = Txn::new().and_then([TxnOp::get(self.keys.entries.clone(), Some(all))]);
        let r = self.txn(c, txn).await?;
        Ok(gets(&r)
            .into_iter()
            .next()
            .map(|mut g| g.take_kvs())
            .unwrap_or_default())
    }

    /// The generation, the last driver change, and the entries (whole, or
    /// only counted when `whole` is false), all at one revision.
    async fn read(&self, c: &mut Client, whole: bool) -> Result<Read, DriverError> {
        for _ in 0..RACE_RETRIES {
            let entries = match whole {
                true => GetOptions::new().with_prefix(),
                false => GetOptions::new().with_prefix().with_count_only(),
            };
            let mut reads = vec![
                TxnOp::get(self.keys.generation.clone(), None),
                TxnOp::get(self.keys.changed.clone(), None),
                TxnOp::get(self.keys.entries.clone(), Some(entries)),
            ];
            if whole {
                let all = GetOptions::new().with_prefix();
                reads.push(TxnOp::get(self.keys.meta.clone(), Some(all)));
            }
            let txn = Txn::new().and_then(reads);
            let floor = self.floor();
            let r = self.txn(c, txn).await?;
            let revision = revision_of(&r);
            let mut gets = gets(&r).into_iter();
            let (Some(generation), Some(changed), Some(entries)) =
                (gets.next(), gets.next(), gets.next())
            else {
                return Err(self.protocol("a read transaction answered without its reads"));
            };
            let Some(generation_kv) = generation.kvs().first() else {
                self.create_generation(c).await?;
                continue;
            };
            let generation = generation_of(generation_kv);
            if self.went_back(floor, generation, revision) {
                self.renew_generation(c, generation_kv.mod_revision())
                    .await?;
                continue;
            }
            let count = u64::try_from(entries.count()).unwrap_or(0);
            let kvs = entries.kvs();
            let metas: HashMap<String, Meta> = gets
                .next()
                .iter()
                .flat_map(|g| g.kvs())
                .filter_map(|kv| {
                    let meta = Meta::decode(&String::from_utf8_lossy(kv.value()));
                    Some((self.meta_field_of(kv.key())?, meta))
                })
                .collect();
            return Ok(Read {
                version: Version {
                    generation,
                    revision,
                    entries: count,
                },
                last_changed: changed
                    .kvs()
                    .first()
                    .map_or(0, |kv| kv.mod_revision().max(0) as u64),
                entries: if whole {
                    kvs.iter()
                        .filter_map(|kv| self.entry_of(kv))
                        .map(|mut e| {
                            e.meta = metas.get(&e.field).cloned().unwrap_or_default();
                            e
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        Err(self.protocol("the generation key kept disappearing"))
    }

    async fn create_generation(&self, c: &mut Client) -> Result<(), DriverError> {
        let key = self.keys.generation.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, new_generation().to_string(), None)]);
        self.txn(c, txn).await?;
        Ok(())
    }

    /// Replaces the generation we saw (at `mod_revision`) with a new one;
    /// if another driver got there first, theirs stands.
    async fn renew_generation(&self, c: &mut Client, mod_revision: i64) -> Result<(), DriverError> {
        let key = self.keys.generation.clone();
        tracing::warn!(
            backend = %self.backend,
            "etcd's revision went back (restored from an older backup?); starting a new generation"
        );
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::put(key, new_generation().to_string(), None)]);
        self.txn(c, txn).await?;
        Ok(())
    }

    /// The generation and revision this driver had seen when it sent a
    /// request: a linearizable read sent after that must answer at least
    /// as late, whatever else runs concurrently.
    fn floor(&self) -> (u64, u64) {
        self.seen.lock().map_or((0, 0), |seen| *seen)
    }

    /// Records a read at `revision` under `generation`, sent when the
    /// driver stood at `floor`; true when etcd answered from before it.
    fn went_back(&self, floor: (u64, u64), generation: u64, revision: u64) -> bool {
        if floor.0 == generation && revision < floor.1 {
            return true;
        }
        if let Ok(mut seen) = self.seen.lock() {
            if seen.0 == generation {
                seen.1 = seen.1.max(revision);
            } else {
                *seen = (generation, revision);
            }
        }
        false
    }

    /// Marks a change, in the transaction that makes it.
    fn touch(&self) -> TxnOp {
        TxnOp::put(self.keys.changed.clone(), "", None)
    }

    fn entry_of(&self, kv: &KeyValue) -> Option<Entry> {
        Some(Entry {
            field: self.field_of(kv.key())?,
            url: String::from_utf8_lossy(kv.value()).into_owned(),
            meta: Meta::default(),
        })
    }

    /// Reads the entry and the tombstone of `name`.
    async fn state_of(
        &self,
        c: &mut Client,
        name: &InstanceName,
    ) -> Result<(Option<KeyValue>, bool), DriverError> {
        let txn = Txn::new().and_then([
            TxnOp::get(self.key_of(name.as_str()), None),
            TxnOp::get(self.gone_key(name.as_str()), None),
        ]);
        let r = self.txn(c, txn).await?;
        let mut gets = gets(&r).into_iter();
        let entry = gets.next().and_then(|g| g.kvs().first().cloned());
        let gone = gets.next().is_some_and(|g| !g.kvs().is_empty());
        Ok((entry, gone))
    }

    /// Writes `name → url` and its `meta` on `lease` if the key still
    /// stands as `seen` (`None`: absent and not tombstoned).
    #[allow(clippy::too_many_arguments)]
    async fn put_if(
        &self,
        c: &mut Client,
        name: &InstanceName,
        url: &str,
        meta: &Meta,
        lease: i64,
        seen: Option<&KeyValue>,
    ) -> Result<bool, DriverError> {
        let key = self.key_of(name.as_str());
        let compares = match seen {
            Some(kv) => vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )],
            None => vec![
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(self.gone_key(name.as_str()), CompareOp::Equal, 0),
            ],
        };
        let txn = Txn::new().when(compares).and_then([
            TxnOp::put(key, url, Some(PutOptions::new().with_lease(lease))),
            self.put_meta(name, meta, lease),
            self.touch(),
        ]);
        Ok(self.txn(c, txn).await?.succeeded())
    }
}

/// The generation a key holds. Garbage (written by hand) still gives a
/// stable number, so a client sees it as one generation, not an error.
fn generation_of(kv: &KeyValue) -> u64 {
    match std::str::from_utf8(kv.value())
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(g) => g,
        None => kv.value().iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        }),
    }
}

/// A number no other registry start is likely to have made: the clock in
/// nanoseconds, mixed with the process id and a per-process counter.
fn new_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix = u64::from(std::process::id()) << 32 ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64's finaliser, so nearby clocks give unrelated numbers.
    let mut z = nanos ^ mix.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// What etcd-client says when a keep-alive finds no lease.
const LEASE_NOT_FOUND: &str = "lease not found";

struct Read {
    version: Version,
    /// When this driver last changed the registry (0: never).
    last_changed: u64,
    entries: Vec<Entry>,
}

fn key_under(dir: &str, field: &str) -> String {
    match InstanceName::parse(field) {
        Some(name) => format!("{dir}{}/{}", name.service(), name.id()),
        None => format!("{dir}{field}"),
    }
}

fn revision_of(r: &TxnResponse) -> u64 {
    r.header().map_or(0, |h| h.revision().max(0) as u64)
}

fn gets(r: &TxnResponse) -> Vec<etcd_client::GetResponse> {
    r.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_to_keys_and_back() {
        let d = EtcdDriver::new(EtcdOptions::new(["127.0.0.1:2379"], "/gosd/").unwrap());
        for (field, key) in [
            ("svc-1", "/gosd/svc/1"),
            ("order-api-2026.5", "/gosd/order-api/2026.5"),
            ("a/b-1", "/gosd/a/b/1"),
            ("nodash", "/gosd/nodash"),
            ("", "/gosd/"),
        ] {
            assert_eq!(d.key_of(field), key);
            assert_eq!(d.field_of(key.as_bytes()).as_deref(), Some(field));
        }
        assert_eq!(d.field_of(b"/gosd:generation"), None);
        assert_eq!(d.field_of(b"/gosd:gone/svc/1"), None);
        assert_eq!(d.field_of(b"/gosd:meta/svc/1"), None);
        assert_eq!(d.meta_key("svc-1"), "/gosd:meta/svc/1");
        assert_eq!(
            d.meta_field_of(b"/gosd:meta/svc/1").as_deref(),
            Some("svc-1")
        );
    }

    #[test]
    fn a_read_from_before_what_we_saw_means_etcd_went_back() {
        let d = EtcdDriver::new(EtcdOptions::new(["127.0.0.1:2379"], "/gosd").unwrap());
        assert!(!d.went_back(d.floor(), 7, 10), "first read");
        let floor = d.floor();
        assert!(!d.went_back(floor, 7, 12), "forward");
        // Two reads in flight from the same floor may come back in any order.
        assert!(
            !d.went_back(floor, 7, 11),
            "concurrent, older but after the floor"
        );
        assert!(
            d.went_back(d.floor(), 7, 5),
            "restored from an older backup"
        );
        assert!(
            !d.went_back(d.floor(), 8, 6),
            "a new generation starts over"
        );
        assert!(!d.went_back(d.floor(), 8, 6));
    }
}
