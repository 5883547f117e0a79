//! The integrations' cost, each against what it replaces, in the same run:
//! - reqwest through `gosd::reqwest::Discovery` against plain reqwest, to
//!   the same local upstream (requests/s and p50 latency);
//! - tonic through `gosd::tonic::balanced_channel` (one instance) against
//!   a channel to that one fixed endpoint (health checks/s).
//!
//! `cargo bench --bench calling --features reqwest,tonic`
//!
//! Sequential requests on one connection each way, over loopback, rounds
//! interleaved so that drift on a shared machine hits both sides alike.

use std::time::{Duration, Instant};

use axum::routing::get;
use gosd::{Client, MemoryDriver};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ROUNDS: usize = 10;
const PER_ROUND: usize = 2_000;

struct Side {
    name: &'static str,
    samples: Vec<Duration>,
    total: Duration,
}

impl Side {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            samples: Vec::with_capacity(ROUNDS * PER_ROUND),
            total: Duration::ZERO,
        }
    }

    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.total.as_secs_f64()
    }

    fn p50(&mut self) -> Duration {
        self.samples.sort_unstable();
        self.samples[self.samples.len() / 2]
    }

    fn print(&mut self) {
        let (rate, p50) = (self.rate(), self.p50());
        println!(
            "  {:<28} {:>9.0} req/s  p50 {:>7.1} µs",
            self.name,
            rate,
            p50.as_secs_f64() * 1e6
        );
    }
}

async fn timed<F, Fut>(side: &mut Side, mut one: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let round = Instant::now();
    for _ in 0..PER_ROUND {
        let t = Instant::now();
        one().await;
        side.samples.push(t.elapsed());
    }
    side.total += round.elapsed();
}

async fn reqwest_bench(client: &Client) {
    let app = axum::Router::new().route("/ping", get(|| async { "pong" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    client
        .add_service_manually("upstream", &format!("http://{addr}"))
        .unwrap();
    let plain = reqwest::Client::new();
    let through = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(gosd::reqwest::Discovery::new(client.clone()))
        .build();
    let direct = format!("http://{addr}/ping");
    let (mut a, mut b) = (Side::new("plain reqwest"), Side::new("gosd middleware"));
    for _ in 0..ROUNDS {
        timed(&mut a, || async {
            let r = plain.get(&direct).send().await.unwrap();
            assert_eq!(r.bytes().await.unwrap().len(), 4);
        })
        .await;
        timed(&mut b, || async {
            let r = through.get("http://upstream/ping").send().await.unwrap();
            assert_eq!(r.bytes().await.unwrap().len(), 4);
        })
        .await;
    }
    println!("reqwest, {} sequential GETs each:", ROUNDS * PER_ROUND);
    a.print();
    b.print();
    println!(
        "  ratio {:.3} (requests/s), p50 overhead {:+.1} µs",
        b.rate() / a.rate(),
        (b.p50().as_secs_f64() - a.p50().as_secs_f64()) * 1e6
    );
}

async fn tonic_bench(client: &Client, provider: &Client) {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let _me = provider.register("grpc", &url).await.unwrap();
    client.get().await.unwrap();
    let fixed = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let balanced = gosd::tonic::balanced_channel(client, "grpc");
    let (fixed, balanced) = (HealthClient::new(fixed), HealthClient::new(balanced));
    let (mut a, mut b) = (
        Side::new("fixed endpoint"),
        Side::new("gosd balanced channel"),
    );
    for _ in 0..ROUNDS {
        timed(&mut a, || {
            let mut c = fixed.clone();
            async move {
                c.check(HealthCheckRequest::default()).await.unwrap();
            }
        })
        .await;
        timed(&mut b, || {
            let mut c = balanced.clone();
            async move {
                c.check(HealthCheckRequest::default()).await.unwrap();
            }
        })
        .await;
    }
    println!(
        "tonic, {} sequential health checks each:",
        ROUNDS * PER_ROUND
    );
    a.print();
    b.print();
    println!("  ratio {:.3} (requests/s)", b.rate() / a.rate());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = MemoryDriver::new();
        let mut config = gosd::Config::default();
        config.cron = None;
        let client = Client::builder()
            .config(config.clone())
            .driver(registry.clone())
            .build()
            .await
            .unwrap();
        let provider = Client::builder()
            .config(config)
            .driver(registry)
            .build()
            .await
            .unwrap();
        reqwest_bench(&client).await;
        tonic_bench(&client, &provider).await;
    });
}
