//! A network namespace made by the test, joined to the host by a veth
//! pair, for partitions: `iptables` DROP rules inside it cut every packet
//! both ways, as a real partition does (no reset, no refusal: silence),
//! and removing them heals it. This kernel has no netem; see
//! `tests/faults.rs` for the delaying proxy used for latency.
//!
//! Needs root (CI runs as root). Not root: it fails saying so, never skips.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    /// The host side's address.
    pub host_ip: String,
    /// The namespace side's address: where a server inside listens.
    pub inner_ip: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the partition tests need iproute2 and iptables \
                 (`apt-get install -y iproute2 iptables`, which scripts/test does)",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A new namespace `gosd-<pid>-<n>` with the veth pair up and
    /// addressed (10.<a>.<b>.1 on the host, .2 inside).
    pub fn create() -> Self {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the partition tests make network namespaces and iptables rules, \
             which needs root; run them as root (CI does)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("gosd-{pid}-{n}");
        // Interface names are at most 15 bytes.
        let (host_if, inner_if) = (
            format!("gh{}x{n}", pid % 100_000),
            format!("gn{}x{n}", pid % 100_000),
        );
        let net = format!("10.{}.{}", 100 + (pid % 100), n % 250);
        let (host_ip, inner_ip) = (format!("{net}.1"), format!("{net}.2"));
        run(&["ip", "netns", "add", &name]);
        let ns = Self {
            name,
            host_ip,
            inner_ip,
        };
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &inner_if,
        ]);
        run(&["ip", "link", "set", &inner_if, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.inner_ip),
            "dev",
            &inner_if,
        ]);
        ns.exec(&["ip", "link", "set", &inner_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace, to completion.
    pub fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Drops every packet in and out of the namespace, except on its own
    /// loopback.
    pub fn partition(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            let iface = if chain == "INPUT" { "-i" } else { "-o" };
            self.exec(&["iptables", "-I", chain, "!", iface, "lo", "-j", "DROP"]);
        }
    }

    /// Removes the partition's rules.
    pub fn heal(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            self.exec(&["iptables", "-F", chain]);
        }
    }
}

impl Drop for Netns {
    /// Deleting the namespace deletes its end of the veth pair, which
    /// takes the host's end with it.
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
