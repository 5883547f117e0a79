use gosd_driver::DriverError;

/// Everything gosd can fail with.
///
/// Messages name what was wrong (the variable, the value, the service, the
/// backend's address) and never contain a password.
///
/// `Debug` shows the same message as `Display`, as `anyhow` does: a `main`
/// returning `Result<(), gosd::Error>` prints `Error: invalid
/// gosdTryRefreshAmount="abc": …`, not the variant's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A global function was called before [`start`](crate::start),
    /// [`start_with`](crate::start_with) or [`connect`](crate::connect).
    #[error("gosd is not started: call gosd::start, gosd::start_with or gosd::connect first")]
    NotStarted,

    /// [`start`](crate::start), [`start_with`](crate::start_with) or
    /// [`connect`](crate::connect) was called a second time in this process.
    #[error("gosd is already started in this process")]
    AlreadyStarted,

    /// This client already registered an instance; a client registers one.
    #[error("this client is already registered as {0}")]
    AlreadyRegistered(String),

    /// An environment variable (or a [`Config`](crate::Config) field) has a
    /// value gosd cannot use.
    #[error("invalid {var}={value:?}: {reason}")]
    Config {
        /// The variable as it was spelled in the environment, e.g. `gosdTryRefreshAmount`.
        var: String,
        /// The value, with any password replaced by `***`.
        value: String,
        /// What is wrong with it, and what would be accepted.
        reason: String,
    },

    /// A URL to register or route to is not usable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A service name is not usable.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it, and what would be accepted.
        reason: String,
    },

    /// No instance of the service could be found, even after refreshing
    /// and retrying `TryFindServiceAmount` times.
    #[error("no route to service {0:?}: no registered instance was found")]
    NoRoute(String),

    /// The registry could not be reached, after every retry.
    #[error("could not reach {backend} after {attempts} attempt(s): {source}")]
    Unreachable {
        /// Where the registry is, e.g. `redis at 127.0.0.1:6379/0`.
        backend: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        #[source]
        source: DriverError,
    },

    /// A registry operation failed in a way retrying will not fix (the
    /// backend answered something unexpected).
    #[error(transparent)]
    Driver(#[from] DriverError),

    /// A client was built outside a Tokio runtime. gosd runs its refresher
    /// and heartbeat on the runtime it is built on; it needs the `rt`, `time`
    /// and (for signals) `io`/`signal` drivers, e.g. `#[tokio::main]`.
    #[error("gosd must be started inside a Tokio runtime (e.g. #[tokio::main])")]
    NoRuntime,

    /// Every generated instance name was already taken.
    #[error("no free instance name for service {service:?} after {attempts} attempts")]
    NamesExhausted {
        /// The service being registered.
        service: String,
        /// How many names were tried.
        attempts: u32,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every message already includes its source's: no "Caused by" list.
        std::fmt::Display::fmt(self, f)
    }
}

/// `Result<T, gosd::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn debug_is_the_message_a_main_returning_result_prints() {
        let e = crate::Config::from_vars([("gosdTryRefreshAmount", "abc")]).unwrap_err();
        assert_eq!(format!("{e:?}"), e.to_string());
        // As the README quotes it.
        assert_eq!(
            format!("{e:?}"),
            "invalid gosdTryRefreshAmount=\"abc\": expected a whole number, 1 or more"
        );
    }
}
