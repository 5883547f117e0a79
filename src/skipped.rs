//! Registry entries skipped as malformed: each is logged once, and only
//! those the registry still holds are remembered, so a long-lived client
//! that sees many bad entries come and go keeps no trace of the gone ones.

use std::collections::HashMap;

/// The malformed entries already warned about, by field.
#[derive(Default)]
pub(crate) struct Skipped {
    /// field → (the value warned about, the sweep that last saw it).
    by_field: HashMap<String, (String, u64)>,
    sweep: u64,
}

impl Skipped {
    /// Warns about `field → value` unless it was warned about with this
    /// value already; either way, it counts as seen in the current sweep.
    pub(crate) fn warn_once(&mut self, field: String, value: String, why: &str) {
        let sweep = self.sweep;
        if let Some((seen, at)) = self.by_field.get_mut(&field)
            && *seen == value
        {
            *at = sweep;
            return;
        }
        tracing::warn!(
            field = %crate::naming::shown(&field),
            value = %crate::naming::shown(&value),
            "skipping registry entry: {why}"
        );
        self.by_field.insert(field, (value, sweep));
    }

    /// Starts reading the registry whole: what this read does not warn
    /// about again is gone from it, and [`end_sweep`](Self::end_sweep)
    /// forgets it.
    pub(crate) fn begin_sweep(&mut self) {
        self.sweep += 1;
    }

    /// Forgets the entries the whole read since
    /// [`begin_sweep`](Self::begin_sweep) did not see.
    pub(crate) fn end_sweep(&mut self) {
        let sweep = self.sweep;
        self.by_field.retain(|_, (_, at)| *at == sweep);
    }

    /// The field left the registry (or was overwritten).
    pub(crate) fn forget(&mut self, field: &str) {
        self.by_field.remove(field);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_field.len()
    }
}
