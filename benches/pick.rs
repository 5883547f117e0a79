//! Route pick cost as a user sees it: `.await`ed inside tokio tasks, on a
//! current-thread and a multi-thread runtime, with 1, 2 and 8 tasks (and
//! OS threads) picking the same hot service at once, against two fair
//! baselines in the same run.
//!
//! `cargo bench --bench pick` (or `scripts/pick-outside.sh`, which builds
//! this same file in a crate outside the workspace).
//!
//! - `global`: `gosd::iterate_service_route`, the API the README shows.
//! - `client`: `Client::iterate_service_route`.
//! - `next_route`: the synchronous `Client::next_route` (OS threads only).
//! - `mutex`: `Mutex<HashMap<Arc<str>, (usize, Vec<Arc<str>>)>>` hashed
//!   with gosd's own Fx hasher, returning an `Arc<str>` clone: Go gosd's
//!   round-robin made thread-safe, with nothing allocated per pick.
//! - `rwlock`: the same map under an `RwLock`, read-locked, with an
//!   `AtomicUsize` cursor per service.
//!
//! The table has 100 services × 10 instances; every task picks
//! `service42`. Each figure is CPU time per pick: every task (or thread)
//! reads its thread's CPU clock around its loop of picks, which never
//! yields, so the loop runs on one thread. CPU time, not wall time: the
//! machine is shared, and a picker descheduled by someone else's compile
//! would count the other process's time against the pick; the time a pick
//! spends waiting for a cache line another core holds is CPU time, and is
//! counted. The tasks wait on a barrier, so they start together.
//!
//! A custom harness rather than criterion: criterion measures each case
//! in its own stretch of time, and on shared vCPUs that moves the
//! absolute figures by a third between stretches. Here each round runs
//! every contender once, in turn, and the report gives the median and the
//! range over rounds and, per round, the ratio against the baselines.
//!
//! The `weights and zones` lines are the synchronous pick, one thread, of
//! `service42` (equal weights), of `weighted` (10 instances of weights 1 to
//! 10) and, by a client with `GOSD_ZONE=a`, of `zoned` (10 instances,
//! half in zone `a`), and a `Selector` pick (`version=2`, matching half
//! of `zoned`), each against the plain pick of the same round.
//!
//! The last line is the pick polled once with a no-op waker on the main
//! thread, outside any runtime: an upper bound on the pick's own work
//! (what an `.await` could cost at best), not a figure a user sees.
//!
//! Heap allocations per pick are asserted in `tests/pick_allocations.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gosd::{Client, Config, Driver, InstanceName, MemoryDriver, Meta};

const SERVICES: usize = 100;
const INSTANCES: usize = 10;
const HOT: &str = "service42";
/// Picks per task (or thread) per round.
const PICKS: usize = 200_000;
const ROUNDS: usize = 15;
/// Workers of the multi-thread runtime: the machine's two cores.
const WORKERS: usize = 2;

/// gosd's hasher for its route table (`src/table/mod.rs`, `src/service_index.rs`):
/// FxHash, a word at a time. Copied so that the baselines hash as gosd does.
#[derive(Clone, Copy, Default)]
struct Fx;

struct FxHasher(u64);

impl BuildHasher for Fx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

#[inline(always)]
fn fx_word(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.0 = fx_word(self.0, word_at(word, 0));
        }
        if words.remainder().is_empty() {
            return;
        }
        let tail = if bytes.len() >= 8 {
            word_at(bytes, bytes.len() - 8)
        } else {
            bytes.iter().fold(0u64, |w, b| (w << 8) | u64::from(*b))
        };
        self.0 = fx_word(self.0, tail);
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.0 = fx_word(self.0, u64::from(b));
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Go gosd's round-robin made thread-safe with one mutex, made fair: no
/// allocation, gosd's hasher.
/// Service → (cursor, URLs), as the baselines keep it.
type Map<Cursor> = HashMap<Arc<str>, (Cursor, Vec<Arc<str>>), Fx>;

struct MutexBaseline(Mutex<Map<usize>>);

impl MutexBaseline {
    #[inline(never)]
    fn pick(&self, service: &str) -> Option<Arc<str>> {
        let mut map = self.0.lock().unwrap();
        let (next, urls) = map.get_mut(service)?;
        *next = (*next + 1) % urls.len();
        Some(urls[*next].clone())
    }
}

