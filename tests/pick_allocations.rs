//! A pick from a loaded table allocates nothing: counted by a global
//! allocator that counts the current thread's allocations, in a test
//! binary of its own (the counting allocator is process-wide).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use gosd::{Client, Config, Driver, InstanceName, MemoryDriver, Meta, Status};

/// Counts allocations made by the current thread only: the runtime's own
/// threads allocate whenever they like.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: defers to `System`; the counter is a thread-local `Cell` with a
// const initialiser, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVICES: usize = 100;
const INSTANCES: usize = 10;
const PICKS: usize = 1_000_000;

async fn loaded_client() -> (Client, Vec<String>) {
    let registry = MemoryDriver::new();
    let names: Vec<String> = (0..SERVICES).map(|s| format!("service{s}")).collect();
    for s in &names {
        for i in 0..INSTANCES {
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
    let mut config = Config::default();
    config.cron = None;
    let client = Client::builder()
        .config(config)
        .driver(registry)
        .build()
        .await
        .unwrap();
    (client, names)
}

/// Picks every service once (a thread's first pick from a client, and of
/// each service, sets up its cache), then `PICKS` more; the allocations
/// the latter made.
async fn allocations_in_picks(client: &Client, names: &[String]) -> usize {
    for s in names {
        client.iterate_service_route(s).await.unwrap();
        client.next_route(s).unwrap();
    }
    let before = allocs();
    for i in 0..PICKS {
        let name = &names[i % names.len()];
        let route = if i % 2 == 0 {
            client.iterate_service_route(name).await.unwrap()
        } else {
            client.next_route(name).unwrap()
        };
        std::hint::black_box(route);
    }
    allocs() - before
}

#[tokio::test(flavor = "current_thread")]
async fn a_million_picks_from_a_loaded_table_allocate_nothing() {
    let (client, names) = loaded_client().await;
    assert_eq!(
        allocations_in_picks(&client, &names).await,
        0,
        "heap allocations in {PICKS} picks"
    );
}

#[test]
fn picks_on_threads_sharing_a_service_allocate_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, names) = rt.block_on(loaded_client());
    let names = &names[..1];
    let made: Vec<usize> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    // A pick never waits on a loaded table: polled to
                    // completion on this plain thread, as a task would.
                    run_to_end(allocations_in_picks(&client, names))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(made, [0, 0], "heap allocations per thread in {PICKS} picks");
}

/// Weighted (1..=10), zoned (half in the client's zone) and partly down
/// instances: the pick is the same cursor step over a longer sequence.
#[tokio::test(flavor = "current_thread")]
async fn weighted_and_zone_filtered_picks_allocate_nothing() {
    let registry = MemoryDriver::new();
    let names: Vec<String> = (0..SERVICES).map(|s| format!("service{s}")).collect();
    for s in &names {
        for i in 0..INSTANCES {
            let mut meta = Meta::default();
            meta.insert("weight", &(i + 1).to_string()).unwrap();
            meta.insert("zone", if i % 2 == 0 { "a" } else { "b" })
                .unwrap();
            if i == 0 {
                meta.status = Status::Down;
            }
            let name = InstanceName::new(s, &i.to_string()).unwrap();
            let url = format!("http://{s}-host{i}:8080");
            registry
                .register_with(&name, &url, &meta, Duration::from_secs(3600))
                .await
                .unwrap();
        }
    }
    let selectors: Vec<gosd::Selector> = names
        .iter()
        .map(|s| gosd::Selector::new(s).with("zone", "b"))
        .collect();
    for zone in [None, Some("a")] {
        let mut config = Config::default();
        config.cron = None;
        if let Some(zone) = zone {
            config.metadata.insert("zone", zone).unwrap();
        }
        let client = Client::builder()
            .config(config)
            .driver(registry.clone())
            .build()
            .await
            .unwrap();
        assert_eq!(
            allocations_in_picks(&client, &names).await,
            0,
            "heap allocations in {PICKS} picks, zone {zone:?}"
        );
        for s in &selectors {
            client.pick(s).unwrap(); // the first pick makes its sequence
        }
        let before = allocs();
        for i in 0..PICKS {
            std::hint::black_box(client.pick(&selectors[i % selectors.len()]).unwrap());
        }
        assert_eq!(
            allocs() - before,
            0,
            "heap allocations in {PICKS} selector picks"
        );
    }
}

/// Runs a future that never waits (a pick from a loaded table) to its end.
fn run_to_end<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
