//! Service name → routes, looked up on every pick.
//!
//! A route table is rebuilt whole and never modified, so its index can be
//! the simplest fast hash table: open addressing with linear probing, at
//! most half full, each slot holding its name's full hash and everything a
//! pick needs. A lookup is one hash, usually one slot read, and one name
//! compare done inline. `std`'s `HashMap` read a control-byte group, then
//! the bucket, then the key through its pointer, and called `memcmp`: a
//! chain of dependent reads that was the largest part of a pick.
//!
//! The hash is FxHash (rustc's) rather than SipHash: the names are our own
//! registry's, not untrusted input, and SipHash was half of a pick's
//! instructions when we used it.

use std::sync::Arc;

use crate::route::Route;

/// A service's rotation number, the same in every table version of one
/// client: it finds a thread's cursor for the service (`rotation`) without
/// hashing its name again. Numbers are reused after a service goes, so
/// they stay few.
pub(crate) type RotationId = u32;

/// The routes of one service.
#[derive(Clone)]
pub(crate) struct ServiceRoutes {
    /// Every route of the service, pickable or not; never empty. Shared,
    /// so a table that changes one service copies the others by reference.
    pub(crate) routes: Arc<[Route]>,
    /// The pick sequence: indices into `routes`, of the pickable ones,
    /// each as often as its weight's share (`weights`); never empty. A
    /// pick takes the next one.
    pub(crate) order: Arc<[u32]>,
    /// Each route's status and metadata, as `routes`: what a
    /// [`Selector`](crate::Selector) matches.
    pub(crate) metas: Arc<[gosd_driver::Meta]>,
    /// Kept by every table version, so a refresh does not restart the
    /// rotation (two providers keep strictly alternating).
    pub(crate) rotation: RotationId,
}

struct Slot {
    hash: u64,
    name: Arc<str>,
    service: ServiceRoutes,
}

/// An immutable map from service name to [`ServiceRoutes`].
pub(crate) struct ServiceIndex {
    /// A power of two long, at most half full: a probe always ends.
    slots: Box<[Option<Slot>]>,
    mask: usize,
    /// Which bits of a hash pick the first slot: the top ones, which the
    /// hash's last multiply mixes from every byte (the low ones, and even
    /// the middle ones, barely differ between `svc-41` and `svc-42`).
    shift: u32,
}

impl Default for ServiceIndex {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl ServiceIndex {
    /// An index of `services`; on a repeated name the last one wins.
    pub(crate) fn new(services: Vec<(Arc<str>, ServiceRoutes)>) -> Self {
        let capacity = (services.len() * 2).next_power_of_two().max(2);
        let mut index = Self {
            slots: (0..capacity).map(|_| None).collect(),
            mask: capacity - 1,
            shift: 64 - capacity.trailing_zeros(),
        };
        for (name, service) in services {
            let hash = hash_name(&name);
            let i = index.probe(hash, &name);
            index.slots[i] = Some(Slot {
                hash,
                name,
                service,
            });
        }
        index
    }

    /// The slot holding `name`, or the empty one where it would go.
    #[inline(always)]
    fn probe(&self, hash: u64, name: &str) -> usize {
        let mut i = (hash >> self.shift) as usize;
        loop {
            match &self.slots[i] {
                Some(s) if s.hash != hash || !same_name(&s.name, name) => {
                    i = (i + 1) & self.mask;
                }
                _ => return i,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self, name: &str) -> Option<&ServiceRoutes> {
        let slot = self.slots[self.probe(hash_name(name), name)].as_ref()?;
        Some(&slot.service)
    }

    /// Every service and its routes, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &ServiceRoutes)> {
        self.slots.iter().flatten().map(|s| (&s.name, &s.service))
    }
}

/// Name equality, inline: word compares instead of a call to `memcmp`,
/// which cost more than the compare for names this short.
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a == b;
    }
    let last = a.len() - 8;
    let mut at = 0;
    while at < last {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += 8;
    }
    word_at(a, last) == word_at(b, last)
}

/// The hash of a service name for the index.
#[inline(always)]
fn hash_name(name: &str) -> u64 {
    fx_bytes(0, name.as_bytes())
}