/// Readers share the lock; the cursor is an atomic.
struct RwLockBaseline(RwLock<Map<AtomicUsize>>);

impl RwLockBaseline {
    #[inline(never)]
    fn pick(&self, service: &str) -> Option<Arc<str>> {
        let map = self.0.read().unwrap();
        let (next, urls) = map.get(service)?;
        let n = next.fetch_add(1, Ordering::Relaxed);
        Some(urls[n % urls.len()].clone())
    }
}

/// With `PICK_BENCH_FIFO=1`, runs the calling thread under `SCHED_FIFO`
/// (root only): on a machine others are compiling on, two picker threads
/// otherwise rarely run at the same moment, and "2 threads at once"
/// measures no contention at all. Real-time threads preempt the others for
/// the few milliseconds of each round (the kernel still keeps 5% of each
/// second for everyone else).
fn maybe_realtime() {
    if std::env::var_os("PICK_BENCH_FIFO").is_none_or(|v| v != "1") {
        return;
    }
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is valid; 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    assert_eq!(
        rc, 0,
        "PICK_BENCH_FIFO=1: sched_setscheduler(SCHED_FIFO) failed (needs root)"
    );
}

/// This thread's CPU time.
fn cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

struct Fixture {
    client: Client,
    /// A client in zone `a`, for the zone-filtered pick.
    zoned: Client,
    mutex: MutexBaseline,
    rwlock: RwLockBaseline,
}

#[derive(Clone, Copy, PartialEq)]
enum Who {
    Global,
    Client,
    Mutex,
    RwLock,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Global => "gosd::iterate_service_route",
            Who::Client => "Client::iterate_service_route",
            Who::Mutex => "baseline Mutex<HashMap> (Fx, Arc<str>)",
            Who::RwLock => "baseline RwLock<HashMap> + AtomicUsize",
        }
    }
}

/// `PICKS` awaited picks of the hot service; returns the CPU time.
async fn task_loop(f: &Fixture, who: Who) -> Duration {
    let start = cpu_now();
    for _ in 0..PICKS {
        match who {
            Who::Global => {
                black_box(gosd::iterate_service_route(black_box(HOT)).await.unwrap());
            }
            Who::Client => {
                black_box(
                    f.client
                        .iterate_service_route(black_box(HOT))
                        .await
                        .unwrap(),
                );
            }
            Who::Mutex => {
                black_box(async { f.mutex.pick(black_box(HOT)) }.await.unwrap());
            }
            Who::RwLock => {
                black_box(async { f.rwlock.pick(black_box(HOT)) }.await.unwrap());
            }
        }
    }
    cpu_now() - start
}

/// `tasks` tasks on `rt`, started together; CPU nanoseconds per pick.
///
/// Started together by spinning, not on `tokio::sync::Barrier`: the task
/// that a barrier wakes goes to the waking worker's LIFO slot, which the
/// other worker cannot steal, so the tasks ran one after the other. Here
/// the first task on each worker spins (holding its worker) until one
/// task has arrived per worker; the loops never yield, so after that each
/// worker runs its tasks back to back, alongside the other.
fn on_runtime(rt: &tokio::runtime::Runtime, f: &Arc<Fixture>, who: Who, tasks: usize) -> f64 {
    let together = tasks.min(rt.metrics().num_workers());
    let arrived = Arc::new(AtomicUsize::new(0));
    let total: Duration = rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (f, arrived) = (f.clone(), arrived.clone());
                tokio::spawn(async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    while arrived.load(Ordering::SeqCst) < together {
                        std::hint::spin_loop();
                    }
                    task_loop(&f, who).await
                })
            })
            .collect();
        let mut total = Duration::ZERO;
        for h in handles {
            total += h.await.unwrap();
        }
        total
    });
    total.as_nanos() as f64 / (tasks * PICKS) as f64
}

/// `threads` OS threads calling the synchronous `next_route`, started
/// together; CPU nanoseconds per pick.
fn on_threads(f: &Fixture, threads: usize) -> f64 {
    let barrier = std::sync::Barrier::new(threads);
    let total: Duration = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    maybe_realtime();
                    barrier.wait();
                    let start = cpu_now();
                    for _ in 0..PICKS {
                        black_box(f.client.next_route(black_box(HOT)).unwrap());
                    }
                    cpu_now() - start
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total.as_nanos() as f64 / (threads * PICKS) as f64
}

