//! [`RedisOptions`]: where the Redis is, and which hash holds the registry.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use gosd_driver::{DriverError, redact_url};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
};

use crate::cluster::{self, Nodes};
use crate::sentinel::{self, Sentinels};
use crate::tls::{self, TlsFiles};

/// Where the registry lives: the Redis server (a URL, or an address with a
/// password and a database number) and the hash key. Every setting is
/// checked when it is set, so a [`RedisDriver`](crate::RedisDriver) built
/// from options never fails on them later; nothing is connected here.
///
/// An invalid setting is [`DriverError::InvalidConfig`] naming it (`url`,
/// `addr`, `db` or `key`), its value with any password shown as `***`, and
/// what would be accepted.
///
/// The password never shows in `Debug`.
///
/// ```
/// use gosd_redis::{RedisDriver, RedisOptions};
/// use gosd_driver::{Driver, DriverError};
///
/// // A URL: redis://[user:pass@]host:port/db
/// let options: RedisOptions = "redis://:secret@127.0.0.1:6379/2".parse()?;
/// assert!(!format!("{options:?}").contains("secret"));
/// let driver = RedisDriver::new(options);
/// assert_eq!(driver.backend(), "redis at 127.0.0.1:6379/2");
///
/// // Or an address, a password and a database, and another hash key.
/// let options = RedisOptions::new()
///     .addr("10.0.0.5:6380")?
///     .password("secret")
///     .db(1)?
///     .key("routes")?;
/// let driver = RedisDriver::new(options);
/// assert_eq!(driver.backend(), "redis at 10.0.0.5:6380/1");
/// assert_eq!(driver.key(), "routes");
///
/// // TLS: rediss://, with a private CA (and a client certificate for
/// // mutual TLS); the files are read and checked here, before any server
/// // is asked.
/// let options = RedisOptions::from_url("rediss://gosd:secret@redis.internal:6380")?;
/// let err = options.tls_ca("/no/such/ca.pem").unwrap_err();
/// assert!(matches!(&err, DriverError::InvalidConfig { setting, .. } if setting == "tls_ca"));
/// assert!(err.to_string().contains("/no/such/ca.pem") && !err.to_string().contains("secret"));
/// # Ok::<_, DriverError>(())
/// ```
#[derive(Clone)]
pub struct RedisOptions {
    addr: ConnectionAddr,
    settings: RedisConnectionInfo,
    tls: TlsFiles,
    pub(crate) sentinel: Option<Sentinels>,
    pub(crate) cluster: Option<Nodes>,
    pub(crate) key: String,
}

impl Default for RedisOptions {
    /// `localhost:6379`, database 0, no password, hash key `gosd`: Go
    /// gosd's defaults.
    fn default() -> Self {
        Self {
            addr: ConnectionAddr::Tcp("localhost".to_owned(), 6379),
            settings: RedisConnectionInfo::default(),
            tls: TlsFiles::default(),
            sentinel: None,
            cluster: None,
            key: "gosd".to_owned(),
        }
    }
}

