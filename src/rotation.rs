//! Round-robin that scales across threads: each thread keeps its own
//! cursor and its own copy of a service's routes.
//!
//! A pick used to bump one cursor per service and one reference count per
//! route, both shared by every thread. When two threads picked the same
//! service, those cache lines moved between cores on every pick, and the
//! pick slowed down several times over, below a plain mutex (BENCHMARKS.md,
//! "pick on one hot service"). Now a pick writes only memory its own
//! thread owns: a plain cursor, and the reference count of a route string
//! this thread copied for itself the first time it picked from that list.
//! The shared table is only read.
//!
//! Round-robin is strict per thread. Threads start their rotations one
//! apart (the first thread to pick from a client at its first route, the
//! next at its second, ...), so over many threads the spread stays even:
//! each thread's count per instance is within one of every other
//! instance's, and so the process's within the number of threads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::route::Route;
use crate::selector::Selector;
use crate::service_index::{RotationId, ServiceRoutes};

/// Hands out [`RotationId`]s to a client's services.
#[derive(Default)]
pub(crate) struct RotationIds {
    free: Vec<RotationId>,
    next: RotationId,
}

impl RotationIds {
    pub(crate) fn take(&mut self) -> RotationId {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Gives `id` back once its service left the table. A thread that still
    /// has a cursor under it goes on from there in the next service given
    /// it: a rotation's starting point is arbitrary anyway.
    pub(crate) fn give_back(&mut self, id: RotationId) {
        self.free.push(id);
    }
}

/// One thread's rotations over one client's services.
#[derive(Default)]
pub(crate) struct Rotations {
    /// Where this thread's rotations start.
    offset: usize,
    by_id: Vec<Rotation>,
    /// This thread's rotations through [`Selector`]s, by selector id; at
    /// most [`SELECTED`].
    selected: HashMap<u64, Selected, BuildHasherDefault<IdHasher>>,
}

/// How many selectors' rotations a thread keeps per client before it
/// forgets them all and starts again: a program keeps its selectors (one
/// per service and filter, say); one that makes a new one per request
/// makes its sequence per request (an allocation), and this bounds what a
/// thread holds for those.
const SELECTED: usize = 1024;

/// Selector ids are a counter: a multiply spreads them enough.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = ((self.0 << 8) | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct Selected {
    /// As [`Rotation::source`].
    source: Arc<[Route]>,
    /// Indices into `source` (see [`Selector::order`]).
    order: Box<[u32]>,
    next: usize,
}

struct Rotation {
    /// The table's route list this thread copied: while the table has the
    /// same list (the same allocation, which this keeps alive so that it
    /// cannot be reused for another), the copy is current.
    source: Arc<[Route]>,
    /// This thread's own copy of each route: cloning one touches a
    /// reference count no other thread bumps.
    copy: Box<[Route]>,
    /// The table's pick sequence (indices into `copy`): only read, so
    /// shared.
    order: Arc<[u32]>,
    next: usize,
}

impl Rotations {
    pub(crate) fn new(offset: usize) -> Self {
        Self {
            offset,
            by_id: Vec::new(),
            selected: HashMap::default(),
        }
    }

    /// The next route of `service` that `selector` matches, for this
    /// thread: a cursor step while the routes are the ones its sequence
    /// was made from.
    #[inline]
    pub(crate) fn next_selected(
        &mut self,
        service: &ServiceRoutes,
        selector: &Selector,
        zone: Option<&str>,
    ) -> Option<Route> {
        let current = self
            .selected
            .get(&selector.id())
            .is_some_and(|r| Arc::ptr_eq(&r.source, &service.routes));
        let r = match current {
            true => self.selected.get_mut(&selector.id())?,
            false => self.select(service, selector, zone),
        };
        let i = *r.order.get(r.next % r.order.len().max(1))?;
        r.next = r.next.wrapping_add(1);
        Some(service.routes[i as usize].clone())
    }