/// Folds `bytes` into an FxHash state a word at a time; the tail is one
/// more word, read so that it ends at the last byte (overlapping the words
/// before it): no byte loop and no call to `memcpy`. Only strings shorter
/// than a word go byte by byte.
#[inline(always)]
pub(crate) fn fx_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        h = fx_word(h, word_at(word, 0));
    }
    if words.remainder().is_empty() {
        return h;
    }
    let tail = if bytes.len() >= 8 {
        word_at(bytes, bytes.len() - 8)
    } else {
        bytes.iter().fold(0u64, |w, b| (w << 8) | u64::from(*b))
    };
    fx_word(h, tail)
}

/// FxHash's step.
#[inline(always)]
pub(crate) fn fx_word(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// The 8 bytes of `bytes` from `at`, as a word.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(url: &str) -> ServiceRoutes {
        ServiceRoutes {
            routes: vec![Route::new(url)].into(),
            order: vec![0].into(),
            metas: vec![Default::default()].into(),
            rotation: 0,
        }
    }

    fn url_of(index: &ServiceIndex, name: &str) -> Option<String> {
        index.get(name).map(|s| s.routes[0].to_string())
    }

    #[test]
    fn finds_every_name_and_nothing_else() {
        // Names of every length around the word size, sharing prefixes.
        let names: Vec<String> = (0..300)
            .map(|i| format!("{}{i}", "s".repeat(i % 20)))
            .collect();
        let index = ServiceIndex::new(
            names
                .iter()
                .map(|n| (Arc::from(n.as_str()), service(&format!("http://{n}"))))
                .collect(),
        );
        assert_eq!(index.iter().count(), names.len());
        for n in &names {
            assert_eq!(url_of(&index, n), Some(format!("http://{n}")), "{n}");
            assert_eq!(url_of(&index, &format!("{n}x")), None);
            assert_eq!(url_of(&index, &format!("x{n}")), None);
        }
        assert_eq!(url_of(&index, ""), None);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = ServiceIndex::default();
        assert_eq!(index.iter().count(), 0);
        assert_eq!(url_of(&index, "a"), None);
        assert_eq!(url_of(&index, ""), None);
    }

    #[test]
    fn a_repeated_name_keeps_the_last() {
        let index = ServiceIndex::new(vec![
            ("a".into(), service("http://1")),
            ("a".into(), service("http://2")),
        ]);
        assert_eq!(index.iter().count(), 1);
        assert_eq!(url_of(&index, "a").as_deref(), Some("http://2"));
    }

    /// Slots read to find `name`.
    fn probes(index: &ServiceIndex, name: &str) -> usize {
        let mut i = (hash_name(name) >> index.shift) as usize;
        let mut n = 1;
        while index.slots[i].as_ref().is_none_or(|s| &*s.name != name) {
            i = (i + 1) & index.mask;
            n += 1;
        }
        n
    }

    #[test]
    fn names_that_differ_in_their_last_bytes_spread_out() {
        // Deterministic: the hash has no seed. With the first slot taken
        // from the hash's middle bits, `service0..99` took 8.3 reads.
        for names in [
            (0..100).map(|i| format!("service{i}")).collect::<Vec<_>>(),
            (0..1000).map(|i| format!("svc-{i}")).collect(),
            (0..300)
                .map(|i| format!("payments-v{i}.prod.svc"))
                .collect(),
            (0..64).map(|i| format!("{i:x}")).collect(),
        ] {
            let index = ServiceIndex::new(
                names
                    .iter()
                    .map(|n| (Arc::from(n.as_str()), service("http://x")))
                    .collect(),
            );
            let total: usize = names.iter().map(|n| probes(&index, n)).sum();
            let mean = total as f64 / names.len() as f64;
            assert!(mean < 2.0, "{} … : {mean} reads per lookup", names[0]);
        }
    }

    #[test]
    fn names_compare_by_every_byte() {
        for (a, b) in [
            ("provider", "providex"),
            ("xrovider", "provider"),
            ("provider-a", "provider-b"),
            ("provider-a-long-name", "provider-b-long-name"),
            ("é", "è"),
        ] {
            assert!(!same_name(a, b), "{a} {b}");
            assert!(same_name(a, a));
        }
        assert!(!same_name("ab", "abc"));
    }
}
