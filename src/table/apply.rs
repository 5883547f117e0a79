//! Taking in what the registry says: a whole snapshot, the changes a
//! fetch brought, a pushed event. Here too are the two ways the sources
//! stand up to a registry that lost or went back on its state: the hold
//! of the entries it forgot, and the removals remembered against a
//! restore that brings them back.

use std::time::{Duration, Instant};

use gosd_driver::{Entry, Event, Snapshot, Version};

use super::{Applied, Found, FxMap, Sources, Touched, service_of};
use crate::naming::{check_url, parse_field};
use crate::route::Route;

impl Sources {
    /// What a fetch that found nothing changed says: when the earliest
    /// lease runs out. Touches the routes only if a hold ran out.
    pub(crate) fn unchanged(
        &mut self,
        next_expiry: Option<Duration>,
        received: Instant,
    ) -> Touched {
        self.next_check = next_expiry.map(|left| received + left);
        self.end_hold_if_due(received)
    }

    /// Takes a whole snapshot received at `received`, in answer to a fetch
    /// that `sent` the version we knew then; skips (and warns once about)
    /// entries that are not `<service>-<id>` → URL. Returns the services
    /// whose routes changed.
    ///
    /// If the registry lost its state — a new generation, or the same one
    /// gone back to an older revision (a failover to a lagging replica, a
    /// restore) — the entries we had and it lacks are **held** until they
    /// are back or `hold_for` passes: a registry that forgot everyone must
    /// not empty every client's table while providers register again.
    pub(crate) fn apply_snapshot(
        &mut self,
        snapshot: Snapshot,
        sent: Option<Version>,
        received: Instant,
        hold_for: Duration,
    ) -> Touched {
        let new = snapshot.version;
        let next_check = snapshot.next_expiry.map(|left| received + left);
        let mut lost_state = false;
        if let Some(known) = self.version {
            let same_generation = known.generation == new.generation;
            let went_back = same_generation && sent.is_some_and(|s| new.revision < s.revision);
            if same_generation && new.revision < known.revision && !went_back {
                // Pushed changes overtook this read: what we have is newer.
                self.next_check = next_check.or(self.next_check);
                return self.end_hold_if_due(received);
            }
            lost_state = !same_generation || went_back;
        }
        let first_load = self.version.is_none();
        let was_holding = !self.held.is_empty();
        let old = std::mem::take(&mut self.registry);
        if lost_state && !old.is_empty() {
            tracing::warn!(
                held = old.len(),
                "the registry lost its state; keeping the last known routes until they register again (at most {})",
                humantime::format_duration(hold_for)
            );
            self.held.extend(old.iter().cloned());
            self.hold_until = Some(received + hold_for);
        }
        // Diff against what we had, rather than rebuild: an entry we already
        // validated is kept as it is (parsing every URL again, then sorting
        // the whole registry, was most of the cost of a large refresh), and
        // the diff names the services the table must rebuild.
        let at: FxMap<&str, usize> = old
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        let mut kept = vec![false; old.len()];
        let mut added = Vec::new();
        self.skipped.begin_sweep();
        self.forget_removals_due(received);
        for e in snapshot.entries {
            match at.get(e.field.as_str()) {
                Some(&i) if *old[i].route == *e.url && old[i].meta == e.meta => kept[i] = true,
                _ if self.saw_removed(&e.field) => {}
                _ => added.extend(self.validate(e)),
            }
        }
        drop(at);
        self.skipped.end_sweep();
        added.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut touched: Vec<Box<str>> = added.iter().map(|f| f.name.service().into()).collect();
        let mut added = added.into_iter().peekable();
        self.registry.reserve(old.len() + added.len());
        for (f, kept) in old.into_iter().zip(kept) {
            if !kept {
                // Gone from a registry that kept its state: removed, as a
                // pushed removal says. (One that lost it holds them.)
                if !lost_state {
                    self.remember_removal(f.name.as_str(), received);
                }
                touched.push(f.name.service().into());
                continue;
            }
            while let Some(a) = added.next_if(|a| a.name < f.name) {
                self.registry.push(a);
            }
            self.registry.push(f);
        }
        self.registry.extend(added);
        self.version = Some(new);
        self.next_check = next_check;
        self.read_whole_at = Some(received);
        let registry = &self.registry;
        self.held
            .retain(|h| registry.binary_search_by(|f| f.name.cmp(&h.name)).is_err());
        let hold_ended = self.end_hold_if_due(received);
        if first_load || was_holding || !self.held.is_empty() || hold_ended != Touched::Nothing {
            return Touched::All;
        }
        Touched::services(touched)
    }

    /// Applies the changes a fetch brought (the driver's record of what
    /// happened since the version we sent), as pushed events are applied.
    /// `Err` when they do not take us to `version` — they do not follow on
    /// from what we have, one of them needs a read (many entries reaped at
    /// once), or a writer that keeps no record (Go gosd) wrote since — and
    /// the registry must be read whole. Either way, with the services
    /// the applied ones touched.
    pub(crate) fn apply_changes(
        &mut self,
        events: Vec<Event>,
        version: Version,
        next_expiry: Option<Duration>,
        received: Instant,
    ) -> Result<Touched, Touched> {
        let mut touched = Vec::new();
        let mut followed = true;
        for event in events {
            match self.apply_event(event, received) {
                Applied::Changed(service) => touched.push(service.into_boxed_str()),
                Applied::Nothing => {}
                Applied::NeedFetch => {
                    followed = false;
                    break;
                }
            }
        }
        // At `version`, or past it: pushed events may have overtaken us.
        let caught_up = self.version.is_some_and(|v| {
            v == version || (v.generation == version.generation && v.revision > version.revision)
        });
        let touched = match self.end_hold_if_due(received) {
            Touched::All => Touched::All,
            _ => Touched::services(touched),
        };
        if followed && caught_up {
            // The leases in `Put` events counted from when they were written;
            // this one is the registry's now.
            self.next_check = next_expiry.map(|left| received + left);
            Ok(touched)
        } else {
            Err(touched)
        }
    }

