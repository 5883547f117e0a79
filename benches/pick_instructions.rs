//! Instructions per pick, counted by valgrind's callgrind: repeatable on
//! a shared, noisy machine where wall-clock times are not.
//!
//! `scripts/pick-instructions.sh` runs this twice, with 0 and with N picks,
//! and prints the difference divided by N. By hand:
//! `pick_instructions <sync|async> <N>` does N picks from 100 services ×
//! 10 instances (`sync`: `Client::next_route`; `async`:
//! `iterate_service_route`, polled once). Under `cargo bench` it does none.
use gosd::{Client, Config, Driver, InstanceName, MemoryDriver};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Inlined, as an `.await` polls in place (see `benches/pick.rs`).
#[inline(always)]
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!(),
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = MemoryDriver::new();
    let names: Vec<String> = (0..100).map(|s| format!("service{s}")).collect();
    rt.block_on(async {
        for s in &names {
            for i in 0..10 {
                let name = InstanceName::new(s, &i.to_string()).unwrap();
                registry
                    .register(
                        &name,
                        &format!("http://{s}-host{i}:8080"),
                        Duration::from_secs(3600),
                    )
                    .await
                    .unwrap();
            }
        }
    });
    let mut config = Config::default();
    config.cron = None;
    config.watch = false;
    let client = rt
        .block_on(Client::builder().config(config).driver(registry).build())
        .unwrap();
    for i in 0..n {
        let name = &names[i % 100];
        if mode == "async" {
            black_box(ready(client.iterate_service_route(name)).unwrap());
        } else {
            black_box(client.next_route(name).unwrap());
        }
    }
}