impl RedisOptions {
    /// The defaults: `localhost:6379`, database 0, no password, hash key
    /// `gosd` (Go gosd's).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, with the server a URL names: see [`url`](Self::url).
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `url`, as [`url`](Self::url).
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        Self::new().url(url)
    }

    /// The server, its credentials and its database from a URL:
    /// `redis://[user:pass@]host:port/db`, or `rediss://…` for TLS (also
    /// `valkey://`/`valkeys://`, and `unix:///path?db=N&pass=...` or
    /// `redis+unix://` for a socket). A user name is a Redis 6+ ACL user.
    /// It replaces whatever [`addr`](Self::addr), [`password`](Self::password)
    /// and [`db`](Self::db) set before.
    ///
    /// TLS checks the server's certificate against the system's roots, or
    /// the CA [`tls_ca`](Self::tls_ca) sets, and its name against the host.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `url` when it is not a URL, its
    /// scheme is not one of those, it has no host, it asks to skip
    /// certificate checks (`#insecure`), it is not `rediss://` while TLS
    /// files are set, or the Redis client cannot use it.
    pub fn url(mut self, url: &str) -> Result<Self, DriverError> {
        let url = url.trim();
        let bad = |reason: String| invalid("url", redact_url(url), reason);
        check_url(url).map_err(bad)?;
        let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        if !self.tls.is_empty() && !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            return Err(bad(TLS_FILES_NEED_REDISS.into()));
        }
        if self.sentinel.is_some() && matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            return Err(bad(NO_TLS_WITH_SENTINEL.into()));
        }
        if self.cluster.is_some() {
            check_cluster_settings(info.addr(), info.redis_settings().db()).map_err(bad)?;
        }
        self.addr = info.addr().clone();
        self.settings = info.redis_settings().clone();
        Ok(self)
    }

    /// The server's address: `host:port` (an IPv6 host in brackets,
    /// `[::1]:6379`). Keeps the password and database already set.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `addr` when it is not `host:port`
    /// with a non-empty host and a port from 1 to 65535 (a URL belongs in
    /// [`url`](Self::url)).
    pub fn addr(mut self, addr: &str) -> Result<Self, DriverError> {
        let bad = |reason: String| invalid("addr", redact_url(addr), reason);
        let (host, port) = check_addr(addr).map_err(bad)?;
        if !self.tls.is_empty() {
            return Err(bad(TLS_FILES_NEED_REDISS.into()));
        }
        self.addr = ConnectionAddr::Tcp(host, port);
        Ok(self)
    }

    /// Trusts the CA certificates in the PEM file at `path` for TLS, instead
    /// of the system's roots: for a server whose certificate a private CA
    /// signed. The server must be a `rediss://` [`url`](Self::url), set
    /// before.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `tls_ca` when the file cannot be
    /// read, holds no PEM certificate, or the server is not `rediss://`.
    pub fn tls_ca(mut self, path: impl AsRef<Path>) -> Result<Self, DriverError> {
        let path = path.as_ref();
        let bad = |reason: String| invalid("tls_ca", path.display().to_string(), reason);
        self.need_tls().map_err(bad)?;
        self.tls.set_ca(path).map_err(bad)?;
        Ok(self)
    }

    /// Presents the certificate (chain) in the PEM file `cert`, with the
    /// private key in the PEM file `key`, to a server that asks for one
    /// (mutual TLS, `tls-auth-clients`). The server must be a `rediss://`
    /// [`url`](Self::url), set before.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `tls_cert` or `tls_key` when that
    /// file cannot be read or holds no PEM certificate or key, when the key
    /// is not the certificate's, or (`tls_cert`) when the server is not
    /// `rediss://`.
    pub fn tls_client_cert(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, DriverError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let shown = |setting: &str| match setting {
            "tls_key" => key.display().to_string(),
            _ => cert.display().to_string(),
        };
        self.need_tls()
            .map_err(|reason| invalid("tls_cert", shown("tls_cert"), reason))?;
        self.tls
            .set_client(cert, key)
            .map_err(|(setting, reason)| invalid(setting, shown(setting), reason))?;
        Ok(self)
    }

    /// Finds the primary through Redis Sentinel: `list` is the sentinels'
    /// `host:port,host:port,…`, `master` the name their `sentinel monitor`
    /// gives it. The primary's credentials and database stay those of
    /// [`password`](Self::password), [`db`](Self::db) or a
    /// [`url`](Self::url) (whose host and port are then not used). After a
    /// failover the driver asks the sentinels again and moves every
    /// connection to the new primary.
    ///
    /// ```
    /// use gosd_redis::{RedisDriver, RedisOptions};
    /// let options = RedisOptions::new()
    ///     .sentinels("10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379", "mymaster")?
    ///     .sentinel_password("sentinel-secret")?;
    /// assert!(!format!("{options:?}").contains("sentinel-secret"));
    /// let driver = RedisDriver::new(options);
    /// assert_eq!(
    ///     gosd_driver::Driver::backend(&driver),
    ///     "redis primary mymaster via sentinels 10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379, db 0"
    /// );
    /// # Ok::<_, gosd_driver::DriverError>(())
    /// ```
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `sentinels` when the list is empty
    /// or an entry is not `host:port`, or the URL is `rediss://` (TLS with
    /// Sentinel is not supported yet); for `master` when the name is empty
    /// or has spaces.
    pub fn sentinels(mut self, list: &str, master: &str) -> Result<Self, DriverError> {
        let addrs = sentinel::parse_addrs(list)
            .map_err(|reason| invalid("sentinels", redact_url(list), reason))?;
        if self.is_tls() {
            let reason = NO_TLS_WITH_SENTINEL.to_owned();
            return Err(invalid("sentinels", redact_url(list), reason));
        }
        if self.cluster.is_some() {
            return Err(invalid("sentinels", redact_url(list), NOT_BOTH.into()));
        }
        let master = master.trim();
        if master.is_empty() || master.contains(char::is_whitespace) {
            let reason = "expected the primary's name as the sentinels know it (`sentinel monitor <name> …`), e.g. mymaster".to_owned();
            return Err(invalid("master", master.to_owned(), reason));
        }
        self.sentinel = Some(Sentinels {
            addrs,
            master: master.to_owned(),
            password: None,
        });
        Ok(self)
    }

    /// Talks to a Redis Cluster (Redis 7 or newer): `list` is
    /// `host:port,host:port,…` of some of its nodes (any one that answers
    /// will do: the driver reads the rest from it). The credentials and
    /// TLS are those of [`password`](Self::password) or a
    /// [`url`](Self::url) (`rediss://` for TLS), whose host and port are
    /// then not used; a cluster has only database 0.
    ///
    /// ```
    /// use gosd_redis::{RedisDriver, RedisOptions};
    /// let options = RedisOptions::from_url("redis://gosd:secret@unused:6379")?
    ///     .cluster("10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000")?;
    /// assert!(!format!("{options:?}").contains("secret"));
    /// let driver = RedisDriver::new(options);
    /// assert_eq!(
    ///     gosd_driver::Driver::backend(&driver),
    ///     "redis cluster via 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"
    /// );
    /// # Ok::<_, gosd_driver::DriverError>(())
    /// ```
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `cluster` when the list is empty
    /// or an entry is not `host:port`, sentinels are set too, the database
    /// is not 0, or the URL is a Unix socket.
    pub fn cluster(mut self, list: &str) -> Result<Self, DriverError> {
        let bad = |reason: String| invalid("cluster", redact_url(list), reason);
        let addrs = cluster::parse_addrs(list).map_err(bad)?;
        if self.sentinel.is_some() {
            return Err(bad(NOT_BOTH.into()));
        }
        check_cluster_settings(&self.addr, self.settings.db()).map_err(bad)?;
        self.cluster = Some(Nodes { addrs });
        Ok(self)
    }

    /// The password the sentinels themselves want (`requirepass` in their
    /// config), if it differs from none. Set [`sentinels`](Self::sentinels)
    /// first.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `sentinel_password` when no
    /// sentinels are set.
    pub fn sentinel_password(mut self, password: &str) -> Result<Self, DriverError> {
        match &mut self.sentinel {
            Some(s) => s.password = Some(password.to_owned()),
            None => {
                let reason = "set the sentinels (GOSD_REDIS_SENTINELS) too".to_owned();
                return Err(invalid("sentinel_password", "***".into(), reason));
            }
        }
        Ok(self)
    }

    fn need_tls(&self) -> Result<(), String> {
        match self.addr {
            ConnectionAddr::TcpTls { .. } => Ok(()),
            _ => Err(format!(
                "the server is {}, not TLS: TLS files need a rediss:// URL (GOSD_REDIS_URL)",
                self.addr
            )),
        }
    }

    /// Whether connections speak TLS (`rediss://`).
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.addr, ConnectionAddr::TcpTls { .. })
    }

    /// The password (Redis `AUTH`). Keeps the address and database.
    pub fn password(mut self, password: &str) -> Self {
        self.settings = self.settings.set_password(password);
        self
    }

    /// The database number (Redis `SELECT`), 0 by default. Keeps the
    /// address and password.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `db` when it is negative.
    pub fn db(mut self, db: i64) -> Result<Self, DriverError> {
        if db < 0 {
            let reason = "expected a database number, 0 or more".to_owned();
            return Err(invalid("db", db.to_string(), reason));
        }
        if self.cluster.is_some() && db != 0 {
            return Err(invalid("db", db.to_string(), CLUSTER_DB_0.into()));
        }
        self.settings = self.settings.set_db(db);
        Ok(self)
    }

    /// The hash that holds the routes: `gosd` by default, as in Go gosd.
    /// The driver's other keys are `{<key>}:leases`, `{<key>}:rev` and so
    /// on, hash-tagged with it so that they share its Redis Cluster slot.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `key` when it is empty or
    /// contains `{` or `}` (a brace would move the other keys to another
    /// slot).
    pub fn key(mut self, key: &str) -> Result<Self, DriverError> {
        check_key(key).map_err(|reason| invalid("key", key.to_owned(), reason))?;
        self.key = key.to_owned();
        Ok(self)
    }

    /// Where the server is, for errors and logs, without credentials:
    /// `redis at host:port/db`.
    pub(crate) fn backend(&self) -> String {
        if let Some(nodes) = &self.cluster {
            return format!("redis cluster via {}", nodes.shown());
        }
        match &self.sentinel {
            Some(s) => format!(
                "redis primary {} via sentinels {}, db {}",
                s.master,
                s.shown_addrs(),
                self.settings.db()
            ),
            None => format!("redis at {}/{}", self.addr, self.settings.db()),
        }
    }

    /// The primary's credentials and database.
    pub(crate) fn settings(&self) -> &RedisConnectionInfo {
        &self.settings
    }

    /// The ACL user, if one is set (else Redis's `default`).
    pub(crate) fn username(&self) -> Option<&str> {
        self.settings.username()
    }

    /// What redis-rs connects with.
    pub(crate) fn connection_info(&self) -> RedisResult<ConnectionInfo> {
        let info = self.addr.clone().into_connection_info()?;
        Ok(info.set_redis_settings(self.settings.clone()))
    }

    /// A cluster client for these options (with [`cluster`](Self::cluster)
    /// set): `push` as in [`Nodes::client`]. Opening one connects nothing.
    pub(crate) fn cluster_client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> RedisResult<redis::cluster::ClusterClient> {
        let nodes = self.cluster.as_ref().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no cluster nodes"))
        })?;
        let certs = (!self.tls.is_empty()).then(|| self.tls.certificates());
        nodes.client(&self.settings, self.is_tls(), certs, crate::TIMEOUT, push)
    }

    /// A redis-rs client for these options: opening one connects nothing.
    pub(crate) fn client(&self) -> RedisResult<Client> {
        let info = self.connection_info()?;
        if !self.is_tls() {
            return Client::open(info);
        }
        tls::install_provider();
        match self.tls.is_empty() {
            true => Client::open(info),
            false => Client::build_with_tls(info, self.tls.certificates()),
        }
    }
}

