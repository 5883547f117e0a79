//! [`Finding`]: what a health check reports, in a form every driver and
//! tool shares, so that a tool names no backend library's types.

/// How serious a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Checked, and as it should be.
    Ok,
    /// Worth knowing, but gosd works as it is.
    Warning,
    /// Something is wrong: clients or providers will misbehave until it
    /// is fixed.
    Problem,
}

/// One result of a health check ([`Driver::diagnose`](crate::Driver::diagnose), or a tool's own):
/// what was checked, what was found, and, for anything wrong, how to fix it.
///
/// ```
/// use gosd_driver::{Finding, Severity};
/// let f = Finding::problem("key types", "`{gosd}:rev` is a hash", "delete it");
/// assert_eq!(f.severity, Severity::Problem);
/// assert_eq!(f.fix.as_deref(), Some("delete it"));
/// assert_eq!(Finding::ok("server version", "Redis 7.0.15").fix, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// What was checked, in a few words (e.g. `server version`).
    pub check: String,
    /// How serious it is.
    pub severity: Severity,
    /// What was found, naming the key, the value or the figure.
    pub detail: String,
    /// How to fix it; `None` when there is nothing to fix.
    pub fix: Option<String>,
}

impl Finding {
    /// A check that passed.
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, detail, None)
    }

    /// Something worth knowing that does not break gosd, and what to do about it.
    pub fn warning(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, Severity::Warning, detail, Some(fix.into()))
    }

    /// Something wrong, and how to fix it.
    pub fn problem(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, Severity::Problem, detail, Some(fix.into()))
    }

    fn new(
        check: impl Into<String>,
        severity: Severity,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            check: check.into(),
            severity,
            detail: detail.into(),
            fix,
        }
    }
}
