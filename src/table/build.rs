//! Building a [`RouteTable`] from the [`Sources`]: a change rebuilds the
//! services it touched and shares the others' lists with the old table.

use std::collections::HashSet;
use std::sync::Arc;

use gosd_driver::Meta;

use super::{Fx, FxMap, RouteTable, Sources, Touched, of_service};
use crate::pick_order::pick_order;
use crate::route::Route;
use crate::service_index::{ServiceIndex, ServiceRoutes};

impl Sources {
    /// Whether `route` goes into its service's pick list.
    fn not_ejected(&self, route: &Route) -> bool {
        !self.ejected.contains(route)
    }

    /// The table after `touched`: those services are rebuilt from these
    /// sources, the others' route lists are shared with `old` by reference.
    /// Rotations carry over from `old`; a service gone from the table gives
    /// its rotation number back.
    pub(crate) fn build(&mut self, old: &RouteTable, touched: &Touched) -> RouteTable {
        // The same URL twice in a service (say, a stale Go entry and ours)
        // must not get twice the traffic.
        let mut seen: HashSet<(&str, &str), Fx> = HashSet::default();
        // For a few services, only their entries: a pushed change then
        // costs its service, not a scan of the whole registry.
        let (every, few) = match touched {
            Touched::Services(names) => (&[][..], &names[..]),
            _ => (&self.registry[..], &[][..]),
        };
        let few = few
            .iter()
            .flat_map(|service| of_service(&self.registry, service));
        let registry = every
            .iter()
            .chain(few)
            .chain(&self.held)
            .map(|f| (f.name.service(), &f.route, &f.meta));
        // Manual routes are up, of the default weight, in no zone.
        let none = Meta::default();
        let manual = self.manual.iter().map(|(s, r)| (&**s, r, &none));
        let mut lists: FxMap<&str, Vec<(Route, &Meta)>> = FxMap::default();
        // Routes the outlier detector left out of the picks, by service: a
        // service whose every route is left out keeps them all (fail open).
        let mut left_out: FxMap<&str, Vec<(Route, &Meta)>> = FxMap::default();
        for (service, route, meta) in registry.chain(manual) {
            if touched.includes(service) && seen.insert((service, route.as_str())) {
                let list = match self.not_ejected(route) {
                    true => lists.entry(service),
                    false => left_out.entry(service),
                };
                list.or_default().push((route.clone(), meta));
            }
        }
        for (service, routes) in left_out {
            if !lists.contains_key(service) {
                // Logged where it was decided (`outliers`): a build runs
                // again on every change of the service.
                tracing::debug!(service, "every instance is ejected; routing to them all");
                lists.insert(service, routes);
            }
        }
        let shared = old
            .services
            .iter()
            .filter(|(name, _)| !touched.includes(name))
            .map(|(name, s)| (name.clone(), s.clone()));
        let rotations = &mut self.rotations;
        for (name, s) in old.services.iter() {
            if touched.includes(name) && !lists.contains_key(&**name) {
                rotations.give_back(s.rotation);
            }
        }
        let zone = self.zone.as_deref();
        let failing_open = &mut self.failing_open;
        let rebuilt: Vec<_> = lists
            .into_iter()
            .map(|(service, instances)| {
                let rotation = old.rotation(service).unwrap_or_else(|| rotations.take());
                let metas: Vec<&Meta> = instances.iter().map(|(_, m)| *m).collect();
                let (order, open) = pick_order(&metas, zone);
                log_fail_open(failing_open, service, open, instances.len());
                let metas = metas.into_iter().cloned().collect();
                let routes = instances.into_iter().map(|(r, _)| r).collect();
                let order = order.into();
                let service_routes = ServiceRoutes {
                    routes,
                    order,
                    metas,
                    rotation,
                };
                (Arc::<str>::from(service), service_routes)
            })
            .collect();
        // A service that left the table no longer fails open.
        failing_open
            .retain(|name| !touched.includes(name) || rebuilt.iter().any(|(n, _)| **n == **name));
        let services = shared.chain(rebuilt).collect();
        RouteTable {
            services: ServiceIndex::new(services),
            zone: self.zone.as_deref().map(Arc::from),
        }
    }
}

/// Logs a service's picks beginning or ceasing to fail open, once each.
fn log_fail_open(failing: &mut HashSet<Box<str>, Fx>, service: &str, open: bool, instances: usize) {
    if open && failing.insert(service.into()) {
        tracing::warn!(
            service,
            instances,
            "no instance of this service is up (all are draining or down): picking from all of them until one is"
        );
    } else if !open && failing.remove(service) {
        tracing::info!(
            service,
            "an instance of this service is up again: picking only from those up"
        );
    }
}