impl FromStr for RedisOptions {
    type Err = DriverError;

    /// [`RedisOptions::from_url`].
    fn from_str(url: &str) -> Result<Self, DriverError> {
        Self::from_url(url)
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        f.debug_struct("RedisOptions")
            .field("addr", &self.addr.to_string())
            .field("db", &settings.db())
            .field("username", &settings.username())
            .field("password", &settings.password().map(|_| "***"))
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .field("key", &self.key)
            .finish()
    }
}

const TLS_FILES_NEED_REDISS: &str =
    "TLS files are set (GOSD_REDIS_CA, GOSD_REDIS_CERT): the server must be a rediss:// URL";

const NO_TLS_WITH_SENTINEL: &str =
    "TLS (rediss://) with Sentinel is not supported yet; use redis:// with GOSD_REDIS_SENTINELS";

const NOT_BOTH: &str = "a Redis Cluster (GOSD_REDIS_CLUSTER) and Redis Sentinel \
    (GOSD_REDIS_SENTINELS) exclude each other: set one";

const CLUSTER_DB_0: &str = "a Redis Cluster has only database 0 (GOSD_REDIS_CLUSTER is set)";

/// What a cluster cannot have: a database other than 0, a Unix socket.
fn check_cluster_settings(addr: &ConnectionAddr, db: i64) -> Result<(), String> {
    if db != 0 {
        return Err(CLUSTER_DB_0.into());
    }
    if matches!(addr, ConnectionAddr::Unix(_)) {
        return Err(
            "a Redis Cluster is reached over TCP: the URL must not be a Unix socket".into(),
        );
    }
    Ok(())
}

