//! The current route table, read on every pick by every thread.
//!
//! The table lives in an [`ArcSwap`]: a refresh swaps a new version in
//! whole, readers never lock. An `ArcSwap` load was still the most
//! expensive step of a pick (callgrind: ~40 of its ~240 instructions, with
//! an atomic read-modify-write on the thread's debt slot). Tables change
//! rarely and are read constantly, so each thread also keeps the version it
//! last read, with its number: while [`SharedTable::version`] has not moved,
//! a pick costs one plain atomic load and no reference count. Beside it the
//! thread keeps its [`Rotations`] over that client's services: a pick
//! writes nothing another thread reads.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, Guard};

use crate::rotation::Rotations;
use crate::route::Route;
use crate::selector::Selector;
use crate::table::RouteTable;

/// One client's route table, with a per-thread cache in front of it.
pub(crate) struct SharedTable {
    /// Tells this table's entries in a thread's cache from another
    /// client's. Unique for the process's life, unlike an address.
    id: u64,
    /// Bumped before and after every store, so odd while one is under way:
    /// a thread whose cached version has this (even) number holds the
    /// current table.
    version: AtomicU64,
    table: ArcSwap<RouteTable>,
    /// How many threads started rotations over this client's services:
    /// the next one starts one further on.
    pickers: AtomicUsize,
    /// The rotation of a pick that cannot use its thread's (see
    /// [`Self::pick_shared`]).
    shared_cursor: AtomicUsize,
}

/// A few slots, so a thread that picks from two clients in turn (the
/// global one and a library's) keeps both fast. A slot holds its table
/// alive until this thread misses and reuses it (it reuses slots that
/// only it still holds first: a dropped client's, an old version's) or
/// exits: at most `SLOTS` stale tables per thread. A thread that picks
/// from more clients than that in turn starts its rotations afresh when
/// it takes a slot back.
const SLOTS: usize = 4;

#[derive(Default)]
struct Cached {
    /// 0: empty (ids start at 1).
    id: u64,
    version: u64,
    table: Arc<RouteTable>,
    rotations: Rotations,
}

