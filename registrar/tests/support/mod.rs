//! The registrar's test harness: a real Podman engine, a real
//! redis-server (the root crate's harness), the registrar binary as a
//! real process, and plain HTTP to the containers.
#![allow(dead_code)] // each test uses a different part

pub mod podman;
#[path = "../../../tests/support/redis_server.rs"]
pub mod redis_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use podman::Engine;
pub use redis_server::RedisServer;

/// How long a test waits for something that should take milliseconds
/// before calling it a failure (a hang guard, not a performance claim).
/// Shorter than the 60 s TTL the event tests use, so that only the
/// registrar's reaction to an event can explain an entry leaving.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The lease length for tests in which only an event may remove an entry.
pub const LONG_TTL: &str = "60s";

/// `HGETALL gosd`, sorted: the registry as Redis holds it.
pub fn registry(redis: &RedisServer) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("gosd")
        .query(&mut redis.connection())
        .expect("HGETALL");
    all.sort();
    all
}

/// `HGET {gosd}:meta <field>`: the entry's stored status and metadata
/// (`up,zone=z1`), `""` for one that is up with none.
pub fn stored_meta(redis: &RedisServer, field: &str) -> String {
    let stored: Option<String> = redis::cmd("HGET")
        .arg("{gosd}:meta")
        .arg(field)
        .query(&mut redis.connection())
        .expect("HGET");
    stored.unwrap_or_default()
}

/// Waits until `field`'s stored metadata is `want`.
pub async fn stored_meta_becomes(redis: &RedisServer, field: &str, want: &str) {
    let started = Instant::now();
    loop {
        let now = stored_meta(redis, field);
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{field}'s metadata is {now:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits on `consumer`'s table changes until `done` holds.
pub async fn consumer_sees(
    consumer: &gosd::Client,
    what: &str,
    mut done: impl FnMut(&gosd::Client) -> bool,
) {
    let mut changes = consumer.changes();
    let wait = async {
        loop {
            changes.borrow_and_update();
            if done(consumer) {
                return;
            }
            changes.changed().await.expect("the consumer is alive");
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Waits until the registry is exactly `want` (sorted by field).
pub async fn registry_becomes(redis: &RedisServer, want: &[(String, String)]) -> Duration {
    let mut want = want.to_vec();
    want.sort();
    let started = Instant::now();
    loop {
        let now = registry(redis);
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the registry is {now:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The entry the registrar writes for container `id` serving on `ip`.
pub fn entry(service: &str, id: &str, ip: &str) -> (String, String) {
    (
        format!("{service}-{}", Engine::short(id)),
        format!("http://{ip}:{}", podman::PORT),
    )
}

/// A plain HTTP/1.0 GET of `url` (`http://host:port/path`): the body, or
/// `None` when it cannot be fetched.
pub fn http_get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(hostport).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    if !reply.starts_with("HTTP/1.") || !reply.contains(" 200 ") {
        return None;
    }
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// gosd-registrar as a process, its log kept line by line.
pub struct Registrar {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Registrar {
    /// Starts the registrar on `engine` and `redis` with extra environment.
    pub fn start(engine: &Engine, redis: &RedisServer, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosd-registrar"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DOCKER_HOST", engine.docker_host())
            .env("gosdRedisAddr", redis.addr())
            .env("RUST_LOG", "gosd_registrar=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gosd-registrar");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("registrar| {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// How many log lines so far contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Waits until at least `n` log lines contain every one of `parts`.
    pub async fn wait_for(&self, n: usize, parts: &[&str]) {
        let started = Instant::now();
        while self.count(parts) < n {
            assert!(
                started.elapsed() < PATIENCE,
                "the registrar did not log {n} line(s) with {parts:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A gosd consumer of `redis`, refreshing on lease expiry and push only.
pub async fn consumer(redis: &RedisServer) -> gosd::Client {
    consumer_in(redis, None).await
}

/// [`consumer`], in `zone` if given (`GOSD_ZONE`): its picks prefer it.
pub async fn consumer_in(redis: &RedisServer, zone: Option<&str>) -> gosd::Client {
    let mut c = gosd::Config::default();
    if let Some(zone) = zone {
        c.metadata.insert("zone", zone).expect("a valid zone");
    }
    c.redis.addr = Some(redis.addr());
    c.cron = None;
    c.try_refresh_amount = 2;
    c.try_find_service_amount = 1;
    c.try_find_service_delay = Duration::ZERO;
    gosd::Client::builder()
        .config(c)
        .build()
        .await
        .expect("consumer")
}

/// Polls `done` every 5 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}