    /// Applies one pushed change if it is the very next one we expect.
    pub(crate) fn apply_event(&mut self, event: Event, received: Instant) -> Applied {
        let (version, since, change) = match event {
            Event::Subscribed => {
                // Changes made while we were not subscribed are in the
                // record, but so may be a failover's other history.
                self.read_whole_next();
                return Applied::NeedFetch;
            }
            Event::Changed { version } => (version, version.revision, None),
            Event::Put {
                version,
                since,
                entry,
                lease,
            } => (version, since, Some(Ok((entry, lease)))),
            Event::Removed {
                version,
                since,
                field,
            } => (version, since, Some(Err(field))),
        };
        let Some(known) = self.version else {
            return Applied::NeedFetch;
        };
        if version.generation == known.generation && version.revision <= known.revision {
            return Applied::Nothing;
        }
        // The very next change (nothing happened between our revision and
        // this one, as the driver vouches with `since`), and exactly one
        // entry more or fewer: a writer that moves no revision (Go gosd)
        // shows up as a count that does not add up, and then only a fetch
        // tells what happened.
        let next = version.generation == known.generation && since <= known.revision;
        let added = next && version.entries == known.entries + 1;
        let removed = next && version.entries + 1 == known.entries;
        // A put of an entry we have (its status or metadata changed) adds
        // none.
        let replaced = |entry: &Entry| {
            next && version.entries == known.entries
                && self
                    .registry
                    .binary_search_by(|f| f.name.as_str().cmp(&entry.field))
                    .is_ok()
        };
        let field = match change {
            Some(Ok((entry, lease))) if added || replaced(&entry) => {
                let field = entry.field.clone();
                if let Some(lease) = lease {
                    let at = received + lease;
                    self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
                }
                // Not applied, and our version stays: a put that fails
                // validation (forged on the channel, or a writer's bug)
                // must neither replace a good entry nor claim the
                // revision of the real change, which would then be lost.
                let Some(found) = self.validate(entry) else {
                    return Applied::NeedFetch;
                };
                self.removed.remove(field.as_str());
                self.remove_field(&field);
                let at = self.registry.partition_point(|f| f.name < found.name);
                self.registry.insert(at, found);
                field
            }
            Some(Err(field)) if removed => {
                self.remember_removal(&field, received);
                self.remove_field(&field);
                field
            }
            _ => return Applied::NeedFetch,
        };
        self.version = Some(version);
        Applied::Changed(service_of(&field))
    }

    fn remember_removal(&mut self, field: &str, now: Instant) {
        if self.removal_memory.is_zero() {
            return;
        }
        self.forget_removals_due(now);
        self.removed.insert(field.into(), now + self.removal_memory);
    }

    /// Drops the removals remembered long enough.
    fn forget_removals_due(&mut self, now: Instant) {
        if !self.removed.is_empty() {
            self.removed.retain(|_, until| *until > now);
        }
    }

    /// Whether `field` left while this client watched, lately: a read that
    /// still holds it comes from a registry that went back in time.
    fn saw_removed(&self, field: &str) -> bool {
        let refused = self.removed.contains_key(field);
        if refused {
            tracing::debug!(
                field,
                "not taking back an instance seen deregistered: the registry went back in time"
            );
        }
        refused
    }

    fn remove_field(&mut self, field: &str) {
        self.skipped.forget(field);
        // Sorted by name: a search, not a scan of the whole registry on
        // every pushed change.
        if let Ok(at) = self
            .registry
            .binary_search_by(|f| f.name.as_str().cmp(field))
        {
            self.registry.remove(at);
        }
        self.held.retain(|f| f.name.as_str() != field);
        if self.held.is_empty() {
            self.hold_until = None;
        }
    }

    /// Ends a hold whose time is up, or whose entries are all back.
    fn end_hold_if_due(&mut self, now: Instant) -> Touched {
        let Some(until) = self.hold_until else {
            return Touched::Nothing;
        };
        if self.held.is_empty() {
            self.hold_until = None;
            tracing::info!("the registry is repopulated");
            return Touched::Nothing;
        }
        if now < until {
            return Touched::Nothing;
        }
        tracing::info!(
            dropped = self.held.len(),
            "instances that did not register again are dropped"
        );
        self.held.clear();
        self.hold_until = None;
        Touched::All
    }

    fn validate(&mut self, e: Entry) -> Option<Found> {
        let name = match parse_field(&e.field) {
            Ok(name) => name,
            Err(why) => {
                self.skipped.warn_once(e.field, e.url, &why);
                return None;
            }
        };
        if let Err(err) = check_url(&e.url) {
            self.skipped.warn_once(e.field, e.url, &err.to_string());
            return None;
        }
        Some(Found {
            name,
            route: Route::new(&e.url),
            meta: e.meta,
        })
    }
}
