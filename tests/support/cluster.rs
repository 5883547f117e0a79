//! A real Redis Cluster for tests: 6 redis-server nodes (3 primaries with
//! a replica each) on free loopback ports, each in its own temp dir and
//! killed on drop, joined by `redis-cli --cluster create`. Readiness is
//! awaited on what the nodes report (`cluster_state:ok`, replicas in
//! sync), polled with a bound, never slept for.
//!
//! Used by the facade's tests and by the driver's (which include it
//! beside `redis_server.rs`).
#![allow(dead_code)] // each test binary uses a different part

use std::process::Command;
use std::time::{Duration, Instant};

use super::redis_server::RedisServer;

/// How long a node waits for an unanswering one before calling it
/// failed, and its replica starts an election.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long the cluster may take to get somewhere (a hang guard).
const BOUND: Duration = Duration::from_secs(60);

pub struct ClusterSet {
    /// Every node; a killed one stays here, stopped.
    pub nodes: Vec<RedisServer>,
    /// The ports of nodes that were stopped on purpose.
    stopped: Vec<u16>,
}

fn node_args() -> Vec<String> {
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &NODE_TIMEOUT.as_millis().to_string(),
        // A replica takes over however far behind it is: the test
        // measures what gosd does with the history the replica has.
        "--cluster-replica-validity-factor",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl ClusterSet {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_with(&node_args(), false))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .output()
            .expect("redis-cli is not installed (apt-get install -y redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let set = Self {
            nodes,
            stopped: Vec::new(),
        };
        set.wait_until_settled();
        set
    }

    /// `host:port,…` of every node, for `GOSD_REDIS_CLUSTER`.
    pub fn list(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(RedisServer::addr).collect();
        addrs.join(",")
    }

    /// A connection to the node on `port`, if it answers.
    pub fn conn(&self, port: u16) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .filter(|p| !self.stopped.contains(p))
    }

    /// The slot `key` hashes to.
    pub fn slot(&self, key: &str) -> u16 {
        let port = self.live().next().expect("a live node");
        let mut conn = self.conn(port).expect("connect to a node");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the node that `port` says serves `slot` as primary.
    pub fn owner_seen_by(&self, port: u16, slot: u16) -> Option<u16> {
        let mut conn = self.conn(port)?;
        // [[start, end, [ip, port, id], replicas…], …]
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).ok()?;
        slots.into_iter().find_map(|range| {
            let redis::Value::Array(range) = range else {
                return None;
            };
            let num = |v: &redis::Value| match v {
                redis::Value::Int(i) => Some(*i),
                _ => None,
            };
            let (start, end) = (num(range.first()?)?, num(range.get(1)?)?);
            if !(start..=end).contains(&i64::from(slot)) {
                return None;
            }
            let redis::Value::Array(primary) = range.get(2)? else {
                return None;
            };
            u16::try_from(num(primary.get(1)?)?).ok()
        })
    }

    /// The primary of `slot`, as every live node agrees.
    pub fn owner(&self, slot: u16) -> Option<u16> {
        let seen: Vec<Option<u16>> = self.live().map(|p| self.owner_seen_by(p, slot)).collect();
        let first = *seen.first()?;
        seen.iter().all(|s| *s == first).then_some(first).flatten()
    }

    /// The node id of the node on `port`.
    pub fn id(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn(port).expect("connect to a node"))
            .expect("CLUSTER MYID")
    }

    /// The ports of the live primaries.
    pub fn primaries(&self) -> Vec<u16> {
        self.live()
            .filter(|p| {
                let role: Vec<redis::Value> = self
                    .conn(*p)
                    .and_then(|mut c| redis::cmd("ROLE").query(&mut c).ok())
                    .unwrap_or_default();
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            })
            .collect()
    }

    /// Moves `slot` and its keys from the primary on `from` to the one on
    /// `to`, as `redis-cli --cluster reshard` does: IMPORTING/MIGRATING,
    /// MIGRATE of every key (all of a batch at once), SETSLOT NODE.
    pub fn migrate(&self, slot: u16, from: u16, to: u16) {
        let (from_id, to_id) = (self.id(from), self.id(to));
        let mut src = self.conn(from).expect("connect to the source");
        let mut dst = self.conn(to).expect("connect to the target");
        let setslot = |conn: &mut redis::Connection, how: &str, id: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(how)
                .arg(id)
                .query(conn)
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {how}: {e}"));
        };
        setslot(&mut dst, "IMPORTING", &from_id);
        setslot(&mut src, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1000)
                .query(&mut src)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .expect("MIGRATE");
        }
        setslot(&mut dst, "NODE", &to_id);
        setslot(&mut src, "NODE", &to_id);
        for p in self.primaries() {
            if p != from
                && p != to
                && let Some(mut c) = self.conn(p)
            {
                setslot(&mut c, "NODE", &to_id);
            }
        }
        self.wait_until("every node routes the slot to its new primary", || {
            self.owner(slot) == Some(to)
        });
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port() == port) {
            n.stop();
        }
        self.stopped.push(port);
    }

    /// Runs `cmd` on every live primary (e.g. FLUSHALL).
    pub fn on_primaries(&self, cmd: &redis::Cmd) {
        for p in self.primaries() {
            let _: redis::Value = cmd
                .query(&mut self.conn(p).expect("connect to a primary"))
                .expect("a command on a primary");
        }
    }

    /// A connection to the primary of `key`'s slot.
    pub fn owner_conn(&self, key: &str) -> redis::Connection {
        let port = self.owner(self.slot(key)).expect("the slot has an owner");
        self.conn(port).expect("connect to the slot's primary")
    }

    pub fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < BOUND, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every live node says `cluster_state:ok` and knows every node, and
    /// every replica is in sync with its primary.
    pub fn wait_until_settled(&self) {
        let nodes = self.nodes.len();
        self.wait_until("the cluster to settle", || {
            self.live().all(|p| {
                let Some(mut conn) = self.conn(p) else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                let repl: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut conn)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{nodes}"))
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        });
    }
}
