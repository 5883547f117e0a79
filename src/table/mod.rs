//! The route table: an immutable snapshot that readers load without a lock,
//! and that refreshes replace whole; and its [`Sources`], what tables are
//! built from. Taking in what the registry says is `apply`'s job, making a
//! table from the sources `build`'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gosd_driver::{InstanceName, Meta, Version};

use crate::rotation::RotationIds;
use crate::route::Route;
use crate::service_index::{RotationId, ServiceIndex, ServiceRoutes, fx_bytes, fx_word};
use crate::skipped::Skipped;

mod apply;
mod build;

/// One immutable version of the routes.
#[derive(Default)]
pub(crate) struct RouteTable {
    services: ServiceIndex,
    /// The zone this client's picks prefer.
    zone: Option<Arc<str>>,
}

impl RouteTable {
    /// The routes of `service` and its rotation, to pick from (see
    /// `rotation`). A lookup, lock- and allocation-free.
    #[inline(always)]
    pub(crate) fn service(&self, service: &str) -> Option<&ServiceRoutes> {
        self.services.get(service)
    }

    /// Every route of `service`, pickable or not (draining, down), sorted
    /// by instance name.
    pub(crate) fn routes(&self, service: &str) -> &[Route] {
        self.services.get(service).map_or(&[], |s| &s.routes)
    }

    /// The services that have at least one route.
    pub(crate) fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|(name, _)| &**name)
    }

    /// The zone this client's picks prefer (`GOSD_ZONE`).
    pub(crate) fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The rotation `service` has in this table, if it is in it.
    fn rotation(&self, service: &str) -> Option<RotationId> {
        self.services.get(service).map(|s| s.rotation)
    }
}

/// A `HashMap` with [`Fx`] hashing, for the maps a rebuild fills.
type FxMap<K, V> = HashMap<K, V, Fx>;

/// FxHash (rustc's hasher, see `service_index`): a rebuild hashes two or
/// three short strings per entry, where SipHash's DoS resistance costs
/// more than the rest. The keys are our own registry's names and URLs, not
/// untrusted input.
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
        self.0 = fx_bytes(self.0, bytes);
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.0 = fx_word(self.0, word);
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

/// The service part of a registry field (empty if it has none).
fn service_of(field: &str) -> String {
    InstanceName::parse(field)
        .map(|n| n.service().to_owned())
        .unwrap_or_default()
}

/// The entries of `service` in `sorted` (sorted by name). A name sorts as
/// its `<service>-<id>` string, so they are in the run of names that start
/// with `<service>-`; a longer service name that starts the same way
/// (`<service>-x`) can be in that run too, hence the filter.
fn of_service<'a>(sorted: &'a [Found], service: &'a str) -> impl Iterator<Item = &'a Found> {
    let prefix = format!("{service}-");
    let first = sorted.partition_point(|f| f.name.as_str() < prefix.as_str());
    sorted[first..]
        .iter()
        .take_while(move |f| f.name.as_str().starts_with(&prefix))
        .filter(move |f| f.name.service() == service)
}

/// A registry entry that passed validation.
#[derive(Clone)]
struct Found {
    name: InstanceName,
    route: Route,
    meta: Meta,
}

/// What an event did to the sources.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The routes of this one service changed: rebuild it alone.
    Changed(String),
    /// Nothing to do (an event we already have).
    Nothing,
    /// It cannot be applied on top of what we know: fetch.
    NeedFetch,
}

/// The services a change touched: what the next [`Sources::build`] must
/// redo. The others are shared with the previous table, so a refresh that
/// brings one change costs that change's service, not the registry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Touched {
    /// The routes are as they were.
    Nothing,
    /// These services, sorted, each once.
    Services(Vec<Box<str>>),
    /// Any of them (a first load, routes held or let go, a manual edit).
    All,
}

impl Touched {
    pub(crate) fn service(name: &str) -> Self {
        Touched::Services(vec![name.into()])
    }

    pub(crate) fn services(mut names: Vec<Box<str>>) -> Self {
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            Touched::Nothing
        } else {
            Touched::Services(names)
        }
    }

    fn includes(&self, service: &str) -> bool {
        match self {
            Touched::Nothing => false,
            Touched::Services(names) => names.binary_search_by(|n| (**n).cmp(service)).is_ok(),
            Touched::All => true,
        }
    }
}

