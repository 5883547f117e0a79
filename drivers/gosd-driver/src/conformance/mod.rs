//! The conformance suite: one set of checks that every driver passes
//! against its real backend.
//!
//! A driver crate implements [`Harness`] for its backend (stating, in
//! [`Harness::LEASES`], whether it reports leases) and calls [`run`]
//! from an integration test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let backend = MyBackend::spawn().await;
//!     gosd_driver::conformance::run(&backend).await;
//! }
//! ```
//!
//! Each check starts by wiping the backend, so they run one after another on
//! one backend. A check panics with its own name on failure. A check a
//! driver cannot pass is a finding about the trait: fix the trait, don't
//! skip the check.

use std::future::Future;
use std::time::Duration;

use crate::{Driver, DriverError, Event, Fetched, InstanceName, Snapshot};

/// What the suite needs to do to a backend besides driving it.
pub trait Harness: Sync {
    /// The driver under test.
    type Driver: Driver;

    /// A new driver handle on the shared backend, as a second process
    /// would have.
    fn driver(&self) -> Self::Driver;

    /// A driver whose backend is down (e.g. a free port with no server).
    fn unreachable(&self) -> Self::Driver;

    /// Loses every entry, as a backend restarted without persistence would.
    fn wipe(&self) -> impl Future<Output = ()> + Send;

    /// Writes `field → value` with no lease, as Go gosd or a person would.
    fn write_raw(&self, field: &str, value: &str) -> impl Future<Output = ()> + Send;

    /// Whether the driver reports the time left on leases
    /// ([`Snapshot::next_expiry`], [`Fetched::Unchanged`]'s, [`Event::Put`]'s
    /// `lease`). Each harness states it: the lease checks hold a driver to
    /// what it states, in both directions.
    const LEASES: LeaseReporting;
}

/// What a driver tells its clients about leases, as its [`Harness`] states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseReporting {
    /// The driver reports each lease's time left, and clients come back
    /// when the earliest runs out (Redis reaps lazily, on a read; the
    /// in-process registry likewise). A lease the driver should report
    /// and does not fails the check.
    Reported,
    /// The documented exemption: the backend expires leases itself and the
    /// driver pushes each removal (etcd), so there is nothing for a client
    /// to come back for and the driver reports no lease. Reporting one
    /// anyway fails the check, as it would make clients poll for nothing.
    ExpiredByTheBackend,
}

/// Runs every check, in order.
pub async fn run<H: Harness>(h: &H) {
    register_is_unique(h).await;
    snapshot_shows_leased_and_leaseless_entries(h).await;
    leases_report_time_left_per_entry(h).await;
    deregister_removes_only_own_entry(h).await;
    expired_lease_is_reaped(h).await;
    renew_restores_after_data_loss(h).await;
    renew_after_deregister_stays_gone(h).await;
    a_name_registered_again_renews(h).await;
    revision_tracks_changes_only(h).await;
    fetch_answers_unchanged_without_the_table(h).await;
    generation_changes_when_the_backend_loses_its_data(h).await;
    watch_pushes_every_change_in_order(h).await;
    concurrent_registrations_of_one_name(h).await;
    garbage_is_returned_not_fatal(h).await;
    remove_stale_spares_live_leases(h).await;
    unreachable_backend_fails_fast(h).await;
    deregister_works_from_a_fresh_runtime(h).await;
    metadata_is_stored_beside_the_entry(h).await;
    a_status_change_is_pushed(h).await;
    metadata_goes_with_its_entry(h).await;
}

const TTL: Duration = Duration::from_secs(30);

fn name(s: &str) -> InstanceName {
    InstanceName::parse(s).expect("test names are valid")
}

async fn snap<D: Driver>(d: &D) -> Snapshot {
    d.snapshot().await.expect("snapshot")
}

/// Reads snapshots until `done` holds, for at most `limit`: for changes the
/// backend makes on its own clock (a lease running out). Backends that reap
/// lazily (Redis) do it on the read itself; etcd's lessor does it within
/// about half a second of the expiry, and its leases are whole seconds.
async fn snap_until<D: Driver>(
    d: &D,
    limit: Duration,
    what: &str,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = snap(d).await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How long a short lease may take to go: etcd rounds leases up to whole
/// seconds and checks for expiry twice a second.
const EXPIRY_LIMIT: Duration = Duration::from_secs(5);

/// A driver that reports leases reports this one, within (ttl/2, ttl]; one
/// whose backend expires leases itself ([`LeaseReporting::ExpiredByTheBackend`])
/// reports none.
fn assert_lease<H: Harness>(left: Option<Duration>, ttl: Duration, what: &str) {
    match (H::LEASES, left) {
        (LeaseReporting::Reported, Some(left)) => assert!(
            left <= ttl && left > ttl / 2,
            "{what}: lease {left:?} for TTL {ttl:?}"
        ),
        (LeaseReporting::Reported, None) => {
            panic!("{what}: no lease reported, for an entry on a {ttl:?} lease")
        }
        (LeaseReporting::ExpiredByTheBackend, None) => {}
        (LeaseReporting::ExpiredByTheBackend, Some(left)) => panic!(
            "{what}: lease {left:?} reported by a driver whose backend expires leases itself"
        ),
    }
}

fn url_of<'a>(s: &'a Snapshot, field: &str) -> Option<&'a str> {
    s.entries
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.url.as_str())
}

