//! A real Redis Sentinel deployment for tests: one primary, one replica,
//! three sentinels (quorum 2) on free loopback ports, each killed on drop.
//! Readiness is awaited on what the servers report, never slept for.
#![allow(dead_code)] // each test binary uses a different part

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, free_port};
use super::spawned::{Log, spawn_until_ready};

pub const MASTER: &str = "mymaster";

/// How long a sentinel waits before it calls an unanswering primary down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

pub struct Sentinel {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct SentinelSet {
    /// Index 0 starts as the primary, 1 as its replica.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelSet {
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let replicaof = [
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port().to_string(),
        ];
        let replica = RedisServer::start_with(&replicaof, false);
        let sentinels = (0..3).map(|_| start_sentinel(primary.port())).collect();
        let set = Self {
            servers: vec![primary, replica],
            sentinels,
        };
        set.wait_until_settled();
        set
    }

    /// `host:port,…` of the sentinels, for `GOSD_REDIS_SENTINELS`.
    pub fn list(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        addrs.join(",")
    }

    fn sentinel_conn(&self, i: usize) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[i].port))
            .and_then(|c| c.get_connection())
            .expect("connect to a sentinel")
    }

    /// The port the first sentinel calls the primary's now.
    pub fn primary_port(&self) -> u16 {
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query(&mut self.sentinel_conn(0))
            .expect("SENTINEL get-master-addr-by-name");
        addr.expect("the sentinels know the primary").1
    }

    /// The server the sentinels call the primary now.
    pub fn primary(&self) -> &RedisServer {
        let port = self.primary_port();
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .expect("a server of ours")
    }

    /// Every sentinel sees the replica and the two other sentinels, and
    /// the replica has synced: a failover can happen from here on.
    fn wait_until_settled(&self) {
        let started = Instant::now();
        loop {
            let settled = (0..3).all(|i| {
                let info: Vec<String> = redis::cmd("SENTINEL")
                    .arg("master")
                    .arg(MASTER)
                    .query(&mut self.sentinel_conn(i))
                    .unwrap_or_default();
                let field = |name: &str| {
                    info.iter()
                        .position(|f| f == name)
                        .and_then(|at| info.get(at + 1))
                        .cloned()
                        .unwrap_or_default()
                };
                field("num-slaves") == "1" && field("num-other-sentinels") == "2"
            });
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.servers[1].connection())
                .unwrap_or_default();
            if settled && info.contains("master_link_status:up") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the Sentinel set did not settle"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_sentinel(primary: u16) -> Sentinel {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER} {down}\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.path().display(),
                down = DOWN_AFTER.as_millis(),
            ),
        )
        .expect("write sentinel.conf");
        let mut cmd = Command::new("redis-sentinel");
        cmd.arg(&conf);
        let child = spawn_until_ready(
            cmd,
            Log::Stdout,
            &["+monitor master"],
            Duration::from_secs(15),
            "redis-sentinel is not installed, and the Sentinel tests need a real one.\n\
             Install it with `apt-get install -y redis-sentinel` (Debian/Ubuntu) or \
             `brew install redis` (macOS), or run `bash .ci/run`, which installs it.",
        );
        if let Some(child) = child {
            return Sentinel {
                child,
                port,
                _dir: dir,
            };
        }
    }
    panic!("redis-sentinel did not start on any of 5 free ports");
}