/// Everything a table is built from: the registry as last seen, entries
/// held from a registry that lost its state, the manual routes, and the
/// malformed entries already warned about.
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
    skipped: Skipped,
    /// When the registry was last read whole; `None`: read it whole next.
    read_whole_at: Option<Instant>,
    /// The rotation numbers of the services in the tables built from here.
    rotations: RotationIds,
    /// Names this client saw removed, each with when it stops refusing
    /// them from a read: see [`Self::remembering_removals_for`].
    removed: FxMap<Box<str>, Instant>,
    removal_memory: Duration,
    /// This client's zone (`GOSD_ZONE`): its picks prefer instances there.
    zone: Option<Box<str>>,
    /// The services whose picks fail open (none of their instances is
    /// pickable, so all are picked from): a state logged once as it
    /// begins and once as it ends.
    failing_open: HashSet<Box<str>, Fx>,
    /// Routes the outlier detector took out of the picks (`outliers`).
    ejected: HashSet<Route, Fx>,
}

/// How long a client goes at most on changes from the registry's record
/// (pushed, or answered by a fetch) without reading it whole. The record
/// misses what a writer that keeps none does while the entry count stays
/// the same: Go gosd replacing one instance with another, or moving one to
/// another URL. A whole read catches those.
const READ_WHOLE_EVERY: Duration = Duration::from_secs(300);

impl Sources {
    /// Sources that remember each removal they apply for `memory`, and
    /// until then do not take that name back from a read of the registry.
    ///
    /// A registry restored from an older snapshot (a backup, a replica
    /// that lagged) still holds instances that deregistered since, and
    /// their leases run on from the restored clock. This client saw them
    /// leave: it must not route to them again while their restored lease
    /// could still be running. A pushed `put` of such a name is taken at
    /// once, and ends the memory: it is a write made after the removal, by
    /// an instance that is alive (one whose lease ran out and that
    /// renewed again, say).
    pub(crate) fn remembering_removals_for(memory: Duration) -> Self {
        Self {
            removal_memory: memory,
            ..Self::default()
        }
    }

    /// Makes picks prefer instances whose `zone` is `zone`.
    pub(crate) fn set_zone(&mut self, zone: Option<&str>) {
        self.zone = zone.map(Into::into);
    }

    pub(crate) fn version(&self) -> Option<Version> {
        self.version
    }

    /// Whether the next refresh should read the registry whole: it never
    /// did, something may have been missed since, or it has been
    /// [`READ_WHOLE_EVERY`].
    pub(crate) fn read_whole_due(&self, now: Instant) -> bool {
        self.read_whole_at
            .is_none_or(|at| now.saturating_duration_since(at) >= READ_WHOLE_EVERY)
    }

    /// Asks for a whole read at the next refresh: after anything that may
    /// have hidden a change from the record (a lost connection, a failover,
    /// a new subscription).
    pub(crate) fn read_whole_next(&mut self) {
        self.read_whole_at = None;
    }