    /// A thread's first pick through `selector` from these routes.
    #[cold]
    #[inline(never)]
    fn select(
        &mut self,
        service: &ServiceRoutes,
        selector: &Selector,
        zone: Option<&str>,
    ) -> &mut Selected {
        let next = match self.selected.remove(&selector.id()) {
            Some(old) => old.next,
            None => self.offset,
        };
        if self.selected.len() >= SELECTED {
            self.selected.clear();
        }
        let fresh = Selected {
            source: service.routes.clone(),
            order: selector.order(service, zone),
            next,
        };
        self.selected.entry(selector.id()).or_insert(fresh)
    }

    /// The next route of `service` for this thread.
    #[inline(always)]
    pub(crate) fn next(&mut self, service: &ServiceRoutes) -> Route {
        let r = match self.by_id.get_mut(service.rotation as usize) {
            Some(r) if Arc::ptr_eq(&r.source, &service.routes) => r,
            _ => self.copy(service),
        };
        let n = r.next;
        r.next = n.wrapping_add(1);
        let i = r.order[n % r.order.len()] as usize;
        r.copy[i].clone()
    }

    /// A thread's first pick of `service`, or its first since the list
    /// changed: copies it, keeping the cursor.
    #[cold]
    #[inline(never)]
    fn copy(&mut self, service: &ServiceRoutes) -> &mut Rotation {
        let id = service.rotation as usize;
        if self.by_id.len() <= id {
            let offset = self.offset;
            self.by_id.resize_with(id + 1, || Rotation {
                source: Arc::new([]),
                copy: Box::new([]),
                order: Arc::new([]),
                next: offset,
            });
        }
        let r = &mut self.by_id[id];
        r.source = service.routes.clone();
        r.order = service.order.clone();
        r.copy = service
            .routes
            .iter()
            .map(|route| Route::new(route.as_str()))
            .collect();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(rotation: RotationId, urls: &[&str]) -> ServiceRoutes {
        ServiceRoutes {
            routes: urls.iter().map(|u| Route::new(u)).collect(),
            order: (0..urls.len() as u32).collect(),
            metas: urls.iter().map(|_| Default::default()).collect(),
            rotation,
        }
    }

    fn urls(r: &mut Rotations, s: &ServiceRoutes, n: usize) -> Vec<String> {
        (0..n).map(|_| r.next(s).to_string()).collect()
    }

    #[test]
    fn a_thread_rotates_strictly_from_its_offset() {
        let s = service(3, &["a", "b", "c"]);
        assert_eq!(urls(&mut Rotations::new(0), &s, 4), ["a", "b", "c", "a"]);
        assert_eq!(urls(&mut Rotations::new(1), &s, 4), ["b", "c", "a", "b"]);
    }

    #[test]
    fn a_new_list_is_picked_from_at_once_and_the_rotation_goes_on() {
        let mut r = Rotations::new(0);
        let one = service(0, &["a", "b"]);
        assert_eq!(urls(&mut r, &one, 1), ["a"]);
        let two = service(0, &["a", "b", "c"]);
        assert_eq!(urls(&mut r, &two, 3), ["b", "c", "a"]);
        assert_eq!(
            urls(&mut r, &one, 1),
            ["a"],
            "back to the old list: the 5th pick"
        );
    }

    #[test]
    fn a_pick_follows_the_sequence() {
        let s = ServiceRoutes {
            order: vec![1, 0, 1, 1].into(),
            ..service(0, &["light", "heavy"])
        };
        assert_eq!(
            urls(&mut Rotations::new(0), &s, 5),
            ["heavy", "light", "heavy", "heavy", "heavy"]
        );
    }

    #[test]
    fn routes_are_this_threads_own_copies() {
        let s = service(0, &["a"]);
        let mut r = Rotations::new(0);
        let route = r.next(&s);
        assert_eq!(route, s.routes[0]);
        assert!(!std::ptr::eq(route.as_str(), s.routes[0].as_str()));
    }

    #[test]
    fn ids_are_reused() {
        let mut ids = RotationIds::default();
        assert_eq!((ids.take(), ids.take()), (0, 1));
        ids.give_back(0);
        assert_eq!((ids.take(), ids.take()), (0, 2));
    }
}
