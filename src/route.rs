//! [`Route`], the URL a pick returns: shared by the table, its index and
//! everything that hands routes out.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

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
