//! The `gosd-router` binary, built with `--features etcd`, as a process over
//! a real etcd, routing to the example providers registered there.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use support::{EtcdServer, Proc, etcd_env, free_port};

/// The router process; killed on drop.
struct RouterProcess(Child);

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over a fresh connection; the whole response as text.
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the router");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[test]
fn routes_round_robin_over_providers_registered_in_etcd() {
    let etcd = EtcdServer::start();
    let env = etcd_env(&etcd);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Both are in etcd before the router starts, so its first table has both.
    let (_p1, _, _) = Proc::provider_with("1", &env);
    let (_p2, _, _) = Proc::provider_with("2", &env);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut router = Command::new(env!("CARGO_BIN_EXE_gosd-router"));
    router
        .envs(env.iter().copied())
        .env("GOSD_ROUTER_ADDR", &addr)
        .stdout(Stdio::piped());
    let mut router = RouterProcess(router.spawn().expect("run gosd-router"));
    let mut ready = String::new();
    BufReader::new(router.0.stdout.take().expect("piped stdout"))
        .read_line(&mut ready)
        .expect("read the router's first line");
    assert!(ready.contains("listening"), "router said {ready:?}");

    // Each request is served on whichever worker thread accepts it, and
    // round-robin is strict per thread (gosd's pick keeps a cursor per
    // thread): so the split is even within one per worker.
    let bodies: Vec<&str> = (0..20)
        .map(|_| {
            let response = get(&addr, "/provider/ping");
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            if response.contains("\"Provider: 1\"") {
                "1"
            } else if response.contains("\"Provider: 2\"") {
                "2"
            } else {
                panic!("not a provider's answer: {response}")
            }
        })
        .collect();
    let ones = bodies.iter().filter(|b| **b == "1").count();
    let twos = bodies.len() - ones;
    // The router's runtime has one worker per core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        ones > 0 && twos > 0 && ones.abs_diff(twos) <= workers,
        "not round-robin within {workers} workers: {bodies:?}"
    );

    // SIGTERM: the router stops accepting, drains, and exits 0.
    let term = Command::new("kill")
        .args(["-TERM", &router.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(term.success());
    let status = router.0.wait().expect("wait for the router");
    assert_eq!(status.code(), Some(0), "{status:?}");
}
