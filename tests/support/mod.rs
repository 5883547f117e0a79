//! Shared test helpers: a real redis-server, the example binaries as real
//! processes, and clients configured for fast tests.
#![allow(dead_code)] // each test binary uses a different part

// Each server module is also included alone (by the driver crates' tests
// and the benches), so each loads its own copy of `spawned.rs`.
pub mod cluster;
#[allow(clippy::duplicate_mod)]
pub mod etcd_server;
pub mod netns;
#[allow(clippy::duplicate_mod)]
pub mod redis_server;
pub mod sentinel;
#[allow(clippy::duplicate_mod)]
#[path = "spawned.rs"]
mod spawned;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub use etcd_server::EtcdServer;
pub use redis_server::{RedisServer, free_port};

/// How long a test waits for something that should take milliseconds
/// before calling it a failure (a hang guard, not a performance claim).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A config for `server`, tuned so failures show fast: few retries, no
/// cron (tests that need a refresh ask for it, or rely on lease expiry).
pub fn config(server: &RedisServer) -> gosd::Config {
    let mut c = gosd::Config::default();
    c.redis.addr = Some(server.addr());
    c.try_refresh_amount = 2;
    c.try_find_service_amount = 1;
    c.try_find_service_delay = Duration::ZERO;
    c.cron = None;
    c
}

/// [`config`] for an etcd member instead.
pub fn etcd_config(server: &EtcdServer) -> gosd::Config {
    let mut c = gosd::Config::default();
    c.driver = gosd::DriverKind::Etcd;
    c.etcd.endpoints = vec![server.endpoint()];
    c.try_refresh_amount = 2;
    c.try_find_service_amount = 1;
    c.try_find_service_delay = Duration::ZERO;
    c.cron = None;
    c
}

/// The environment that points an example at an etcd member.
pub fn etcd_env(server: &EtcdServer) -> Vec<(String, String)> {
    vec![
        ("GOSD_DRIVER".into(), "etcd".into()),
        ("GOSD_ETCD_ENDPOINTS".into(), server.endpoint()),
    ]
}

pub async fn client(server: &RedisServer) -> gosd::Client {
    gosd::Client::builder()
        .config(config(server))
        .build()
        .await
        .expect("client")
}

/// `HGETALL gosd`, sorted.
pub fn registry(server: &RedisServer) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("gosd")
        .query(&mut server.connection())
        .expect("HGETALL");
    all.sort();
    all
}

/// Polls `done` every 10 ms until it holds; panics after [`PATIENCE`].
/// For state in another process or in Redis, which offers no event to await.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// [`eventually`] for synchronous tests.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The directory of this build's binaries, e.g. `target/debug`: where
/// the test binary runs from (`deps/`), wherever `CARGO_TARGET_DIR` put it.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_owned()
}

/// The target directory (`$CARGO_TARGET_DIR`, by default `target/`), for
/// what a test leaves behind to look at.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map_or(profile.clone(), ToOwned::to_owned)
}

