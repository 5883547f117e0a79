//! A real `etcd` for tests: a single member on free loopback ports in a
//! temp dir, killed on drop (its data dir goes with it).
//!
//! Readiness is etcd's own "serving client traffic" log line, so
//! no test sleeps waiting for it. The raft timers are shortened (10 ms
//! heartbeat, 100 ms election) so that the member elects itself at once
//! and short leases are allowed.
#![allow(dead_code)] // each test binary uses a different part

#[path = "spawned.rs"]
mod spawned;

use std::process::{Child, Command};
use std::time::Duration;

use spawned::{Log, free_port, spawn_until_ready};

pub struct EtcdServer {
    child: Child,
    port: u16,
    peer_port: u16,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a member on free ports.
    /// The member's process id, to freeze it (`kill -STOP`) and so on.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(free_port(), free_port()) {
                return server;
            }
        }
        panic!("etcd did not start on any of 5 pairs of free ports");
    }

    /// Starts a cluster of `n` members on free ports, each killed on drop,
    /// once every member serves clients (which needs a leader).
    pub fn start_cluster(n: usize) -> Vec<Self> {
        for _ in 0..5 {
            let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
            let cluster: Vec<String> = ports
                .iter()
                .enumerate()
                .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
                .collect();
            let cluster = cluster.join(",");
            // Together: each waits for the others before it serves.
            let members: Vec<Option<Self>> = std::thread::scope(|s| {
                let started: Vec<_> = ports
                    .iter()
                    .enumerate()
                    .map(|(i, (client, peer))| {
                        let cluster = &cluster;
                        s.spawn(move || {
                            Self::try_start_member(&format!("m{i}"), *client, *peer, cluster)
                        })
                    })
                    .collect();
                started
                    .into_iter()
                    .map(|t| t.join().ok().flatten())
                    .collect()
            });
            if members.iter().all(Option::is_some) {
                return members.into_iter().flatten().collect();
            }
        }
        panic!("an etcd cluster of {n} did not start on any of 5 sets of free ports");
    }

    fn try_start(client: u16, peer: u16) -> Option<Self> {
        let cluster = format!("gosd-test=http://127.0.0.1:{peer}");
        Self::try_start_member("gosd-test", client, peer, &cluster)
    }

    fn try_start_member(name: &str, client: u16, peer: u16, cluster: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", cluster])
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "info",
            ]);
        let child = spawn_until_ready(
            cmd,
            Log::Stderr,
            // etcd 3.4 with zap logs the first; 3.5+ the second.
            &["serving client traffic", "ready to serve client requests"],
            Duration::from_secs(20),
            "etcd is not installed, and the etcd tests need a real one.\n\
             Install it with `apt-get install -y etcd-server` (Debian/Ubuntu) or \
             `brew install etcd` (macOS), or run `bash .ci/run`, which installs it.",
        )?;
        Some(Self {
            child,
            port: client,
            peer_port: peer,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the form `GOSD_ETCD_ENDPOINTS` takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the member and starts a new one on the same ports with an
    /// empty data dir: etcd lost everything, keys and leases.
    pub fn restart_empty(&mut self) {
        self.stop();
        *self = Self::try_start(self.port, self.peer_port)
            .unwrap_or_else(|| panic!("etcd did not restart on port {}", self.port));
    }

    /// Stops the member at once.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