fn invalid(setting: &str, value: String, reason: String) -> DriverError {
    DriverError::InvalidConfig {
        setting: setting.to_owned(),
        value,
        reason,
    }
}

/// `redis[s]://[user:pass@]host:port/db`, or a socket.
fn check_url(v: &str) -> Result<(), String> {
    let url = url::Url::parse(v)
        .map_err(|e| format!("not a URL ({e}); expected redis://[user:pass@]host:port/db"))?;
    let tcp = match url.scheme() {
        "redis" | "valkey" => true,
        "rediss" | "valkeys" => {
            if url.fragment().is_some() {
                return Err("a URL fragment (`#insecure`) would skip the server's \
                    certificate checks, which gosd does not do; trust its CA with GOSD_REDIS_CA"
                    .into());
            }
            true
        }
        "redis+unix" | "unix" => false,
        other => {
            return Err(format!(
                "unsupported scheme `{other}`; expected redis:// or rediss://"
            ));
        }
    };
    if tcp && url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// `host:port`, with a non-empty host and a port from 1 to 65535.
pub(crate) fn check_addr(v: &str) -> Result<(String, u16), String> {
    let v = v.trim();
    let (host, port) = v
        .rsplit_once(':')
        .ok_or("expected host:port, e.g. localhost:6379")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the host is empty; expected host:port, e.g. localhost:6379".into());
    }
    if host.contains(|c: char| c.is_whitespace() || "/@?#".contains(c)) {
        return Err(
            "expected host:port, e.g. localhost:6379 (for a URL, use GOSD_REDIS_URL)".into(),
        );
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("the port must be a number from 1 to 65535")?;
    Ok((host.to_owned(), port))
}

fn check_key(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("the key must not be empty".into());
    }
    if v.contains(['{', '}']) {
        return Err(
            "the key must not contain `{` or `}`: gosd hash-tags its other keys with it".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(e: DriverError) -> (String, String, String) {
        match e {
            DriverError::InvalidConfig {
                setting,
                value,
                reason,
            } => (setting, value, reason),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_setting_is_named_and_never_shows_a_password() {
        let o = RedisOptions::new;
        for (err, name) in [
            (o().addr("nohostport").unwrap_err(), "addr"),
            (o().addr(":6379").unwrap_err(), "addr"),
            (o().addr("host:0").unwrap_err(), "addr"),
            (o().addr("host:99999").unwrap_err(), "addr"),
            (o().addr("redis://:hunter2@h:6379").unwrap_err(), "addr"),
            (o().url("http://x").unwrap_err(), "url"),
            (
                o().url("rediss://:hunter2@h:6379/#insecure").unwrap_err(),
                "url",
            ),
            (o().url("ftp://:hunter2@h:6379").unwrap_err(), "url"),
            (o().tls_ca("/etc/hostname").unwrap_err(), "tls_ca"),
            (o().url("redis:/:hunter2@h:6379").unwrap_err(), "url"),
            (o().url("redis://h:6379/notadb").unwrap_err(), "url"),
            (o().db(-1).unwrap_err(), "db"),
            (o().key("").unwrap_err(), "key"),
            (o().key("{x}").unwrap_err(), "key"),
        ] {
            let shown = err.to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("answered unexpectedly"), "{shown}");
            assert_eq!(setting(err).0, name, "{shown}");
        }
        let (_, _, reason) = setting(o().tls_ca("/etc/hostname").unwrap_err());
        assert!(reason.contains("rediss://"), "{reason}");
        let tls = o().url("rediss://:hunter2@h:6379").unwrap();
        assert!(tls.is_tls());
        let (_, value, reason) = setting(tls.clone().tls_ca("/etc/hostname").unwrap_err());
        assert_eq!(value, "/etc/hostname");
        assert!(reason.contains("no certificate"), "{reason}");
        let (name, _, reason) = setting(
            tls.tls_client_cert("/no/cert.pem", "/no/key.pem")
                .unwrap_err(),
        );
        assert_eq!(name, "tls_cert");
        assert!(reason.contains("cannot read /no/cert.pem"), "{reason}");
    }

    #[test]
    fn settings_combine() {
        let o = RedisOptions::new()
            .password("hunter2")
            .db(3)
            .unwrap()
            .addr("[::1]:7000")
            .unwrap();
        assert_eq!(o.backend(), "redis at ::1:7000/3");
        assert_eq!(o.settings.password(), Some("hunter2"));
        assert!(!format!("{o:?}").contains("hunter2"), "{o:?}");
        // A URL replaces them all.
        let o = o.url("redis://u:pw@h:6379/5").unwrap();
        assert_eq!(o.backend(), "redis at h:6379/5");
        assert_eq!(o.settings.username(), Some("u"));
        assert_eq!(RedisOptions::new().backend(), "redis at localhost:6379/0");
        assert_eq!(RedisOptions::new().key, "gosd");
    }
}
