//! The route table: an immutable snapshot that readers load without a lock,
//! and that refreshes replace whole.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gosd_driver::{InstanceName, Snapshot};

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
    /// When the earliest lease of another instance runs out, by our clock:
    /// the moment a crashed instance must leave the table.
    pub(crate) next_expiry: Option<Instant>,
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

/// A registry entry that passed validation.
struct Found {
    name: InstanceName,
    route: Route,
    expires: Option<Instant>,
}

/// Everything a table is built from: the last registry snapshot, the
/// manual routes, and what we already warned about.
#[derive(Default)]
pub(crate) struct Sources {
    registry: Vec<Found>,
    manual: Vec<(Box<str>, Route)>,
    warned: HashSet<(String, String)>,
}

impl Sources {
    /// Takes a snapshot received at `received`, skipping (and warning once
    /// about) entries that are not `<service>-<id>` → URL.
    pub(crate) fn set_registry(&mut self, snapshot: Snapshot, received: Instant) {
        self.registry.clear();
        for e in snapshot.entries {
            let Some(name) = InstanceName::parse(&e.field) else {
                self.warn_once(e.field, e.url, "the field is not <service>-<id>");
                continue;
            };
            if let Err(err) = check_url(&e.url) {
                self.warn_once(e.field, e.url, &err.to_string());
                continue;
            }
            self.registry.push(Found {
                name,
                route: Route::new(&e.url),
                expires: e.lease.map(|left| received + left),
            });
        }
        self.registry.sort_by(|a, b| a.name.cmp(&b.name));
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
        self.manual.retain(|(_, r)| &**r != url);
    }

    /// A new table; rotation cursors carry over from `old`. `own` is left
    /// out of `next_expiry`: our own lease is renewed by our heartbeat.
    pub(crate) fn build(&self, old: &RouteTable, own: Option<&InstanceName>) -> RouteTable {
        let mut lists: HashMap<&str, Vec<Route>> = HashMap::new();
        let registry = self.registry.iter().map(|f| (f.name.service(), &f.route));
        let manual = self.manual.iter().map(|(s, r)| (&**s, r));
        for (service, route) in registry.chain(manual) {
            let list = lists.entry(service).or_default();
            // The same URL twice (say, a stale Go entry and ours) must not
            // get twice the traffic.
            if !list.contains(route) {
                list.push(route.clone());
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
        let next_expiry = self
            .registry
            .iter()
            .filter(|f| Some(&f.name) != own)
            .filter_map(|f| f.expires)
            .min();
        RouteTable {
            services,
            next_expiry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosd_driver::Entry;
    use std::time::Duration;

    fn entry(field: &str, url: &str, lease: Option<u64>) -> Entry {
        Entry {
            field: field.into(),
            url: url.into(),
            lease: lease.map(Duration::from_secs),
        }
    }

    fn table(entries: Vec<Entry>) -> RouteTable {
        let mut s = Sources::default();
        s.set_registry(
            Snapshot {
                entries,
                revision: 1,
            },
            Instant::now(),
        );
        s.build(&RouteTable::default(), None)
    }

    #[test]
    fn groups_by_service_sorted_by_name_and_skips_garbage() {
        let t = table(vec![
            entry("p-2", "http://b", Some(5)),
            entry("p-1", "http://a", Some(9)),
            entry("order-api-7", "http://o", None),
            entry("nodash", "http://x", None),
            entry("p-3", "not a url", None),
            entry("p-4", "http://a", None),
        ]);
        assert_eq!(
            t.routes("p").iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            ["http://a", "http://b"]
        );
        assert_eq!(t.routes("order-api").len(), 1);
        assert!(t.routes("nodash").is_empty());
        let left = t.next_expiry.unwrap() - Instant::now();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    }

    #[test]
    fn rotation_survives_a_rebuild() {
        let mut s = Sources::default();
        s.set_registry(
            Snapshot {
                entries: vec![
                    entry("p-1", "http://a", None),
                    entry("p-2", "http://b", None),
                ],
                revision: 1,
            },
            Instant::now(),
        );
        let t1 = s.build(&RouteTable::default(), None);
        assert_eq!(t1.pick("p").unwrap().as_str(), "http://a");
        let t2 = s.build(&t1, None);
        assert_eq!(t2.pick("p").unwrap().as_str(), "http://b");
        assert_eq!(t2.pick("p").unwrap().as_str(), "http://a");
    }

    #[test]
    fn manual_routes_survive_refreshes_and_removal_forgets_a_url() {
        let mut s = Sources::default();
        s.add_manual("m", Route::new("http://m"));
        s.set_registry(
            Snapshot {
                entries: vec![entry("p-1", "http://a", None)],
                revision: 1,
            },
            Instant::now(),
        );
        let t = s.build(&RouteTable::default(), None);
        assert_eq!(t.routes("m").len(), 1);
        s.remove_url("http://a");
        s.remove_url("http://m");
        let t = s.build(&t, None);
        assert_eq!(t.services().count(), 0);
    }
}