mod changes;
mod lifecycle;
mod meta;

pub use changes::*;
pub use lifecycle::*;
pub use meta::*;

/// A second registration of a taken name is refused and changes nothing.
pub async fn register_is_unique<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    assert!(
        d.register(&n, "http://a:1", TTL).await.unwrap(),
        "register_is_unique: first"
    );
    assert!(
        !d.register(&n, "http://b:2", TTL).await.unwrap(),
        "register_is_unique: second must be refused"
    );
    let s = snap(&d).await;
    assert_eq!(
        url_of(&s, "svc-1"),
        Some("http://a:1"),
        "register_is_unique: first URL kept"
    );
}

/// Of many concurrent registrations of one name, exactly one wins.
pub async fn concurrent_registrations_of_one_name<H: Harness>(h: &H) {
    h.wipe().await;
    let n = name("svc-same");
    let tries = (0..16).map(|i| {
        let d = h.driver();
        let n = n.clone();
        async move { d.register(&n, &format!("http://h{i}"), TTL).await }
    });
    let mut wins = 0;
    for r in join_all(tries).await {
        wins += usize::from(r.expect("concurrent register"));
    }
    assert_eq!(wins, 1, "exactly one concurrent registration wins");
    assert_eq!(snap(&h.driver()).await.entries.len(), 1);
}

/// Garbage in the registry is handed over raw, never an error or a panic:
/// the facade decides what to skip.
pub async fn garbage_is_returned_not_fatal<H: Harness>(h: &H) {
    h.wipe().await;
    h.write_raw("nodash", "http://x").await;
    h.write_raw("svc-1", "not a url").await;
    h.write_raw("", "").await;
    h.write_raw("svc-2", "http://ok").await;
    let s = snap(&h.driver()).await;
    assert_eq!(
        url_of(&s, "svc-2"),
        Some("http://ok"),
        "garbage: good entry survives"
    );
    assert_eq!(
        url_of(&s, "nodash"),
        Some("http://x"),
        "garbage: handed over raw"
    );
}

/// `remove_stale` removes lease-less and expired entries with that URL only.
pub async fn remove_stale_spares_live_leases<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    d.register(&name("svc-1"), "http://dup", TTL).await.unwrap();
    h.write_raw("svc-2", "http://dup").await;
    h.write_raw("svc-3", "http://other").await;
    assert_eq!(
        d.remove_stale("http://dup").await.unwrap(),
        1,
        "remove_stale: only the lease-less one"
    );
    let s = snap(&d).await;
    assert_eq!(
        url_of(&s, "svc-1"),
        Some("http://dup"),
        "remove_stale: live lease stays"
    );
    assert_eq!(url_of(&s, "svc-2"), None);
    assert_eq!(url_of(&s, "svc-3"), Some("http://other"));
}

/// A driver whose backend is down fails with a transient error, promptly.
pub async fn unreachable_backend_fails_fast<H: Harness>(h: &H) {
    let d = h.unreachable();
    let r = tokio::time::timeout(Duration::from_secs(20), d.snapshot()).await;
    match r {
        Err(_) => panic!("unreachable backend: snapshot hung"),
        Ok(Ok(_)) => panic!("unreachable backend: snapshot succeeded"),
        Ok(Err(e @ DriverError::Unavailable { .. })) => {
            assert!(
                e.to_string().contains(&d.backend()),
                "error names the backend: {e}"
            )
        }
        Ok(Err(e)) => panic!("unreachable backend: wrong error {e:?}"),
    }
    let n = name("svc-1");
    let r = tokio::time::timeout(Duration::from_secs(20), d.register(&n, "http://a", TTL)).await;
    assert!(
        matches!(r, Ok(Err(DriverError::Unavailable { .. }))),
        "register: {r:?}"
    );
}

/// Deregistration completes on a fresh runtime on another thread while the
/// runtime that made the driver is blocked, as it is in `Drop`.
pub async fn deregister_works_from_a_fresh_runtime<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    d.register(&n, "http://a", TTL).await.unwrap();
    snap(&d).await; // warm up whatever connection the driver keeps
    let removed = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), d.deregister(&n, "http://a")).await
            })
        })
        .join()
        .expect("thread")
    });
    assert!(
        matches!(removed, Ok(Ok(true))),
        "deregister from a fresh runtime: {removed:?}"
    );
    assert!(snap(&d).await.entries.is_empty());
}

/// Polls every future to completion concurrently, keeping order.
async fn join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
