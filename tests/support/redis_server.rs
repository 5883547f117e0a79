//! A real `redis-server` for tests: spawned on a free loopback port in a
//! temp dir, persistence off, killed on drop.
//!
//! Readiness is the server's own "Ready to accept connections" log line, so
//! no test sleeps waiting for it.
#![allow(dead_code)] // each test binary uses a different part

#[path = "spawned.rs"]
mod spawned;

use std::process::{Child, Command};
use std::time::Duration;

pub use spawned::free_port;
use spawned::{Log, spawn_until_ready};

pub struct RedisServer {
    child: Child,
    /// The address it listens on: loopback, or its network namespace's.
    host: String,
    port: u16,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts a server on `port` (e.g. to restart one on the same port).
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    /// Starts a server that speaks only TLS (`--port 0`), with the
    /// certificates in `dir` (see `certs.rs`: `server.pem`, `server.key`,
    /// `ca.pem`), asking clients for a certificate as `auth_clients` says
    /// (`no`, `optional` or `yes`).
    pub fn start_tls(dir: &std::path::Path, auth_clients: &str) -> Self {
        let file = |f: &str| dir.join(f).display().to_string();
        let args = [
            "--tls-cert-file".to_owned(),
            file("server.pem"),
            "--tls-key-file".to_owned(),
            file("server.key"),
            "--tls-ca-cert-file".to_owned(),
            file("ca.pem"),
            "--tls-auth-clients".to_owned(),
            auth_clients.to_owned(),
        ];
        Self::start_with(&args, true)
    }

    /// Starts a server on a free port with extra arguments (e.g. an ACL
    /// user); with `tls`, the port is its TLS port and plain text is off.
    pub fn start_with(args: &[String], tls: bool) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(free_port(), args, tls) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts a server on `port` with extra arguments: a restart of one
    /// that had them (the same `--dir` loads its dump).
    pub fn start_on_with(port: u16, args: &[String]) -> Self {
        Self::try_start(port, args, false)
            .unwrap_or_else(|| panic!("redis-server did not start again on port {port}"))
    }

    fn try_start_on(port: u16) -> Option<Self> {
        Self::try_start(port, &[], false)
    }

    /// Starts a server inside the network namespace `netns`, listening on
    /// `host` there (`ip netns exec`, which execs it: the child is the
    /// server itself).
    pub fn start_in_netns(netns: &str, host: &str) -> Self {
        // Its clients come from outside the namespace, not from loopback,
        // which protected mode refuses when there is no password.
        let open = ["--protected-mode".to_owned(), "no".to_owned()];
        Self::try_start_at(Some(netns), host, free_port(), &open, false)
            .unwrap_or_else(|| panic!("redis-server did not start in network namespace {netns}"))
    }

    fn try_start(port: u16, extra: &[String], tls: bool) -> Option<Self> {
        Self::try_start_at(None, "127.0.0.1", port, extra, tls)
    }

    fn try_start_at(
        netns: Option<&str>,
        host: &str,
        port: u16,
        extra: &[String],
        tls: bool,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let port_arg = port.to_string();
        match tls {
            true => cmd.args(["--port", "0", "--tls-port", &port_arg]),
            false => cmd.args(["--port", &port_arg]),
        };
        cmd.args(["--bind", host])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "notice", "--logfile", ""])
            .arg("--dir")
            .arg(dir.path())
            .args(extra);
        if tls {
            cmd.arg("--unixsocket").arg(dir.path().join("redis.sock"));
        }
        let child = spawn_until_ready(
            cmd,
            Log::Stdout,
            &["Ready to accept connections"],
            Duration::from_secs(15),
            "redis-server is not installed, and the integration tests need a real one.\n\
             Install it with `apt-get install -y redis-server` (Debian/Ubuntu) or \
             `brew install redis` (macOS), or run `bash .ci/run`, which installs it.",
        )?;
        Some(Self {
            child,
            host: host.to_owned(),
            port,
            tls,
            _dir: dir,
        })
    }

    /// The server's process id, to freeze it (`kill -STOP`) and so on.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>` (or its namespace's address), the form
    /// `gosdRedisAddr` takes.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://localhost:<port>/0` for
    /// a TLS server (its certificate names `localhost`).
    pub fn url(&self) -> String {
        match self.tls {
            true => format!("rediss://localhost:{}/0", self.port),
            false => format!("redis://{}:{}/0", self.host, self.port),
        }
    }

    /// A connection for inspecting or tampering with the registry, as the
    /// default user; through a Unix socket for a TLS server.
    pub fn connection(&self) -> redis::Connection {
        let url = match self.tls {
            true => format!(
                "redis+unix://{}",
                self._dir.path().join("redis.sock").display()
            ),
            false => self.url(),
        };
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    /// Writes `field → value` into the `gosd` hash with no lease, as Go
    /// gosd (or a person with redis-cli) would.
    pub fn write_raw(&self, field: &str, value: &str) {
        let _: () = redis::cmd("HSET")
            .arg("gosd")
            .arg(field)
            .arg(value)
            .query(&mut self.connection())
            .expect("HSET");
    }

    /// Ends the leases of `fields` (in the default `gosd` registry) as if
    /// their instances had crashed long ago: the next gosd script reaps
    /// them all at once.
    pub fn end_leases(&self, fields: &[&str]) {
        let mut expire = redis::cmd("ZADD");
        expire.arg("{gosd}:leases").arg("XX");
        for field in fields {
            expire.arg(1).arg(*field);
        }
        let _: () = expire.query(&mut self.connection()).expect("ZADD");
    }

    /// Stops the server at once (its data is lost: persistence is off).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
