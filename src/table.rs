//! The route table: an immutable snapshot that readers load without a lock,
//! and that refreshes replace whole.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gosd_driver::{Entry, Event, InstanceName, Snapshot, Version};

use crate::naming::check_url;

/// The URL of one instance, as [`iterate_service_route`](crate::iterate_service_route)
/// returns it.
///
/// Derefs to `&str` and displays the URL. Cloning it does not allocate: it
/// shares the table's string.
///
/// ```
/// # async fn f() -> Result<(), gosd::Error> {
/// let route = gosd::iterate_service_route("provider").await?;
/// let ping = format!("{route}/ping");
/// assert!(route.starts_with("http"));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(Arc<str>);

impl Route {
    pub(crate) fn new(url: &str) -> Self {
        Self(url.into())
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Route {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Route {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One immutable version of the routes.
#[derive(Default)]
pub(crate) struct RouteTable {
    services: HashMap<Box<str>, ServiceRoutes>,
}

struct ServiceRoutes {
    /// Never empty.
    routes: Box<[Route]>,
    /// Shared by every table version, so a refresh does not restart the
    /// rotation (two providers keep strictly alternating).
    cursor: Arc<AtomicUsize>,
}

impl RouteTable {
    /// The next route of `service`, round-robin. Lock- and allocation-free.
    #[inline]
    pub(crate) fn pick(&self, service: &str) -> Option<Route> {
        let s = self.services.get(service)?;
        let n = s.cursor.fetch_add(1, Ordering::Relaxed);
        Some(s.routes[n % s.routes.len()].clone())
    }

    /// Every route of `service`, in rotation order.
    pub(crate) fn routes(&self, service: &str) -> &[Route] {
        self.services.get(service).map_or(&[], |s| &s.routes)
    }

    /// The services that have at least one route.
    pub(crate) fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(|k| &**k)
    }
}

/// A `HashMap` with [`Fx`] hashing, for the maps a rebuild fills.
type FxMap<K, V> = HashMap<K, V, Fx>;

/// FxHash (rustc's hasher): a rebuild hashes two or three short strings
/// per entry, where SipHash's DoS resistance costs more than the rest.
/// The keys are our own registry's names and URLs, not untrusted input.
#[derive(Clone, Copy, Default)]
struct Fx;

impl std::hash::BuildHasher for Fx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.write_u64(u64::from(b));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A registry entry that passed validation.
#[derive(Clone)]
struct Found {
    name: InstanceName,
    route: Route,
}

/// What an event did to the sources.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The routes changed: rebuild the table.
    Changed,
    /// Nothing to do (an event we already have).
    Nothing,
    /// It cannot be applied on top of what we know: fetch.
    NeedFetch,
}

/// Everything a table is built from: the registry as last seen, entries
/// held from a registry that lost its state, the manual routes, and what
/// we already warned about.
#[derive(Default)]
pub(crate) struct Sources {
    /// Sorted by name.
    registry: Vec<Found>,
    version: Option<Version>,
    /// Entries of a registry that lost its state (new generation), kept
    /// until they are back or `hold_until` passes.
    held: Vec<Found>,
    hold_until: Option<Instant>,
    /// When the next lease runs out (or the hold ends): worth a look then.
    next_check: Option<Instant>,
    manual: Vec<(Box<str>, Route)>,
    warned: HashSet<(String, String)>,
}

impl Sources {
    pub(crate) fn version(&self) -> Option<Version> {
        self.version
    }

    /// When a refresh is next worth doing: the earliest lease expiry or
    /// the end of a hold.
    pub(crate) fn next_check(&self) -> Option<Instant> {
        [self.next_check, self.hold_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// What a fetch that found nothing changed says: when the earliest
    /// lease runs out. Returns whether a hold ran out (the table changes).
    pub(crate) fn unchanged(&mut self, next_expiry: Option<Duration>, received: Instant) -> bool {
        self.next_check = next_expiry.map(|left| received + left);
        self.end_hold_if_due(received)
    }

    /// Takes a whole snapshot received at `received`, skipping (and
    /// warning once about) entries that are not `<service>-<id>` → URL.
    /// Returns `false` for a snapshot older than what we know.
    ///
    /// If the snapshot comes from a new generation (the registry lost its
    /// state), the entries we had and it lacks are **held** until they are
    /// back or `hold_for` passes: a restarted, empty registry must not
    /// empty every client's table while providers re-register.
    pub(crate) fn apply_snapshot(
        &mut self,
        snapshot: Snapshot,
        received: Instant,
        hold_for: Duration,
    ) -> bool {
        let new = snapshot.version;
        let old = std::mem::take(&mut self.registry);
        if let Some(known) = self.version {
            if known.generation == new.generation && new.revision < known.revision {
                self.registry = old;
                return false;
            }
            if known.generation != new.generation && !old.is_empty() {
                tracing::warn!(
                    held = old.len(),
                    "the registry lost its state; keeping the last known routes until they register again (at most {})",
                    humantime::format_duration(hold_for)
                );
                self.held.extend(old.iter().cloned());
                self.hold_until = Some(received + hold_for);
            }
        }
        // An entry we already validated is reused as it is: parsing every
        // URL again would be most of the cost of a large refresh.
        let index: FxMap<&str, &Found> = old.iter().map(|f| (f.name.as_str(), f)).collect();
        for e in snapshot.entries {
            let known = index.get(e.field.as_str()).filter(|f| *f.route == *e.url);
            match known {
                Some(f) => self.registry.push((*f).clone()),
                None => {
                    if let Some(found) = self.validate(e) {
                        self.registry.push(found);
                    }
                }
            }
        }
        self.registry.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        self.version = Some(new);
        self.next_check = snapshot.next_expiry.map(|left| received + left);
        let registry = &self.registry;
        self.held
            .retain(|h| registry.binary_search_by(|f| f.name.cmp(&h.name)).is_err());
        self.end_hold_if_due(received);
        true
    }

    /// Applies one pushed change if it is the very next one we expect.
    pub(crate) fn apply_event(&mut self, event: Event, received: Instant) -> Applied {
        let (version, change) = match event {
            Event::Subscribed => return Applied::NeedFetch,
            Event::Changed { version } => (version, None),
            Event::Put {
                version,
                entry,
                lease,
            } => (version, Some(Ok((entry, lease)))),
            Event::Removed { version, field } => (version, Some(Err(field))),
        };
        let Some(known) = self.version else {
            return Applied::NeedFetch;
        };
        if version.generation == known.generation && version.revision <= known.revision {
            return Applied::Nothing;
        }
        let next = version.generation == known.generation && version.revision == known.revision + 1;
        match change {
            Some(Ok((entry, lease))) if next => {
                let field = entry.field.clone();
                let at = received + lease;
                self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
                self.remove_field(&field);
                if let Some(found) = self.validate(entry) {
                    let at = self.registry.partition_point(|f| f.name < found.name);
                    self.registry.insert(at, found);
                }
            }
            Some(Err(field)) if next => self.remove_field(&field),
            _ => return Applied::NeedFetch,
        }
        self.version = Some(version);
        Applied::Changed
    }

    fn remove_field(&mut self, field: &str) {
        self.registry.retain(|f| f.name.as_str() != field);
        self.held.retain(|f| f.name.as_str() != field);
        if self.held.is_empty() {
            self.hold_until = None;
        }
    }

    /// Ends a hold whose time is up, or whose entries are all back.
    fn end_hold_if_due(&mut self, now: Instant) -> bool {
        let Some(until) = self.hold_until else {
            return false;
        };
        if self.held.is_empty() {
            self.hold_until = None;
            tracing::info!("the registry is repopulated");
            return false;
        }
        if now < until {
            return false;
        }
        tracing::info!(
            dropped = self.held.len(),
            "instances that did not register again are dropped"
        );
        self.held.clear();
        self.hold_until = None;
        true
    }

    fn validate(&mut self, e: Entry) -> Option<Found> {
        let Some(name) = InstanceName::parse(&e.field) else {
            self.warn_once(e.field, e.url, "the field is not <service>-<id>");
            return None;
        };
        if let Err(err) = check_url(&e.url) {
            self.warn_once(e.field, e.url, &err.to_string());
            return None;
        }
        Some(Found {
            name,
            route: Route::new(&e.url),
        })
    }

    fn warn_once(&mut self, field: String, url: String, why: &str) {
        if !self.warned.contains(&(field.clone(), url.clone())) {
            tracing::warn!(field = %field, value = %url, "skipping registry entry: {why}");
            self.warned.insert((field, url));
        }
    }

    pub(crate) fn add_manual(&mut self, service: &str, route: Route) {
        if !self
            .manual
            .iter()
            .any(|(s, r)| &**s == service && *r == route)
        {
            self.manual.push((service.into(), route));
        }
    }

    /// Forgets `url` everywhere until the next snapshot brings it back.
    pub(crate) fn remove_url(&mut self, url: &str) {
        self.registry.retain(|f| &*f.route != url);
        self.held.retain(|f| &*f.route != url);
        self.manual.retain(|(_, r)| &**r != url);
    }

    /// A new table; rotation cursors carry over from `old`.
    pub(crate) fn build(&self, old: &RouteTable) -> RouteTable {
        let mut lists: FxMap<&str, Vec<Route>> = FxMap::default();
        // The same URL twice in a service (say, a stale Go entry and ours)
        // must not get twice the traffic.
        let mut seen: HashSet<(&str, &str), Fx> = HashSet::default();
        let registry = self
            .registry
            .iter()
            .chain(&self.held)
            .map(|f| (f.name.service(), &f.route));
        let manual = self.manual.iter().map(|(s, r)| (&**s, r));
        for (service, route) in registry.chain(manual) {
            if seen.insert((service, route.as_str())) {
                lists.entry(service).or_default().push(route.clone());
            }
        }
        let services = lists
            .into_iter()
            .map(|(service, routes)| {
                let cursor = old
                    .services
                    .get(service)
                    .map(|s| s.cursor.clone())
                    .unwrap_or_default();
                let routes = routes.into_boxed_slice();
                (service.into(), ServiceRoutes { routes, cursor })
            })
            .collect();
        RouteTable { services }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosd_driver::Entry;
    use std::time::Duration;

    const HOLD: Duration = Duration::from_secs(10);

    fn entry(field: &str, url: &str, _lease: Option<u64>) -> Entry {
        Entry {
            field: field.into(),
            url: url.into(),
        }
    }

    fn version(generation: u64, revision: u64) -> Version {
        Version {
            generation,
            revision,
            entries: 0,
        }
    }

    fn snapshot(generation: u64, revision: u64, entries: Vec<Entry>) -> Snapshot {
        Snapshot {
            next_expiry: (!entries.is_empty()).then_some(Duration::from_secs(5)),
            entries,
            version: version(generation, revision),
        }
    }

    fn urls(t: &RouteTable, service: &str) -> Vec<String> {
        t.routes(service).iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn groups_by_service_sorted_by_name_and_skips_garbage() {
        let mut s = Sources::default();
        let now = Instant::now();
        s.apply_snapshot(
            snapshot(
                1,
                1,
                vec![
                    entry("p-2", "http://b", Some(5)),
                    entry("p-1", "http://a", Some(9)),
                    entry("order-api-7", "http://o", None),
                    entry("nodash", "http://x", None),
                    entry("p-3", "not a url", None),
                    entry("p-4", "http://a", None),
                ],
            ),
            now,
            HOLD,
        );
        let t = s.build(&RouteTable::default());
        assert_eq!(urls(&t, "p"), ["http://a", "http://b"]);
        assert_eq!(t.routes("order-api").len(), 1);
        assert!(t.routes("nodash").is_empty());
        assert_eq!(s.next_check(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn rotation_survives_a_rebuild() {
        let mut s = Sources::default();
        let entries = vec![
            entry("p-1", "http://a", None),
            entry("p-2", "http://b", None),
        ];
        s.apply_snapshot(snapshot(1, 1, entries), Instant::now(), HOLD);
        let t1 = s.build(&RouteTable::default());
        assert_eq!(t1.pick("p").unwrap().as_str(), "http://a");
        let t2 = s.build(&t1);
        assert_eq!(t2.pick("p").unwrap().as_str(), "http://b");
        assert_eq!(t2.pick("p").unwrap().as_str(), "http://a");
    }

    #[test]
    fn manual_routes_survive_refreshes_and_removal_forgets_a_url() {
        let mut s = Sources::default();
        s.add_manual("m", Route::new("http://m"));
        s.apply_snapshot(
            snapshot(1, 1, vec![entry("p-1", "http://a", None)]),
            Instant::now(),
            HOLD,
        );
        let t = s.build(&RouteTable::default());
        assert_eq!(t.routes("m").len(), 1);
        s.remove_url("http://a");
        s.remove_url("http://m");
        let t = s.build(&t);
        assert_eq!(t.services().count(), 0);
    }

    #[test]
    fn events_apply_in_order_and_gaps_ask_for_a_fetch() {
        let mut s = Sources::default();
        let now = Instant::now();
        let put = |rev, field: &str| Event::Put {
            version: version(1, rev),
            entry: entry(field, &format!("http://{field}"), Some(5)),
            lease: Duration::from_secs(5),
        };
        assert_eq!(
            s.apply_event(put(1, "p-1"), now),
            Applied::NeedFetch,
            "nothing known yet"
        );
        s.apply_snapshot(snapshot(1, 1, vec![]), now, HOLD);
        assert_eq!(s.apply_event(put(2, "p-1"), now), Applied::Changed);
        assert_eq!(
            s.apply_event(put(2, "p-1"), now),
            Applied::Nothing,
            "already have it"
        );
        assert_eq!(s.apply_event(put(4, "p-2"), now), Applied::NeedFetch, "gap");
        let removed = Event::Removed {
            version: version(1, 3),
            field: "p-1".into(),
        };
        assert_eq!(s.apply_event(removed, now), Applied::Changed);
        assert!(s.build(&RouteTable::default()).routes("p").is_empty());
        let other_generation = Event::Put {
            version: version(2, 1),
            entry: entry("p-3", "http://c", Some(5)),
            lease: Duration::from_secs(5),
        };
        assert_eq!(s.apply_event(other_generation, now), Applied::NeedFetch);
        let stale = snapshot(1, 2, vec![entry("p-9", "http://old", None)]);
        assert!(
            !s.apply_snapshot(stale, now, HOLD),
            "an older snapshot is ignored"
        );
    }

    #[test]
    fn a_registry_that_lost_its_state_does_not_empty_the_table() {
        let mut s = Sources::default();
        let now = Instant::now();
        let both = vec![
            entry("p-1", "http://a", Some(5)),
            entry("p-2", "http://b", Some(5)),
        ];
        s.apply_snapshot(snapshot(1, 7, both), now, HOLD);
        // Restarted empty: new generation, nothing in it.
        s.apply_snapshot(snapshot(2, 1, vec![]), now, HOLD);
        assert_eq!(
            urls(&s.build(&RouteTable::default()), "p"),
            ["http://a", "http://b"],
            "held"
        );
        assert_eq!(
            s.next_check(),
            Some(now + HOLD),
            "a look when the hold ends"
        );
        // p-1 registers again; p-2 leaves for real: removals apply at once.
        let back = Event::Put {
            version: version(2, 2),
            entry: entry("p-1", "http://a", Some(5)),
            lease: Duration::from_secs(5),
        };
        assert_eq!(s.apply_event(back, now), Applied::Changed);
        let gone = Event::Removed {
            version: version(2, 3),
            field: "p-2".into(),
        };
        assert_eq!(s.apply_event(gone, now), Applied::Changed);
        assert_eq!(urls(&s.build(&RouteTable::default()), "p"), ["http://a"]);
        assert_eq!(s.hold_until, None, "repopulated");
    }

    #[test]
    fn a_hold_ends_when_its_time_is_up() {
        let mut s = Sources::default();
        let now = Instant::now();
        s.apply_snapshot(
            snapshot(1, 1, vec![entry("p-1", "http://a", Some(5))]),
            now,
            HOLD,
        );
        s.apply_snapshot(snapshot(2, 1, vec![]), now, HOLD);
        assert!(!s.unchanged(None, now + HOLD / 2));
        assert_eq!(s.build(&RouteTable::default()).routes("p").len(), 1);
        assert!(s.unchanged(None, now + HOLD), "the hold ran out");
        assert!(s.build(&RouteTable::default()).routes("p").is_empty());
    }
}