/// The path of an example binary. A whole `cargo test` builds the
/// examples; `cargo test --test <name>` does not, and would run whatever an
/// earlier build left.
pub fn example(name: &str) -> PathBuf {
    let path = profile_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --test <name>` does not build the examples; \
         run `cargo build --examples` first (with the same --features), or `cargo test`",
        path.display()
    );
    path
}

/// A running example process, its stdout delivered line by line.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
}

impl Proc {
    /// Runs an example against `server` with extra environment.
    pub fn spawn(name: &str, args: &[&str], server: &RedisServer, env: &[(&str, &str)]) -> Self {
        let addr = server.addr();
        let mut all = vec![("gosdRedisAddr", addr.as_str())];
        all.extend_from_slice(env);
        Self::spawn_with(name, args, &all)
    }

    /// Runs an example with exactly this gosd environment (plus logging).
    pub fn spawn_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(example(name));
        cmd.args(args)
            .env("RUST_LOG", "gosd=debug,info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::from_child(cmd.spawn().expect("spawn example"))
    }

    /// A started child with piped stdout.
    pub fn from_child(mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// A provider on a free port; returns it with its instance name once
    /// it has registered.
    pub fn provider(server: &RedisServer, n: &str, env: &[(&str, &str)]) -> (Self, String, String) {
        let addr = server.addr();
        let mut all = vec![("gosdRedisAddr", addr.as_str())];
        all.extend_from_slice(env);
        Self::provider_with(n, &all)
    }

    /// [`Proc::provider`] with exactly this gosd environment.
    pub fn provider_with(n: &str, env: &[(&str, &str)]) -> (Self, String, String) {
        let port = free_port();
        let mut p = Self::spawn_with("provider", &[&format!(":{port}"), n], env);
        let line = p
            .next_line()
            .expect("provider printed nothing; see its stderr above");
        let name = line
            .strip_prefix("registered as ")
            .unwrap_or_else(|| panic!("unexpected provider output {line:?}"))
            .to_owned();
        (p, name, format!("http://localhost:{port}"))
    }

    pub fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(PATIENCE).ok()
    }

    /// The lines printed so far that were not read yet; does not wait.
    pub fn ready_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub fn lines(self) -> Vec<String> {
        self.lines.iter().collect()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit (bounded by [`PATIENCE`]); returns the exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(started.elapsed() < PATIENCE, "process did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits, on the client's change notifications (no polling), until the
/// routes of `service` satisfy `done`; panics after [`PATIENCE`].
pub async fn routes_become(
    client: &gosd::Client,
    service: &str,
    what: &str,
    done: impl Fn(&[gosd::Route]) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut changes = client.changes();
    let wait = async {
        loop {
            changes.borrow_and_update();
            if done(&client.routes(service)) {
                return;
            }
            changes.changed().await.expect("client alive");
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
    started.elapsed()
}

/// A client whose heartbeat is quick, so a lease renewal is seen soon.
pub fn fast_config(server: &RedisServer) -> gosd::Config {
    let mut c = config(server);
    c.ttl = Duration::from_millis(600);
    c.heartbeat = Duration::from_millis(100);
    c
}

pub fn picks(c: &gosd::Client, service: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| c.next_route(service).expect("a route").to_string())
        .collect()
}

/// Waits on the client's change notifications until `n` picks of
/// `service` satisfy `done`.
pub async fn picks_become(
    c: &gosd::Client,
    service: &str,
    n: usize,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let mut changes = c.changes();
    let wait = async {
        loop {
            changes.borrow_and_update();
            if !c.routes(service).is_empty() && done(&picks(c, service, n)) {
                return;
            }
            changes.changed().await.expect("client alive");
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Whether picks hold these URLs, each at least once, and no other.
pub fn only(urls: &[&str]) -> impl Fn(&[String]) -> bool {
    let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    move |picked| picked.iter().all(|p| urls.contains(p)) && urls.iter().all(|u| picked.contains(u))
}

/// Redis's MONITOR feed, to count the commands clients send.
pub struct Monitor {
    feed: redis::Connection,
    marker: redis::Connection,
    marks: u64,
}

impl Monitor {
    pub fn start(server: &RedisServer) -> Self {
        let mut feed = server.connection();
        feed.send_packed_command(&redis::cmd("MONITOR").get_packed_command())
            .expect("MONITOR");
        feed.recv_response().expect("MONITOR answers OK");
        let mut m = Self {
            feed,
            marker: server.connection(),
            marks: 0,
        };
        m.client_commands(); // skip whatever came before
        m
    }

    /// The commands clients sent since the last call (not the ones scripts
    /// ran inside Redis), each as MONITOR prints it.
    pub fn client_commands(&mut self) -> Vec<String> {
        self.marks += 1;
        let mark = format!("gosd-monitor-mark-{}", self.marks);
        let _: String = redis::cmd("ECHO")
            .arg(&mark)
            .query(&mut self.marker)
            .expect("ECHO");
        let mut out = Vec::new();
        loop {
            let line = match self.feed.recv_response().expect("MONITOR feed") {
                redis::Value::SimpleString(s) => s,
                other => format!("{other:?}"),
            };
            if line.contains(&mark) {
                return out;
            }
            if !line.contains(" lua]") {
                out.push(line);
            }
        }
    }
}
