//! Client memory per route: a client's live heap with a 10k-instance
//! registry against the same client with an empty one, counted by a global
//! allocator (live bytes: precise where RSS is not, since freed memory is
//! not always returned to the OS). RSS is printed alongside.
//!
//! `cargo bench --bench memory` (spawns its own redis-server)

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use gosd::{Client, Config, Driver, InstanceName, RedisDriver};
use redis_server::RedisServer;

struct Live;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let instances: usize = if quick { 100 } else { 10_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let mut config = Config::default();
    config.redis.addr = Some(server.addr());
    config.cron = None;
    config.watch = false;
    rt.block_on(async {
        let empty = Client::builder()
            .config(config.clone())
            .build()
            .await
            .unwrap();
        let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_kib());
        drop(empty);
        let writer = RedisDriver::new(server.url().parse().unwrap());
        for i in 0..instances {
            let name = InstanceName::new(
                &format!("service{}", i % 100),
                &format!("20261121000000.{i:08}"),
            )
            .unwrap();
            writer
                .register(
                    &name,
                    &format!("http://10.0.{}.{}:8080", i / 250, i % 250),
                    Duration::from_secs(3600),
                )
                .await
                .unwrap();
        }
        let before = LIVE.load(Ordering::Relaxed);
        let full = Client::builder().config(config).build().await.unwrap();
        let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_kib());
        let per_route = (heap1 - before) as f64 / instances as f64;
        println!("client with an empty registry: live heap {heap0} B, RSS {rss0} KiB");
        println!(
            "client with {instances} instances: +{} B live heap, RSS {rss1} KiB",
            heap1 - before
        );
        println!("bytes per route (live heap): {per_route:.0}");
        drop(full);
    });
}
