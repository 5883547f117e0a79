//! The one source of randomness gosd needs: not for secrets, only to keep a
//! fleet from acting in lock-step (retry jitter) and to make instance-name
//! collisions rare. No crate: the std hasher's per-process random keys,
//! fed a counter, are enough.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A random 64-bit number, different on every call.
pub(crate) fn random_u64() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A random number in [0, 1).
pub(crate) fn unit_random() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