/// `PICKS` synchronous picks of `service` on this thread; CPU ns per pick.
fn sync_picks(client: &Client, service: &str) -> f64 {
    let start = cpu_now();
    for _ in 0..PICKS {
        black_box(client.next_route(black_box(service)).unwrap());
    }
    (cpu_now() - start).as_nanos() as f64 / PICKS as f64
}

/// Polls a future that completes without waiting, with a no-op waker.
#[inline(always)]
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a pick from a loaded table must not wait"),
    }
}

fn noop_waker_pick(f: &Fixture) -> f64 {
    let start = cpu_now();
    for _ in 0..PICKS {
        black_box(ready(f.client.iterate_service_route(black_box(HOT))).unwrap());
    }
    (cpu_now() - start).as_nanos() as f64 / PICKS as f64
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let registry = MemoryDriver::new();
    let mut mutex = HashMap::with_hasher(Fx);
    let mut rwlock = HashMap::with_hasher(Fx);
    rt.block_on(async {
        for s in 0..SERVICES {
            let service = format!("service{s}");
            let mut urls: Vec<Arc<str>> = Vec::new();
            for i in 0..INSTANCES {
                let url = format!("http://{service}-host{i}:8080");
                let name = InstanceName::new(&service, &i.to_string()).unwrap();
                registry
                    .register(&name, &url, Duration::from_secs(3600))
                    .await
                    .unwrap();
                urls.push(url.into());
            }
            let service: Arc<str> = service.into();
            rwlock.insert(service.clone(), (AtomicUsize::new(0), urls.clone()));
            mutex.insert(service, (0, urls));
        }
        for i in 0..INSTANCES {
            let mut weighted = Meta::default();
            weighted.insert("weight", &(i + 1).to_string()).unwrap();
            let mut zoned = Meta::default();
            zoned
                .insert("zone", if i % 2 == 0 { "a" } else { "b" })
                .unwrap();
            zoned
                .insert("version", if i < 5 { "1" } else { "2" })
                .unwrap();
            for (service, meta) in [("weighted", weighted), ("zoned", zoned)] {
                let name = InstanceName::new(service, &i.to_string()).unwrap();
                let url = format!("http://{service}-host{i}:8080");
                registry
                    .register_with(&name, &url, &meta, Duration::from_secs(3600))
                    .await
                    .unwrap();
            }
        }
    });
    let mut config = Config::default();
    config.cron = None;
    let client = rt
        .block_on(
            Client::builder()
                .config(config.clone())
                .driver(registry.clone())
                .build(),
        )
        .unwrap();
    config.metadata.insert("zone", "a").unwrap();
    let zoned = rt
        .block_on(
            Client::builder()
                .config(config)
                .driver(registry.clone())
                .build(),
        )
        .unwrap();
    // The global client, over the same registry. `start_with` reads the
    // rest of its configuration from the environment (cron: see main).
    let me = rt
        .block_on(gosd::start_with("pick-bench", "http://bench:1", registry))
        .unwrap();
    std::mem::forget(me);
    rt.block_on(gosd::get()).unwrap();
    Fixture {
        client,
        zoned,
        mutex: MutexBaseline(Mutex::new(mutex)),
        rwlock: RwLockBaseline(RwLock::new(rwlock)),
    }
}