    /// When a refresh is next worth doing: the earliest lease expiry or
    /// the end of a hold.
    pub(crate) fn next_check(&self) -> Option<Instant> {
        [self.next_check, self.hold_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every instance from the registry (and held ones), sorted by name.
    pub(crate) fn instances(&self) -> Vec<(InstanceName, Route)> {
        let mut all: Vec<(InstanceName, Route)> = self
            .registry
            .iter()
            .chain(&self.held)
            .map(|f| (f.name.clone(), f.route.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// [`Self::instances`], each with its status and metadata.
    pub(crate) fn instances_with_meta(&self) -> Vec<(InstanceName, Route, Meta)> {
        let mut all: Vec<(InstanceName, Route, Meta)> = self
            .registry
            .iter()
            .chain(&self.held)
            .map(|f| (f.name.clone(), f.route.clone(), f.meta.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The instances of `service` from the registry (and held ones), each
    /// with its status and metadata.
    pub(crate) fn instances_of(&self, service: &str) -> Vec<(InstanceName, Route, Meta)> {
        of_service(&self.registry, service)
            .chain(self.held.iter().filter(|f| f.name.service() == service))
            .map(|f| (f.name.clone(), f.route.clone(), f.meta.clone()))
            .collect()
    }

    /// Asks for a look at `at` at the latest (a fetch that failed).
    pub(crate) fn check_by(&mut self, at: Instant) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
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
        // The registry's record will not bring back what it still holds.
        self.read_whole_next();
    }

    /// Takes `route` out of the picks (`true`) or puts it back; whether
    /// that changed anything. The next build of its services applies it.
    pub(crate) fn set_ejected(&mut self, route: &Route, ejected: bool) -> bool {
        match ejected {
            true => self.ejected.insert(route.clone()),
            false => self.ejected.remove(route),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosd_driver::{Entry, Event, Snapshot, Status};
    use std::sync::Arc;
    use std::time::Duration;

    const HOLD: Duration = Duration::from_secs(10);

    fn entry(field: &str, url: &str) -> Entry {
        Entry {
            field: field.into(),
            url: url.into(),
            meta: Default::default(),
        }
    }

    fn version(generation: u64, revision: u64, entries: u64) -> Version {
        Version {
            generation,
            revision,
            entries,
        }
    }

    fn snapshot(generation: u64, revision: u64, entries: Vec<Entry>) -> Snapshot {
        Snapshot {
            next_expiry: (!entries.is_empty()).then_some(Duration::from_secs(5)),
            version: version(generation, revision, entries.len() as u64),
            entries,
        }
    }

    fn put(v: Version, field: &str) -> Event {
        Event::Put {
            version: v,
            since: v.revision - 1,
            entry: entry(field, &format!("http://{field}")),
            lease: Some(Duration::from_secs(5)),
        }
    }

    fn removed(v: Version, field: &str) -> Event {
        Event::Removed {
            version: v,
            since: v.revision - 1,
            field: field.into(),
        }
    }

    fn urls(s: &mut Sources, service: &str) -> Vec<String> {
        table_urls(&s.build(&RouteTable::default(), &Touched::All), service)
    }

    fn table_urls(t: &RouteTable, service: &str) -> Vec<String> {
        t.routes(service).iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn an_ejected_route_is_left_out_unless_its_service_has_no_other() {
        let mut s = Sources::default();
        let entries = vec![entry("p-1", "http://a"), entry("p-2", "http://b")];
        s.apply_snapshot(snapshot(1, 1, entries), None, Instant::now(), HOLD);
        assert!(s.set_ejected(&Route::new("http://a"), true));
        assert_eq!(urls(&mut s, "p"), ["http://b"]);
        s.set_ejected(&Route::new("http://b"), true);
        assert_eq!(urls(&mut s, "p"), ["http://a", "http://b"], "fail open");
        s.set_ejected(&Route::new("http://a"), false);
        assert_eq!(urls(&mut s, "p"), ["http://a"]);
    }

    #[test]
    fn groups_by_service_sorted_by_name_and_skips_garbage() {
        let mut s = Sources::default();
        let now = Instant::now();
        let entries = vec![
            entry("p-2", "http://b"),
            entry("p-1", "http://a"),
            entry("order-api-7", "http://o"),
            entry("nodash", "http://x"),
            entry("p-3", "not a url"),
            entry("p-4", "http://a"),
        ];
        s.apply_snapshot(snapshot(1, 1, entries), None, now, HOLD);
        assert_eq!(urls(&mut s, "p"), ["http://a", "http://b"]);
        assert_eq!(urls(&mut s, "order-api"), ["http://o"]);
        assert!(urls(&mut s, "nodash").is_empty());
        assert_eq!(s.next_check(), Some(now + Duration::from_secs(5)));
    }

    /// 10,000 distinct malformed entries come and go, one at a time, by
    /// whole reads and by pushed changes: what is remembered of them stays
    /// bounded by what the registry holds at that moment.
    #[test]
    fn skipped_entries_are_remembered_only_while_the_registry_holds_them() {
        let mut s = Sources::default();
        let now = Instant::now();
        let mut revision = 0;
        for i in 0..10_000u64 {
            revision += 1;
            let bad = entry(&format!("p-{i}"), &format!("not a url {i}"));
            let live = vec![entry("p-live", "http://live"), bad];
            s.apply_snapshot(snapshot(1, revision, live), None, now, HOLD);
            assert_eq!(s.skipped.len(), 1, "after the whole read {i}");
        }
        assert_eq!(urls(&mut s, "p"), ["http://live"]);
        // A pushed removal forgets the bad entry at once.
        revision += 1;
        let v = version(1, revision, 1);
        s.apply_event(removed(v, "p-9999"), now);
        assert_eq!(s.skipped.len(), 0);
        // And an empty registry, read whole, leaves nothing behind.
        revision += 1;
        s.apply_snapshot(snapshot(1, revision, vec![]), None, now, HOLD);
        assert_eq!(s.skipped.len(), 0);
    }

    #[test]
    fn a_rebuild_of_one_service_finds_it_among_services_that_start_alike() {
        let mut s = Sources::default();
        let entries = vec![
            entry("a-1", "http://a1"),
            entry("a-b-1", "http://ab"),
            entry("a-zzz", "http://a2"),
            entry("ab-1", "http://x"),
            entry("a.x-1", "http://y"),
            entry("0-1", "http://z"),
        ];
        s.apply_snapshot(snapshot(1, 1, entries), None, Instant::now(), HOLD);
        let a = s.build(&RouteTable::default(), &Touched::service("a"));
        assert_eq!(table_urls(&a, "a"), ["http://a1", "http://a2"]);
        assert!(table_urls(&a, "a-b").is_empty(), "not touched");
        let ab = s.build(&a, &Touched::service("a-b"));
        assert_eq!(table_urls(&ab, "a-b"), ["http://ab"]);
        assert_eq!(table_urls(&ab, "a"), ["http://a1", "http://a2"], "shared");
        let rest = s.build(&ab, &Touched::services(vec!["ab".into(), "a.x".into()]));
        assert_eq!(table_urls(&rest, "ab"), ["http://x"]);
        assert_eq!(table_urls(&rest, "a.x"), ["http://y"]);
        assert!(table_urls(&rest, "0").is_empty(), "not touched");
        assert!(table_urls(&rest, "zz").is_empty());
    }

    #[test]
    fn a_rotation_survives_a_rebuild_and_a_gone_service_gives_its_number_back() {
        let mut s = Sources::default();
        let now = Instant::now();
        let entries = vec![entry("p-1", "http://a"), entry("q-1", "http://b")];
        s.apply_snapshot(snapshot(1, 1, entries), None, now, HOLD);
        let t1 = s.build(&RouteTable::default(), &Touched::All);
        let (p, q) = (t1.rotation("p").unwrap(), t1.rotation("q").unwrap());
        assert_ne!(p, q);
        let t2 = s.build(&t1, &Touched::All);
        assert_eq!((t2.rotation("p"), t2.rotation("q")), (Some(p), Some(q)));
        assert_eq!(
            s.apply_event(removed(version(1, 2, 1), "q-1"), now),
            Applied::Changed("q".into())
        );
        let t3 = s.build(&t2, &Touched::service("q"));
        assert_eq!(t3.rotation("q"), None);
        assert_eq!(
            s.apply_event(put(version(1, 3, 2), "r-1"), now),
            Applied::Changed("r".into())
        );
        let t4 = s.build(&t3, &Touched::service("r"));
        assert_eq!(t4.rotation("r"), Some(q), "q's number, reused");
        assert_eq!(t4.rotation("p"), Some(p));
    }

    #[test]
    fn manual_routes_survive_refreshes_and_removal_forgets_a_url() {
        let mut s = Sources::default();
        s.add_manual("m", Route::new("http://m"));
        let one = snapshot(1, 1, vec![entry("p-1", "http://a")]);
        s.apply_snapshot(one, None, Instant::now(), HOLD);
        assert_eq!(urls(&mut s, "m"), ["http://m"]);
        s.remove_url("http://a");
        s.remove_url("http://m");
        assert_eq!(
            s.build(&RouteTable::default(), &Touched::All)
                .services()
                .count(),
            0
        );
    }

    fn meta(status: Status, pairs: &[(&str, &str)]) -> Meta {
        let mut m = Meta::default();
        m.status = status;
        for (k, v) in pairs {
            m.insert(k, v).unwrap();
        }
        m
    }

    /// The URLs a table picks for `service`, in pick order.
    fn pick_urls(t: &RouteTable, service: &str) -> Vec<String> {
        let s = t.service(service).unwrap();
        s.order
            .iter()
            .map(|&i| s.routes[i as usize].to_string())
            .collect()
    }

    #[test]
    fn a_status_change_is_one_pushed_put_and_takes_the_instance_out_of_the_picks() {
        let mut s = Sources::default();
        let now = Instant::now();
        let entries = vec![entry("p-1", "http://p-1"), entry("p-2", "http://p-2")];
        s.apply_snapshot(snapshot(1, 1, entries), None, now, HOLD);
        let mut down = put(version(1, 2, 2), "p-1");
        if let Event::Put { entry, .. } = &mut down {
            entry.meta = meta(Status::Down, &[]);
        }
        assert_eq!(s.apply_event(down, now), Applied::Changed("p".into()));
        let t = s.build(&RouteTable::default(), &Touched::All);
        assert_eq!(t.routes("p").len(), 2, "listed still");
        assert_eq!(pick_urls(&t, "p"), ["http://p-2"]);
        assert_eq!(
            s.apply_event(put(version(1, 3, 3), "p-9"), now),
            Applied::Changed("p".into()),
            "a new one still counts one more"
        );
        assert_eq!(
            s.apply_event(put(version(1, 4, 3), "p-8"), now),
            Applied::NeedFetch,
            "a put of one we lack that adds none: a writer without a record"
        );
    }

    #[test]
    fn a_whole_read_sees_a_status_change_too() {
        let mut s = Sources::default();
        let now = Instant::now();
        let entries = vec![entry("p-1", "http://p-1"), entry("p-2", "http://p-2")];
        s.apply_snapshot(snapshot(1, 1, entries.clone()), None, now, HOLD);
        let mut changed = entries;
        changed[0].meta = meta(Status::Draining, &[]);
        let touched = s.apply_snapshot(snapshot(1, 2, changed), Some(version(1, 1, 2)), now, HOLD);
        assert_eq!(touched, Touched::service("p"));
        let t = s.build(&RouteTable::default(), &Touched::All);
        assert_eq!(pick_urls(&t, "p"), ["http://p-2"]);
    }

    #[test]
    fn events_apply_in_order_and_gaps_ask_for_a_fetch() {
        let mut s = Sources::default();
        let now = Instant::now();
        assert_eq!(
            s.apply_event(put(version(1, 1, 1), "p-1"), now),
            Applied::NeedFetch,
            "nothing known yet"
        );
        s.apply_snapshot(snapshot(1, 1, vec![]), None, now, HOLD);
        assert_eq!(
            s.apply_event(put(version(1, 2, 1), "p-1"), now),
            Applied::Changed("p".into())
        );
        assert_eq!(
            s.apply_event(put(version(1, 2, 1), "p-1"), now),
            Applied::Nothing,
            "already have it"
        );
        assert_eq!(
            s.apply_event(put(version(1, 4, 2), "p-2"), now),
            Applied::NeedFetch,
            "gap"
        );
        assert_eq!(
            s.apply_event(removed(version(1, 3, 0), "p-1"), now),
            Applied::Changed("p".into())
        );
        assert!(urls(&mut s, "p").is_empty());
        assert_eq!(
            s.apply_event(put(version(2, 1, 1), "p-3"), now),
            Applied::NeedFetch,
            "other generation"
        );
        let stale = snapshot(1, 2, vec![entry("p-9", "http://old")]);
        assert_eq!(
            s.apply_snapshot(stale, Some(version(1, 2, 0)), now, HOLD),
            Touched::Nothing,
            "overtaken by events"
        );
        assert!(urls(&mut s, "p").is_empty());
    }

    #[test]
    fn an_event_that_vouches_for_a_revision_gap_applies() {
        // etcd: the revision is shared with keys outside the registry, so
        // the next change under the prefix may be many revisions on.
        let mut s = Sources::default();
        let now = Instant::now();
        s.apply_snapshot(snapshot(1, 10, vec![]), None, now, HOLD);
        let jump = |since, rev, entries, field: &str| Event::Put {
            version: version(1, rev, entries),
            since,
            entry: entry(field, "http://a"),
            lease: None,
        };
        assert_eq!(
            s.apply_event(jump(7, 15, 1, "p-1"), now),
            Applied::Changed("p".into()),
            "nothing happened between 7 and 15, and we stand at 10"
        );
        assert_eq!(
            s.apply_event(jump(16, 20, 2, "p-2"), now),
            Applied::NeedFetch,
            "a change at 16 we never saw"
        );
        assert_eq!(urls(&mut s, "p"), ["http://a"]);
    }

    #[test]
    fn an_event_whose_count_does_not_add_up_asks_for_a_fetch() {
        // Go gosd removed an entry (no revision move), then we registered.
        let mut s = Sources::default();
        let now = Instant::now();
        let two = vec![entry("go-1", "http://go"), entry("p-1", "http://a")];
        s.apply_snapshot(snapshot(1, 5, two), None, now, HOLD);
        assert_eq!(
            s.apply_event(put(version(1, 6, 2), "p-2"), now),
            Applied::NeedFetch
        );
        assert_eq!(
            s.apply_event(removed(version(1, 6, 2), "p-1"), now),
            Applied::NeedFetch
        );
        assert_eq!(s.version(), Some(version(1, 5, 2)), "nothing adopted");
    }

    #[test]
    fn a_registry_that_lost_its_state_does_not_empty_the_table() {
        let mut s = Sources::default();
        let now = Instant::now();
        let both = vec![entry("p-1", "http://a"), entry("p-2", "http://b")];
        s.apply_snapshot(snapshot(1, 7, both), None, now, HOLD);
        // Restarted empty: new generation, nothing in it.
        s.apply_snapshot(snapshot(2, 1, vec![]), Some(version(1, 7, 2)), now, HOLD);
        assert_eq!(urls(&mut s, "p"), ["http://a", "http://b"], "held");
        assert_eq!(
            s.next_check(),
            Some(now + HOLD),
            "a look when the hold ends"
        );
        // p-1 registers again; p-2 leaves for real: removals apply at once.
        assert_eq!(
            s.apply_event(put(version(2, 2, 1), "p-1"), now),
            Applied::Changed("p".into())
        );
        assert_eq!(
            s.apply_event(removed(version(2, 3, 0), "p-2"), now),
            Applied::Changed("p".into())
        );
        assert_eq!(urls(&mut s, "p"), ["http://p-1"]);
        assert_eq!(s.hold_until, None, "repopulated");
    }

    #[test]
    fn a_registry_that_went_back_in_time_counts_as_having_lost_its_state() {
        // A failover to a lagging replica: same generation, older revision.
        let mut s = Sources::default();
        let now = Instant::now();
        let both = vec![entry("p-1", "http://a"), entry("p-2", "http://b")];
        s.apply_snapshot(snapshot(1, 100, both), None, now, HOLD);
        let behind = snapshot(1, 90, vec![entry("p-1", "http://a")]);
        assert_eq!(
            s.apply_snapshot(behind, Some(version(1, 100, 2)), now, HOLD),
            Touched::All,
            "accepted, and p-2 held"
        );
        assert_eq!(
            s.version(),
            Some(version(1, 90, 1)),
            "the server's timeline now"
        );
        assert_eq!(
            urls(&mut s, "p"),
            ["http://a", "http://b"],
            "p-2 held until it re-registers or the hold ends"
        );
    }

    #[test]
    fn a_name_seen_removed_is_not_taken_back_from_a_restored_registry_until_its_memory_ends() {
        let memory = Duration::from_secs(12);
        let mut s = Sources::remembering_removals_for(memory);
        let now = Instant::now();
        let both = vec![entry("p-1", "http://a"), entry("p-2", "http://b")];
        s.apply_snapshot(snapshot(1, 7, both.clone()), None, now, HOLD);
        assert_eq!(
            s.apply_event(removed(version(1, 8, 1), "p-2"), now),
            Applied::Changed("p".into())
        );
        // Restored from a dump taken before the removal: p-2 is back in it.
        let restored = snapshot(1, 7, both.clone());
        s.apply_snapshot(restored, Some(version(1, 8, 1)), now, HOLD);
        assert_eq!(urls(&mut s, "p"), ["http://a"], "p-2 stays gone");
        let later = snapshot(1, 9, both.clone());
        s.apply_snapshot(later, None, now + memory - Duration::from_millis(1), HOLD);
        assert_eq!(urls(&mut s, "p"), ["http://a"], "still remembered");
        s.apply_snapshot(snapshot(1, 10, both), None, now + memory, HOLD);
        assert_eq!(urls(&mut s, "p"), ["http://a", "http://b"], "memory over");
    }

    #[test]
    fn a_removal_read_from_the_registry_is_remembered_and_a_pushed_put_ends_the_memory() {
        let both = vec![entry("p-1", "http://a"), entry("p-2", "http://p-2")];
        let one = vec![entry("p-1", "http://a")];
        let now = Instant::now();
        for put_first in [false, true] {
            let mut s = Sources::remembering_removals_for(Duration::from_secs(12));
            s.apply_snapshot(snapshot(1, 7, both.clone()), None, now, HOLD);
            // p-2's removal seen by a read, not a push.
            s.apply_snapshot(snapshot(1, 8, one.clone()), None, now, HOLD);
            if put_first {
                // p-2 renews after its lease ran out: a live write, pushed.
                assert_eq!(
                    s.apply_event(put(version(1, 9, 2), "p-2"), now),
                    Applied::Changed("p".into())
                );
            }
            let restored = snapshot(1, 7, both.clone());
            s.apply_snapshot(restored, Some(version(1, 8, 1)), now, HOLD);
            let want: &[&str] = match put_first {
                false => &["http://a"],
                true => &["http://a", "http://p-2"],
            };
            assert_eq!(urls(&mut s, "p"), want, "put first: {put_first}");
        }
    }

    #[test]
    fn a_hold_ends_when_its_time_is_up() {
        let mut s = Sources::default();
        let now = Instant::now();
        s.apply_snapshot(
            snapshot(1, 1, vec![entry("p-1", "http://a")]),
            None,
            now,
            HOLD,
        );
        s.apply_snapshot(snapshot(2, 1, vec![]), Some(version(1, 1, 1)), now, HOLD);
        assert_eq!(s.unchanged(None, now + HOLD / 2), Touched::Nothing);
        assert_eq!(urls(&mut s, "p").len(), 1);
        assert_eq!(
            s.unchanged(None, now + HOLD),
            Touched::All,
            "the hold ran out"
        );
        assert!(urls(&mut s, "p").is_empty());
    }

    #[test]
    fn rebuilding_one_service_matches_a_full_rebuild_and_shares_the_rest() {
        let mut s = Sources::default();
        let now = Instant::now();
        let three = vec![
            entry("p-1", "http://p1"),
            entry("p-2", "http://p2"),
            entry("q-1", "http://q1"),
        ];
        s.apply_snapshot(snapshot(1, 1, three), None, now, HOLD);
        let before = s.build(&RouteTable::default(), &Touched::All);
        assert_eq!(
            s.apply_event(put(version(1, 2, 4), "p-3"), now),
            Applied::Changed("p".into())
        );
        let partial = s.build(&before, &Touched::service("p"));
        let full = s.build(&before, &Touched::All);
        assert_eq!(partial.routes("p"), full.routes("p"));
        assert_eq!(partial.routes("p").len(), 3);
        assert!(
            Arc::ptr_eq(
                &partial.services.get("q").unwrap().routes,
                &before.services.get("q").unwrap().routes
            ),
            "q is shared, not rebuilt"
        );
        assert_eq!(
            s.apply_event(removed(version(1, 3, 3), "q-1"), now),
            Applied::Changed("q".into())
        );
        let partial = s.build(&partial, &Touched::service("q"));
        assert!(
            partial.routes("q").is_empty() && partial.services().all(|name| name != "q"),
            "an empty service is gone"
        );
    }

    #[test]
    fn a_snapshot_touches_only_the_services_that_changed() {
        let mut s = Sources::default();
        let now = Instant::now();
        let first = vec![
            entry("p-1", "http://p1"),
            entry("q-1", "http://q1"),
            entry("r-1", "http://r1"),
            entry("s-1", "http://s1"),
        ];
        assert_eq!(
            s.apply_snapshot(snapshot(1, 1, first.clone()), None, now, HOLD),
            Touched::All,
            "a first load"
        );
        let before = s.build(&RouteTable::default(), &Touched::All);
        assert_eq!(
            s.apply_snapshot(snapshot(1, 2, first), s.version(), now, HOLD),
            Touched::Nothing,
            "same entries, new revision"
        );
        // p gains an instance, q's moves, r's goes; s is as it was. The
        // snapshot comes in any order (a Redis hash has none).
        let second = vec![
            entry("s-1", "http://s1"),
            entry("q-1", "http://q1-moved"),
            entry("p-0", "http://p0"),
            entry("p-1", "http://p1"),
        ];
        let touched = s.apply_snapshot(snapshot(1, 3, second), s.version(), now, HOLD);
        assert_eq!(
            touched,
            Touched::Services(vec!["p".into(), "q".into(), "r".into()])
        );
        let names: Vec<String> = s.instances().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["p-0", "p-1", "q-1", "s-1"], "still sorted by name");
        let partial = s.build(&before, &touched);
        let full = s.build(&before, &Touched::All);
        for service in ["p", "q", "r", "s"] {
            assert_eq!(partial.routes(service), full.routes(service), "{service}");
        }
        assert_eq!(partial.routes("p").len(), 2);
        assert!(partial.routes("r").is_empty());
        assert!(
            Arc::ptr_eq(
                &partial.services.get("s").unwrap().routes,
                &before.services.get("s").unwrap().routes
            ),
            "s is shared, not rebuilt"
        );
    }

    #[test]
    fn changes_from_a_fetch_apply_when_they_follow_on_and_ask_for_a_read_when_not() {
        let now = Instant::now();
        let start = || {
            let mut s = Sources::default();
            let one = vec![entry("p-1", "http://p-1")];
            s.apply_snapshot(snapshot(1, 1, one), None, now, HOLD);
            s
        };
        let (v2, v3) = (version(1, 2, 2), version(1, 3, 1));
        let changes = || vec![put(v2, "q-1"), removed(v3, "p-1")];
        let lease = Some(Duration::from_secs(7));

        let mut s = start();
        assert_eq!(
            s.apply_changes(changes(), v3, lease, now),
            Ok(Touched::Services(vec!["p".into(), "q".into()]))
        );
        assert_eq!(s.version(), Some(v3));
        assert_eq!(urls(&mut s, "q"), ["http://q-1"]);
        assert!(urls(&mut s, "p").is_empty());
        assert_eq!(s.next_check(), Some(now + Duration::from_secs(7)));

        // Pushed events got there first: nothing left to do.
        assert_eq!(
            s.apply_changes(changes(), v3, lease, now),
            Ok(Touched::Nothing)
        );

        // A writer that keeps no record (Go gosd) wrote after them: the
        // registry has one entry more than the changes account for.
        let mut s = start();
        let after_go = version(1, 3, 2);
        assert_eq!(
            s.apply_changes(changes(), after_go, lease, now),
            Err(Touched::Services(vec!["p".into(), "q".into()]))
        );

        // ... or between them: the put no longer adds exactly one entry.
        let mut s = start();
        let go_first = vec![put(version(1, 2, 3), "q-1")];
        assert_eq!(
            s.apply_changes(go_first, version(1, 2, 3), lease, now),
            Err(Touched::Nothing)
        );
        assert_eq!(s.version(), Some(version(1, 1, 1)), "nothing applied");

        // Several entries reaped at once: only a read tells which.
        let mut s = start();
        let reaped = vec![Event::Changed {
            version: version(1, 2, 0),
        }];
        assert!(
            s.apply_changes(reaped, version(1, 2, 0), None, now)
                .is_err()
        );
    }

    #[test]
    fn a_whole_read_is_due_at_first_after_a_new_subscription_or_removal_and_every_so_often() {
        let mut s = Sources::default();
        let now = Instant::now();
        assert!(s.read_whole_due(now), "never read");
        s.apply_snapshot(
            snapshot(1, 1, vec![entry("p-1", "http://a")]),
            None,
            now,
            HOLD,
        );
        assert!(!s.read_whole_due(now));
        assert!(
            s.read_whole_due(now + READ_WHOLE_EVERY),
            "read too long ago"
        );
        s.apply_event(Event::Subscribed, now);
        assert!(s.read_whole_due(now), "changes may have been missed");
        s.apply_snapshot(
            snapshot(1, 1, vec![entry("p-1", "http://a")]),
            None,
            now,
            HOLD,
        );
        s.remove_url("http://a");
        assert!(
            s.read_whole_due(now),
            "only a whole read brings a removed URL back"
        );
    }
}