thread_local! {
    static CACHE: RefCell<[Cached; SLOTS]> = RefCell::default();
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl SharedTable {
    pub(crate) fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            version: AtomicU64::new(0),
            table: ArcSwap::from_pointee(RouteTable::default()),
            pickers: AtomicUsize::new(0),
            shared_cursor: AtomicUsize::new(0),
        }
    }

    /// The current table, for anything but the per-request path.
    pub(crate) fn load(&self) -> Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Replaces the table. Callers serialise stores (they hold the
    /// sources lock), so versions and tables advance together.
    pub(crate) fn store(&self, table: RouteTable) {
        // Odd first: a thread that saw the new table (on a miss, or via
        // `load`) and then told another one must not leave that one on
        // its cached old table. The swap below publishes this bump.
        self.version.fetch_add(1, Ordering::Release);
        self.table.store(Arc::new(table));
        // Release: a reader that sees the new number then loads this table
        // (or a newer one), never the one it replaced.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Runs `read` on the current table, from this thread's cache when it
    /// is current. Not for the per-request path: that is [`Self::pick`].
    pub(crate) fn with<R>(&self, read: impl Fn(&RouteTable) -> R) -> R {
        match self.cached(|table, _| read(table)) {
            Some(r) => r,
            None => read(&self.table.load()),
        }
    }

    /// The next route of `service` for this thread, from its cache when it
    /// is current: the per-request path.
    ///
    /// Not [`Self::with`]: there the pick would be a closure called from
    /// two places, the cache and the fallback, and whether LLVM inlined it
    /// then changed with unrelated code; out of line, the route came back
    /// through memory and the pick's cost varied from one build to the next
    /// (BENCHMARKS.md, "the pick path's shape"). Here the closure has one
    /// call site and the fallback is its own function.
    #[inline(always)]
    pub(crate) fn pick(&self, service: &str) -> Option<Route> {
        let picked =
            self.cached(|table, rotations| table.service(service).map(|s| rotations.next(s)));
        match picked {
            Some(route) => route,
            None => self.pick_shared(service),
        }
    }

    /// The next route of `selector`'s service that it matches, for this
    /// thread (see [`Rotations::next_selected`]); from the shared table
    /// with the selector's own cursor when the cache cannot be used.
    #[inline]
    pub(crate) fn pick_selected(&self, selector: &Selector) -> Option<Route> {
        let service = selector.service();
        let picked = self.cached(|table, rotations| {
            let s = table.service(service)?;
            rotations.next_selected(s, selector, table.zone())
        });
        match picked {
            Some(route) => route,
            None => {
                let table = self.table.load();
                selector.pick_from(table.service(service)?, table.zone())
            }
        }
    }

    /// A pick while a store is under way (or this thread's cache is gone,
    /// or borrowed): from the shared table, with this thread's rotation
    /// while it has its cache, else with a cursor shared by every thread.
    #[cold]
    #[inline(never)]
    fn pick_shared(&self, service: &str) -> Option<Route> {
        let table = self.table.load();
        let s = table.service(service)?;
        let mine = CACHE.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let entry = match cache.iter().position(|c| c.id == self.id) {
                Some(slot) => &mut cache[slot],
                // An odd version, which no pick takes from the cache: the
                // slot only holds this thread's rotations until the store
                // is done.
                None => self.refill(&mut cache, u64::MAX),
            };
            Some(entry.rotations.next(s))
        });
        if let Ok(Some(route)) = mine {
            return Some(route);
        }
        let n = self.shared_cursor.fetch_add(1, Ordering::Relaxed);
        Some(s.routes[s.order[n % s.order.len()] as usize].clone())
    }

    /// Runs `read` on this thread's cached copy of the current table (and
    /// its rotations), or returns `None` when that cannot be used: a store
    /// is under way, the thread is exiting (its cache is gone), or `read`
    /// runs inside another `read` (the cache is borrowed).
    #[inline(always)]
    fn cached<R>(&self, read: impl FnOnce(&RouteTable, &mut Rotations) -> R) -> Option<R> {
        let version = self.version.load(Ordering::Acquire);
        if version % 2 == 1 {
            return None;
        }
        CACHE
            .try_with(|cache| {
                let mut cache = cache.try_borrow_mut().ok()?;
                // Every slot, not only the first: a thread that picks from
                // two clients in turn keeps both on this path.
                let current = cache
                    .iter()
                    .position(|c| c.id == self.id && c.version == version);
                let entry = match current {
                    Some(slot) => &mut cache[slot],
                    None => self.refill(&mut cache, version),
                };
                Some(read(&entry.table, &mut entry.rotations))
            })
            .ok()
            .flatten()
    }

    /// Only after a store, or on a thread's first pick from this client:
    /// the slot for this table, loaded afresh at `version`. The thread's
    /// rotations over this client carry over; a slot taken from another
    /// client starts new ones.
    #[cold]
    #[inline(never)]
    fn refill<'c>(&self, cache: &'c mut [Cached; SLOTS], version: u64) -> &'c mut Cached {
        let entry = &mut cache[self.slot(cache)];
        if entry.id != self.id {
            entry.id = self.id;
            entry.rotations = Rotations::new(self.pickers.fetch_add(1, Ordering::Relaxed));
        }
        entry.version = version;
        // Loaded after `version`: at least as new as that number.
        entry.table = self.table.load_full();
        entry
    }

    /// This table's slot, or the one it takes over: the first that only
    /// this cache still holds (empty, a dropped client's, an old version),
    /// else the last, so the first slots keep the long-lived clients.
    fn slot(&self, cache: &[Cached; SLOTS]) -> usize {
        cache
            .iter()
            .position(|c| c.id == self.id)
            .or_else(|| {
                // A current table is also held by its `ArcSwap`.
                cache.iter().position(|c| Arc::strong_count(&c.table) == 1)
            })
            .unwrap_or(SLOTS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Sources;

    /// A table with `n` services.
    fn table(n: usize) -> RouteTable {
        let mut sources = Sources::default();
        for s in 0..n {
            sources.add_manual(&format!("s{s}"), Route::new("http://x"));
        }
        sources.build(&RouteTable::default(), &crate::table::Touched::All)
    }

    fn size(t: &SharedTable) -> usize {
        t.with(|t| t.services().count())
    }

    #[test]
    fn a_thread_sees_every_store() {
        let t = SharedTable::new();
        assert_eq!(size(&t), 0);
        t.store(table(1));
        assert_eq!(size(&t), 1);
        t.store(table(2));
        assert_eq!(size(&t), 2);
    }

    #[test]
    fn other_threads_see_a_store_too() {
        let t = SharedTable::new();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(size(&t), 0)).join().unwrap();
            t.store(table(1));
            s.spawn(|| assert_eq!(size(&t), 1)).join().unwrap();
        });
    }

    #[test]
    fn more_clients_than_slots_each_read_their_own_table() {
        let tables: Vec<SharedTable> = (0..SLOTS * 2 + 1)
            .map(|n| {
                let t = SharedTable::new();
                t.store(table(n));
                t
            })
            .collect();
        for _ in 0..3 {
            for (n, t) in tables.iter().enumerate() {
                assert_eq!(size(t), n);
            }
        }
    }

    #[test]
    fn dropped_clients_give_their_slots_back() {
        let dropped: Vec<_> = (0..SLOTS)
            .map(|_| {
                let t = SharedTable::new();
                t.store(table(1));
                assert_eq!(size(&t), 1);
                Arc::downgrade(&t.table.load_full())
            })
            .collect();
        let live: Vec<SharedTable> = (0..SLOTS).map(|_| SharedTable::new()).collect();
        for t in &live {
            assert_eq!(size(t), 0);
        }
        assert!(dropped.iter().all(|w| w.upgrade().is_none()));
        // And the live ones now each have a slot: nothing is evicted.
        let held: Vec<_> = live.iter().map(|t| t.table.load_full()).collect();
        for t in &live {
            assert_eq!(size(t), 0);
        }
        assert!(
            held.iter().all(|h| Arc::strong_count(h) == 3),
            "ArcSwap, cache, here"
        );
    }

    #[test]
    fn a_store_under_way_bypasses_the_cache() {
        let t = SharedTable::new();
        assert_eq!(size(&t), 0);
        // `store`'s steps, stopped halfway: the new table is in, the
        // version not yet final.
        t.version.fetch_add(1, Ordering::Release);
        t.table.store(Arc::new(table(1)));
        assert_eq!(size(&t), 1);
        t.version.fetch_add(1, Ordering::Release);
        assert_eq!(size(&t), 1);
    }

    #[test]
    fn a_pick_falls_back_to_the_shared_table_like_any_read() {
        let t = SharedTable::new();
        t.store(table(1));
        assert_eq!(t.pick("s1"), None, "cached: the table without s1");
        // A store under way, stopped before its swap: a pick now must not
        // cache the old table under the odd version, or it would keep
        // picking from it once the new one is in.
        t.version.fetch_add(1, Ordering::Release);
        assert_eq!(t.pick("s1"), None, "still the old table");
        t.table.store(Arc::new(table(2)));
        assert!(t.pick("s1").is_some(), "the new table, not a cached one");
        t.version.fetch_add(1, Ordering::Release);
        assert!(t.pick("s1").is_some());
        // Inside another read, this thread's cache is borrowed.
        let outer = SharedTable::new();
        assert!(outer.with(|_| t.pick("s1")).is_some());
    }

    #[test]
    fn a_read_inside_a_read_falls_back_to_the_shared_table() {
        let outer = SharedTable::new();
        let inner = SharedTable::new();
        inner.store(table(1));
        assert_eq!(outer.with(|_| size(&inner)), 1);
    }

    /// Sources with service `p` at `urls`.
    fn sources(urls: &[&str]) -> Sources {
        let mut sources = Sources::default();
        for url in urls {
            sources.add_manual("p", Route::new(url));
        }
        sources
    }

    fn picks(t: &SharedTable, n: usize) -> Vec<String> {
        (0..n).map(|_| t.pick("p").unwrap().to_string()).collect()
    }

    #[test]
    fn a_rotation_goes_on_across_stores() {
        let t = SharedTable::new();
        let mut s = sources(&["a", "b"]);
        t.store(s.build(&t.load(), &crate::table::Touched::All));
        assert_eq!(picks(&t, 3), ["a", "b", "a"]);
        t.store(s.build(&t.load(), &crate::table::Touched::All));
        assert_eq!(picks(&t, 1), ["b"], "same list, rotation kept");
        s.add_manual("p", Route::new("c"));
        t.store(s.build(&t.load(), &crate::table::Touched::All));
        assert_eq!(picks(&t, 4), ["b", "c", "a", "b"], "new list, cursor kept");
    }

    #[test]
    fn each_thread_rotates_strictly_and_threads_start_one_apart() {
        let t = SharedTable::new();
        let mut s = sources(&["a", "b", "c"]);
        t.store(s.build(&t.load(), &crate::table::Touched::All));
        let firsts: Vec<String> = std::thread::scope(|scope| {
            (0..3)
                .map(|_| {
                    let first = scope.spawn(|| {
                        let seq = picks(&t, 300);
                        for pair in seq.windows(2) {
                            assert_ne!(pair[0], pair[1], "strict round-robin");
                        }
                        seq[0].clone()
                    });
                    first.join().unwrap()
                })
                .collect()
        });
        assert_eq!(firsts, ["a", "b", "c"]);
    }

    #[test]
    fn picks_while_tables_are_swapped_come_from_the_current_one() {
        // Each table's routes name their generation: `http://g<n>-a`.
        let generation = |n: usize| {
            let mut sources = Sources::default();
            for id in ["a", "b"] {
                sources.add_manual("p", Route::new(&format!("http://g{n}-{id}")));
            }
            sources.build(&RouteTable::default(), &crate::table::Touched::All)
        };
        let t = SharedTable::new();
        t.store(generation(0));
        let stored = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    // Until the last store is in: every store overlaps picks.
                    let mut at_least = 0;
                    while at_least < 300 {
                        at_least = stored.load(Ordering::Acquire);
                        let route = t.pick("p").unwrap();
                        let n: usize = route["http://g".len()..]
                            .split('-')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap();
                        assert!(n >= at_least, "{route} after generation {at_least} was in");
                    }
                });
            }
            scope.spawn(|| {
                for n in 1..=300 {
                    t.store(generation(n));
                    stored.store(n, Ordering::Release);
                }
            });
        });
    }
}
