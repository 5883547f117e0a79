//! Picks among the instances of a service whose metadata matches: a
//! [`Selector`], built once and reused.
//!
//! Each thread keeps, per selector (by id) and beside its rotations, the
//! pick sequence of the selector's matches for the routes it last picked
//! from. The rules are the plain pick's (weights, status, zone), applied
//! to the matching instances only. A pick from the same routes is a
//! cursor step, with no allocation; the first pick after the service's
//! routes changed makes the sequence again. The selector's own copy and
//! cursor serve a pick that cannot use the thread's cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;
use gosd_driver::Meta;

use crate::pick_order::pick_order;
use crate::route::Route;
use crate::service_index::ServiceRoutes;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The instances of one service whose metadata has every pair asked for,
/// e.g. `version=2.1.0`: for canaries and API versions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gosd::Error> {
/// let registry = gosd::MemoryDriver::new();
/// for (url, version) in [("http://old:1", "2.0.0"), ("http://new:1", "2.1.0")] {
///     let provider = gosd::Client::builder()
///         .driver(registry.clone())
///         .metadata("version", version)
///         .build()
///         .await?;
///     std::mem::forget(provider.register("provider", url).await?);
/// }
/// let client = gosd::Client::builder().driver(registry).build().await?;
/// let v21 = gosd::Selector::new("provider").with("version", "2.1.0");
/// for _ in 0..3 {
///     assert_eq!(client.pick(&v21).unwrap().as_str(), "http://new:1");
/// }
/// assert!(client.pick(&gosd::Selector::new("provider").with("version", "3")).is_none());
/// # Ok(()) }
/// ```
pub struct Selector {
    /// Tells this selector's sequences in a thread's cache from another's.
    /// Unique for the process's life, unlike an address.
    id: u64,
    service: Arc<str>,
    /// Sorted by key, each key once.
    wanted: Vec<(String, String)>,
    cursor: AtomicUsize,
    matches: ArcSwapOption<Matches>,
}

/// The pick sequence of the matching instances of one table's routes.
struct Matches {
    /// The routes it was made from: while the table has the same list (the
    /// same allocation, kept alive here so it cannot be reused), it holds.
    source: Arc<[Route]>,
    /// Indices into `source`.
    order: Box<[u32]>,
}

impl Selector {
    /// Every instance of `service`, until [`with`](Self::with) narrows it.
    pub fn new(service: &str) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            service: service.into(),
            wanted: Vec::new(),
            cursor: AtomicUsize::new(0),
            matches: ArcSwapOption::empty(),
        }
    }

    /// Only the instances whose metadata has `key` = `value` (besides any
    /// pair asked for before; a key asked for again takes the new value).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        match self.wanted.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => self.wanted[i].1 = value.to_owned(),
            Err(i) => self.wanted.insert(i, (key.to_owned(), value.to_owned())),
        }
        // Sequences cached for the old filter must not serve the new one.
        self.id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.matches.store(None);
        self
    }

    /// The service it picks from.
    pub fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn matches(&self, meta: &Meta) -> bool {
        self.wanted
            .iter()
            .all(|(k, v)| meta.get(k) == Some(v.as_str()))
    }

    /// The next matching route of `s`, for a client in `zone`.
    #[inline]
    pub(crate) fn pick_from(&self, s: &ServiceRoutes, zone: Option<&str>) -> Option<Route> {
        let current = self.matches.load();
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        match &*current {
            Some(m) if Arc::ptr_eq(&m.source, &s.routes) => {
                let i = *m.order.get(n % m.order.len().max(1))?;
                Some(s.routes[i as usize].clone())
            }
            _ => self.remake(s, zone, n),
        }
    }

    /// The first pick from a table this selector has not picked from.
    #[cold]
    #[inline(never)]
    fn remake(&self, s: &ServiceRoutes, zone: Option<&str>, n: usize) -> Option<Route> {
        let order = self.order(s, zone);
        let picked = order
            .get(n % order.len().max(1))
            .map(|&i| s.routes[i as usize].clone());
        self.matches.store(Some(Arc::new(Matches {
            source: s.routes.clone(),
            order,
        })));
        picked
    }

    /// The pick sequence of the instances of `s` this selector matches
    /// (indices into its routes), for a client in `zone`; empty when none
    /// matches.
    pub(crate) fn order(&self, s: &ServiceRoutes, zone: Option<&str>) -> Box<[u32]> {
        let matching: Vec<usize> = (0..s.metas.len())
            .filter(|&i| self.matches(&s.metas[i]))
            .collect();
        let metas: Vec<&Meta> = matching.iter().map(|&i| &s.metas[i]).collect();
        match metas.is_empty() {
            true => Box::new([]),
            false => pick_order(&metas, zone)
                .0
                .into_iter()
                .map(|k| matching[k as usize] as u32)
                .collect(),
        }
    }
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("service", &self.service)
            .field("with", &self.wanted)
            .finish_non_exhaustive()
    }
}

impl Clone for Selector {
    fn clone(&self) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            service: self.service.clone(),
            wanted: self.wanted.clone(),
            cursor: AtomicUsize::new(0),
            matches: ArcSwapOption::empty(),
        }
    }
}
