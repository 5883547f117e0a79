//! Propagation latency: register → visible in the route table of N
//! watching clients (N = 1, 100), p50/p99, against two baselines in the
//! same run: a raw Redis PUBLISH → received by N raw subscribers (the
//! floor), and etcd's put → event at N watchers (what Go teams use for
//! discovery; Debian's etcd, spawned, over its JSON gateway).
//!
//! `cargo bench --bench propagation` (spawns its own redis-server and,
//! when `etcd` is installed — `apt-get install etcd-server` — an etcd)

#[path = "../tests/support/redis_server.rs"]
mod redis_server;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gosd::{Config, Driver, InstanceName, RedisDriver};
use redis_server::{RedisServer, free_port};
use support::{propagation_round, report};

/// Register one instance, time until every client's table has it.
async fn gosd_round(server: &RedisServer, clients: usize, rounds: usize) -> Vec<Duration> {
    let mut config = Config::default();
    config.redis.addr = Some(server.addr());
    let writer = Arc::new(RedisDriver::new(server.url().parse().unwrap()));
    propagation_round(&config, writer, clients, rounds).await
}

/// The floor: PUBLISH one message, time until each of N subscribers has it.
async fn raw_pubsub_round(
    server: &RedisServer,
    subscribers: usize,
    rounds: usize,
) -> Vec<Duration> {
    let client = redis::Client::open(server.url()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..subscribers {
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("bench").await.unwrap();
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                let _ = tx.send(Instant::now());
            }
        });
    }
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut samples = Vec::with_capacity(subscribers * rounds);
    for round in 0..rounds {
        let t0 = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench")
            .arg(round)
            .query_async(&mut publisher)
            .await
            .unwrap();
        for _ in 0..subscribers {
            samples.push(rx.recv().await.unwrap() - t0);
        }
    }
    // Otherwise they stay subscribed: the 1-subscriber round's would take
    // every message of the 100-subscriber round, and all would share the
    // cores with the next measurement.
    tasks.shutdown().await;
    samples
}

/// A throwaway etcd on free loopback ports, killed on drop.
struct Etcd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts etcd and waits for its "ready to serve client requests" line;
/// `None` (said aloud) when etcd is not installed.
fn start_etcd() -> Option<Etcd> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (port, peer) = (free_port(), free_port());
    let spawned = std::process::Command::new("etcd")
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(_) => {
            println!(
                "etcd baseline skipped: etcd is not installed (apt-get install -y etcd-server)"
            );
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready to serve client requests") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("etcd did not become ready");
    Some(Etcd {
        child,
        port,
        _dir: dir,
    })
}

/// etcd's put → event at N watchers, over the JSON gateway.
async fn etcd_round(etcd: &Etcd, watchers: usize, rounds: usize) -> Vec<Duration> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", etcd.port);
    let key = "YmVuY2g="; // "bench", base64
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let request = hyper::Request::post(url("/v3/watch"))
            .body(Full::new(Bytes::from(format!(
                r#"{{"create_request":{{"key":"{key}"}}}}"#
            ))))
            .unwrap();
        let mut body = http.request(request).await.unwrap().into_body();
        let (seen_tx, ready_tx) = (seen_tx.clone(), ready_tx.clone());
        streams.spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line);
                    if line.contains("\"created\":true") {
                        let _ = ready_tx.send(());
                    } else if line.contains("\"events\"") {
                        let _ = seen_tx.send(Instant::now());
                    }
                }
            }
        });
    }
    for _ in 0..watchers {
        ready.recv().await.unwrap();
    }
    let mut samples = Vec::with_capacity(watchers * rounds);
    for round in 0..rounds {
        let put = hyper::Request::post(url("/v3/kv/put"))
            .body(Full::new(Bytes::from(format!(
                r#"{{"key":"{key}","value":"{}"}}"#,
                b64(round)
            ))))
            .unwrap();
        let t0 = Instant::now();
        let _ = http
            .request(put)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        for _ in 0..watchers {
            samples.push(seen.recv().await.unwrap() - t0);
        }
    }
    streams.shutdown().await;
    samples
}

/// A round number as base64 (etcd's JSON gateway wants bytes as base64).
fn b64(n: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = n.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = |full: usize| if quick { 3 } else { full };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd = start_etcd();
    rt.block_on(async {
        let server = RedisServer::start();
        println!("propagation, register -> visible (loopback redis-server, 2 worker threads)");
        // A round's 100 samples move together: one slow round delays all of
        // them. Over 50 rounds the p99 was little more than the slowest
        // round; over 500 it is a p99.
        for (n, r) in [(1, rounds(300)), (100, rounds(500))] {
            let mut floor = raw_pubsub_round(&server, n, r).await;
            let (_, floor_p99) = report(
                &format!("floor: raw PUBLISH -> {n} subscriber(s)"),
                &mut floor,
            );
            let mut etcd_p99 = None;
            if let Some(etcd) = &etcd {
                let mut samples = etcd_round(etcd, n, r).await;
                etcd_p99 = Some(report(&format!("etcd: put -> {n} watcher(s)"), &mut samples).1);
            }
            let mut ours = gosd_round(&server, n, r).await;
            let (_, p99) = report(&format!("gosd: register -> {n} client table(s)"), &mut ours);
            println!(
                "{:<44} p99 ratio gosd/floor = {:.2}",
                "",
                p99.as_secs_f64() / floor_p99.as_secs_f64()
            );
            if let Some(e) = etcd_p99 {
                println!(
                    "{:<44} p99 ratio gosd/etcd  = {:.2}",
                    "",
                    p99.as_secs_f64() / e.as_secs_f64()
                );
            }
        }
        // Against registry size: one client, with K other instances registered.
        let filler = RedisDriver::new(server.url().parse().unwrap());
        let mut registered = 0;
        for size in [0, 1_000, 10_000] {
            let size = if quick { size / 100 } else { size };
            while registered < size {
                let name = InstanceName::new("filler", &registered.to_string()).unwrap();
                let url = format!("http://filler-{registered}:80");
                filler
                    .register(&name, &url, Duration::from_secs(3600))
                    .await
                    .unwrap();
                registered += 1;
            }
            // Over 200 rounds the p99 was the second-slowest sample.
            let mut samples = gosd_round(&server, 1, rounds(1_000)).await;
            report(
                &format!("sweep: registry={size} gosd -> 1 client"),
                &mut samples,
            );
        }
    });
}
