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
    port: u16,
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

    fn try_start_on(port: u16) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "notice", "--logfile", ""])
            .arg("--dir")
            .arg(dir.path());
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
            port,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form `gosdRedisAddr` takes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain connection for inspecting or tampering with the registry.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
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

    /// The server's process id, e.g. to `kill -STOP` it: a registry that
    /// hangs, its connections open and silent.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
