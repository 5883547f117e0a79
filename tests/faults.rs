//! Fault injection: what a real fleet meets on a bad day, done to a real
//! redis-server with real provider and watcher processes (the examples).
//! FAULTS.md records the figures these tests assert, and how to rerun them.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::{PATIENCE, Proc, RedisServer, registry, wait_until};

/// Short leases, so that a freeze of a few seconds is several TTLs.
const TTL: &str = "1s";
const HEARTBEAT: &str = "250ms";
const FREEZE: Duration = Duration::from_secs(3);

fn fleet_env() -> Vec<(&'static str, &'static str)> {
    vec![("GOSD_TTL", TTL), ("GOSD_HEARTBEAT", HEARTBEAT)]
}

/// Every change message Redis publishes on `{gosd}:events`, from a thread
/// of its own that keeps listening through freezes and restarts.
fn events(server: &RedisServer) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let mut con = server.connection();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe("{gosd}:events").expect("SUBSCRIBE");
        let _ = ready_tx.send(());
        while let Ok(msg) = pubsub.get_message() {
            let payload: String = msg.get_payload().unwrap_or_default();
            if tx.send(payload).is_err() {
                return;
            }
        }
    });
    ready.recv_timeout(PATIENCE).expect("subscribed");
    rx
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Redis's clock, in ms.
fn redis_ms(server: &RedisServer) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME")
        .query(&mut server.connection())
        .expect("TIME");
    s * 1000 + us / 1000
}

/// Leases that were written (renewed) after `since_ms` by Redis's clock.
fn renewed_since(server: &RedisServer, since_ms: u64, ttl_ms: u64) -> usize {
    let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("{gosd}:leases")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut server.connection())
        .expect("ZRANGE");
    leases
        .iter()
        .filter(|(_, expiry)| *expiry as u64 >= since_ms + ttl_ms)
        .count()
}

/// The watch example's line `<ms> <count> <urls>`: the count.
fn watched_count(line: &str) -> usize {
    line.split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Build item 1: a registry that is not serving (here: the process
/// stopped with SIGSTOP, for 3 TTLs) does not count the pause against the
/// leases it kept from being renewed. Over three freezes, no live instance
/// leaves the hash (no `del` is ever published) and the watching process's
/// table never loses one.
#[test]
fn a_frozen_redis_evicts_nobody_on_resume() {
    let server = RedisServer::start();
    let env = fleet_env();
    let (_p1, name1, _) = Proc::provider(&server, "1", &env);
    let (_p2, name2, _) = Proc::provider(&server, "2", &env);
    let addr = server.addr();
    let mut watch_env = env.clone();
    watch_env.push(("gosdRedisAddr", &addr));
    let mut watch = Proc::spawn_with("watch", &["provider"], &watch_env);
    loop {
        let line = watch.next_line().expect("the watcher printed its table");
        if watched_count(&line) == 2 {
            break;
        }
    }
    let events = events(&server);
    let pid = server.pid();
    let ttl_ms = 1000;
    // A renewal of each seen first: until the registry has seen a
    // heartbeat, it cannot tell a stall from a quiet spell.
    let registered = redis_ms(&server);
    wait_until("both providers renewed once", || {
        renewed_since(&server, registered, ttl_ms) == 2
    });
    for freeze in 1..=3 {
        signal(pid, "STOP");
        std::thread::sleep(FREEZE); // the fault itself: 3 TTLs frozen
        signal(pid, "CONT");
        let resumed = redis_ms(&server);
        // Both heartbeats landed after the resume: the danger has passed.
        wait_until("both providers renewed after the resume", || {
            renewed_since(&server, resumed, ttl_ms) == 2
        });
        let fields: BTreeSet<String> = registry(&server).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            BTreeSet::from([name1.clone(), name2.clone()]),
            "freeze {freeze}"
        );
        let published: Vec<String> = events.try_iter().collect();
        assert!(
            published
                .iter()
                .all(|m| !m.contains(" del ") && !m.contains(" put ")),
            "freeze {freeze}: a live instance left the hash and came back: {published:?}"
        );
        let lines = watch.ready_lines();
        assert!(
            lines.iter().all(|l| watched_count(l) == 2),
            "freeze {freeze}: the watcher's table lost an instance: {lines:?}"
        );
    }
}