/// One runtime and task count, and per contender its figure in each round.
struct Case<'a> {
    label: String,
    rt: &'a tokio::runtime::Runtime,
    tasks: usize,
    figures: Vec<Vec<f64>>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    (lo, hi)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs this without `--bench`: nothing to
        // test here, and the rounds take a minute.
        return;
    }
    // No background refresh in the global client either: nothing but the
    // picks runs during the rounds.
    // SAFETY: no other thread exists yet to read the environment.
    unsafe { std::env::set_var("GOSD_CRON", "off") };
    maybe_realtime();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .on_thread_start(maybe_realtime)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = Arc::new(fixture(&multi));

    let contenders = [Who::Global, Who::Client, Who::Mutex, Who::RwLock];
    // (label, runtime, tasks) and, per round, every contender's figure.
    let mut cases: Vec<Case> = Vec::new();
    for tasks in [1, 2, 8] {
        cases.push(Case {
            label: format!("multi-thread runtime ({WORKERS} workers), {tasks} task(s)"),
            rt: &multi,
            tasks,
            figures: vec![Vec::new(); contenders.len()],
        });
    }
    for tasks in [1, 8] {
        cases.push(Case {
            label: format!("current-thread runtime, {tasks} task(s)"),
            rt: &current,
            tasks,
            figures: vec![Vec::new(); contenders.len()],
        });
    }
    let mut threads: Vec<(usize, Vec<f64>)> = [1, 2, 8].map(|n| (n, Vec::new())).into();
    let mut noop = Vec::new();
    // plain, weighted, zone-filtered, selector
    let mut kinds: [Vec<f64>; 4] = Default::default();
    let selector = gosd::Selector::new("zoned").with("version", "2");

    for round in 0..ROUNDS {
        for case in &mut cases {
            for (c, who) in contenders.iter().enumerate() {
                case.figures[c].push(on_runtime(case.rt, &f, *who, case.tasks));
            }
        }
        for (n, figures) in &mut threads {
            figures.push(on_threads(&f, *n));
        }
        noop.push(noop_waker_pick(&f));
        kinds[0].push(sync_picks(&f.client, HOT));
        kinds[1].push(sync_picks(&f.client, "weighted"));
        kinds[2].push(sync_picks(&f.zoned, "zoned"));
        kinds[3].push({
            let start = cpu_now();
            for _ in 0..PICKS {
                black_box(f.client.pick(black_box(&selector)).unwrap());
            }
            (cpu_now() - start).as_nanos() as f64 / PICKS as f64
        });
        eprint!("\rround {}/{ROUNDS}", round + 1);
    }
    eprintln!();

    if std::env::var_os("PICK_BENCH_FIFO").is_some_and(|v| v == "1") {
        println!("pickers ran under SCHED_FIFO (PICK_BENCH_FIFO=1)");
    }
    println!(
        "CPU ns per pick of one hot service ({SERVICES} services × {INSTANCES} instances), \
         median [min–max] over {ROUNDS} rounds of {PICKS} picks per task; \
         ratio: the baseline's time / gosd's, median of per-round ratios"
    );
    let gosd_single = median(cases[0].figures[1].clone());
    for Case { label, figures, .. } in &cases {
        println!("{label}:");
        for (c, who) in contenders.iter().enumerate() {
            let (lo, hi) = range(&figures[c]);
            print!(
                "  {:<42} {:>6.1} ns [{lo:.1}–{hi:.1}]",
                who.name(),
                median(figures[c].clone())
            );
            if matches!(who, Who::Global | Who::Client) {
                let ratio = |b: usize| {
                    median(
                        figures[b]
                            .iter()
                            .zip(&figures[c])
                            .map(|(b, g)| b / g)
                            .collect(),
                    )
                };
                print!(
                    "  {:.2}x mutex, {:.2}x rwlock, {:.2}x the 1-task client pick",
                    ratio(2),
                    ratio(3),
                    median(figures[c].clone()) / gosd_single
                );
            }
            println!();
        }
    }
    println!("OS threads, Client::next_route (sync):");
    let single = median(threads[0].1.clone());
    for (n, figures) in &threads {
        let (lo, hi) = range(figures);
        println!(
            "  {n} thread(s) {:>6.1} ns [{lo:.1}–{hi:.1}]  {:.2}x 1 thread",
            median(figures.clone()),
            median(figures.clone()) / single
        );
    }
    println!("weights and zones, Client::next_route (sync), 1 thread:");
    for (k, label) in [
        "plain (equal weights)",
        "weighted (1..10)",
        "zone-filtered",
        "Selector (version=2)",
    ]
    .iter()
    .enumerate()
    {
        let (lo, hi) = range(&kinds[k]);
        let ratio = median(kinds[k].iter().zip(&kinds[0]).map(|(x, p)| x / p).collect());
        println!(
            "  {label:<24} {:>6.1} ns [{lo:.1}–{hi:.1}]  {ratio:.2}x plain",
            median(kinds[k].clone())
        );
    }
    let (lo, hi) = range(&noop);
    println!(
        "upper bound on the pick's own work, not a user's figure: \
         Client::iterate_service_route polled once with a no-op waker, 1 thread: \
         {:.1} ns [{lo:.1}–{hi:.1}]",
        median(noop)
    );
}
