//! Route pick cost: gosd's `iterate_service_route` against Go gosd's
//! algorithm made thread-safe (a `Mutex<HashMap<String, (usize, Vec<String>)>>`
//! round-robin), in the same run, on 100 services × 10 instances.
//!
//! `cargo bench --bench pick`
//!
//! It also counts heap allocations across a million picks: the hot path
//! must make none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gosd::{Client, Config, Driver, InstanceName, MemoryDriver};

/// Counts allocations made by the current thread only: the runtime's own
/// threads allocate whenever they like.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

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

/// Polls a future that completes without waiting (a pick from the table).
/// Inlined, as an `.await` polls the future in place in its caller: out of
/// line, moving the future in and its result out cost more than the pick.
#[inline(always)]
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a pick from a loaded table must not wait"),
    }
}

/// Go gosd's round-robin, made thread-safe with one mutex.
struct MutexBaseline(Mutex<HashMap<String, (usize, Vec<String>)>>);

impl MutexBaseline {
    fn pick(&self, service: &str) -> Option<String> {
        let mut map = self.0.lock().unwrap();
        let (next, urls) = map.get_mut(service)?;
        *next = (*next + 1) % urls.len();
        Some(urls[*next].clone())
    }
}

fn picks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = MemoryDriver::new();
    let mut baseline = HashMap::new();
    let names: Vec<String> = (0..SERVICES).map(|s| format!("service{s}")).collect();
    rt.block_on(async {
        for s in &names {
            let mut urls = Vec::new();
            for i in 0..INSTANCES {
                let url = format!("http://{s}-host{i}:8080");
                let name = InstanceName::new(s, &i.to_string()).unwrap();
                registry
                    .register(&name, &url, Duration::from_secs(3600))
                    .await
                    .unwrap();
                urls.push(url);
            }
            baseline.insert(s.clone(), (0, urls));
        }
    });
    let mut config = Config::default();
    config.cron = None;
    let client = rt
        .block_on(Client::builder().config(config).driver(registry).build())
        .unwrap();
    let baseline = MutexBaseline(Mutex::new(baseline));

    // arc-swap allocates one node per thread on its first load: warm up.
    black_box(ready(client.iterate_service_route(&names[0])).unwrap());
    let before = allocs();
    for i in 0..1_000_000 {
        black_box(ready(client.iterate_service_route(&names[i % SERVICES])).unwrap());
    }
    let made = allocs() - before;
    println!("heap allocations in 1,000,000 gosd picks: {made}");
    assert_eq!(made, 0, "the pick path allocated");

    // Criterion black-boxes what a routine returns; black-boxing it again
    // inside the routine stored the route as two words and reloaded it as
    // one, a stalled store forward that cost ~10 ns per pick and was no
    // part of a pick. Every routine here returns its result instead.
    let mut g = c.benchmark_group("pick_1_thread");
    let mut i = 0usize;
    g.bench_function("gosd_iterate_service_route", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            ready(client.iterate_service_route(&names[i % SERVICES])).unwrap()
        })
    });
    g.bench_function("gosd_next_route_sync", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            client.next_route(&names[i % SERVICES]).unwrap()
        })
    });
    g.bench_function("baseline_mutex_hashmap", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            baseline.pick(&names[i % SERVICES]).unwrap()
        })
    });
    g.finish();

    interleaved(&client, &baseline, &names);

    // Two threads picking at once: the contended case Go gosd races on.
    let mut g = c.benchmark_group("pick_2_threads");
    g.bench_function("gosd_iterate_service_route", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |n| {
                black_box(ready(client.iterate_service_route(&names[n % SERVICES])).unwrap());
            })
        })
    });
    g.bench_function("baseline_mutex_hashmap", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |n| {
                black_box(baseline.pick(&names[n % SERVICES]).unwrap());
            })
        })
    });
    g.finish();
}

/// The ratios again, from rounds of 100,000 picks that alternate between
/// gosd and the baseline, so that both see the same machine: on shared
/// vCPUs the absolute times move by a third between runs, the ratios by a
/// few percent. Prints the medians over 60 rounds.
fn interleaved(client: &Client, baseline: &MutexBaseline, names: &[String]) {
    const ROUNDS: usize = 60;
    let (mut sync, mut awaited, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sync.push(per_pick(names, |s| client.next_route(s)));
        awaited.push(per_pick(names, |s| {
            ready(client.iterate_service_route(s)).ok()
        }));
        base.push(per_pick(names, |s| baseline.pick(s)));
    }
    let ratio = |gosd: &[f64]| -> Vec<f64> { base.iter().zip(gosd).map(|(b, g)| b / g).collect() };
    let (sync_ratio, awaited_ratio) = (ratio(&sync), ratio(&awaited));
    println!(
        "interleaved, median of {ROUNDS} rounds: next_route {:.1} ns ({:.2}x the baseline), \
         iterate_service_route {:.1} ns ({:.2}x), baseline {:.1} ns",
        median(sync),
        median(sync_ratio),
        median(awaited),
        median(awaited_ratio),
        median(base),
    );
}

/// Nanoseconds per pick over 100,000 picks, cycling through the services.
fn per_pick<R>(names: &[String], mut pick: impl FnMut(&str) -> R) -> f64 {
    const PICKS: usize = 100_000;
    let start = Instant::now();
    for n in 0..PICKS {
        black_box(pick(&names[n % SERVICES]));
    }
    start.elapsed().as_nanos() as f64 / PICKS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `iters` picks on each of two threads at once and returns the wall
/// time: criterion's figure is then the time per pick with both threads busy.
fn two_threads(iters: u64, pick: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let pick = &pick;
            s.spawn(move || {
                for n in 0..iters as usize {
                    pick(n + t);
                }
            });
        }
    });
    start.elapsed()
}

criterion_group!(benches, picks);
criterion_main!(benches);
