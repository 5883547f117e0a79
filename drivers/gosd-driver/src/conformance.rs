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

use crate::{Driver, DriverError, Event, Fetched, InstanceName, Renewal, Snapshot};

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

/// A snapshot has every entry, leased or not, and (if the backend needs
/// clients to come back at expiry) the time left on the earliest lease;
/// lease-less entries alone have no next expiry.
pub async fn snapshot_shows_leased_and_leaseless_entries<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    h.write_raw("go-20160315122936.17256541", "http://go").await;
    assert_eq!(
        snap(&d).await.next_expiry,
        None,
        "snapshot: no lease, no expiry"
    );
    d.register(&name("a-1"), "http://a1", TTL).await.unwrap();
    d.register(&name("a-2"), "http://a2", TTL * 2)
        .await
        .unwrap();
    d.register(&name("b-1"), "http://b1", TTL * 2)
        .await
        .unwrap();
    let s = h.driver().snapshot().await.unwrap();
    assert_eq!(s.entries.len(), 4, "snapshot: {s:?}");
    assert_lease::<H>(s.next_expiry, TTL, "snapshot: earliest lease");
}

/// `leases` gives each leased entry its time left; lease-less ones are absent.
pub async fn leases_report_time_left_per_entry<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    d.register(&name("a-1"), "http://a1", TTL).await.unwrap();
    d.register(&name("a-2"), "http://a2", TTL * 2)
        .await
        .unwrap();
    h.write_raw("go-20160315122936.1", "http://go").await;
    let mut leases = d.leases().await.unwrap();
    leases.sort();
    assert_eq!(leases.len(), 2, "leases: {leases:?}");
    assert_eq!((leases[0].0.as_str(), leases[1].0.as_str()), ("a-1", "a-2"));
    assert!(
        leases[0].1 <= TTL && leases[0].1 > TTL / 2,
        "leases: {leases:?}"
    );
    assert!(
        leases[1].1 <= TTL * 2 && leases[1].1 > TTL,
        "leases: {leases:?}"
    );
}

/// Deregistering removes the entry once, and never someone else's.
pub async fn deregister_removes_only_own_entry<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    d.register(&n, "http://a", TTL).await.unwrap();
    assert!(
        !d.deregister(&n, "http://other").await.unwrap(),
        "deregister: wrong URL must not remove"
    );
    assert_eq!(url_of(&snap(&d).await, "svc-1"), Some("http://a"));
    assert!(
        d.deregister(&n, "http://a").await.unwrap(),
        "deregister: own entry"
    );
    assert!(
        !d.deregister(&n, "http://a").await.unwrap(),
        "deregister: second time is a no-op"
    );
    assert!(snap(&d).await.entries.is_empty(), "deregister: gone");
}

/// A lease that runs out takes its entry with it; lease-less entries stay.
pub async fn expired_lease_is_reaped<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let ttl = Duration::from_millis(300);
    d.register(&name("svc-1"), "http://a", ttl).await.unwrap();
    h.write_raw("svc-2", "http://static").await;
    assert_eq!(url_of(&snap(&d).await, "svc-1"), Some("http://a"));
    // Nobody renews or deregisters: the lease running out is the event.
    let s = snap_until(&d, EXPIRY_LIMIT, "expired lease must be reaped", |s| {
        url_of(s, "svc-1").is_none()
    })
    .await;
    assert_eq!(
        url_of(&s, "svc-2"),
        Some("http://static"),
        "lease-less entry must stay"
    );
}

/// Renewing extends a lease, rewrites an entry the backend lost, and refuses
/// a name that now belongs to another URL.
pub async fn renew_restores_after_data_loss<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    d.register(&n, "http://a", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        d.renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Renewed
    );
    let leases = d.leases().await.unwrap();
    assert!(
        matches!(leases.as_slice(), [(f, left)] if f == "svc-1" && *left > Duration::from_secs(5)),
        "renew must extend the lease to the new TTL: {leases:?}"
    );
    h.wipe().await;
    assert_eq!(
        d.renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Restored
    );
    assert_eq!(
        url_of(&snap(&d).await, "svc-1"),
        Some("http://a"),
        "restored"
    );
    h.wipe().await;
    h.write_raw("svc-1", "http://intruder").await;
    assert_eq!(
        d.renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Conflict
    );
    assert_eq!(
        url_of(&snap(&d).await, "svc-1"),
        Some("http://intruder"),
        "conflict writes nothing"
    );
}

/// A renewal that arrives after deregistration (it was in flight) must not
/// bring the instance back.
pub async fn renew_after_deregister_stays_gone<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    d.register(&n, "http://a", TTL).await.unwrap();
    assert!(d.deregister(&n, "http://a").await.unwrap());
    assert_eq!(
        d.renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Gone,
        "late renewal"
    );
    assert!(
        snap(&d).await.entries.is_empty(),
        "a deregistered instance stays gone"
    );
}

/// A name deregistered and then registered again is alive: its renewals
/// succeed, whatever trace of the first life the driver keeps.
pub async fn a_name_registered_again_renews<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    d.register(&n, "http://a", TTL).await.unwrap();
    assert!(d.deregister(&n, "http://a").await.unwrap());
    assert!(
        d.register(&n, "http://a", TTL).await.unwrap(),
        "registered again"
    );
    assert_eq!(
        h.driver().renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Renewed,
        "renewed from another handle"
    );
    assert_eq!(
        d.renew(&n, "http://a", TTL).await.unwrap(),
        Renewal::Renewed,
        "renewed by its own handle"
    );
    assert_eq!(url_of(&snap(&d).await, "svc-1"), Some("http://a"));
}

/// The revision moves on every change a driver makes, and only then.
pub async fn revision_tracks_changes_only<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    let r0 = snap(&d).await.version.revision;
    d.register(&n, "http://a", TTL).await.unwrap();
    let r1 = snap(&d).await.version.revision;
    assert_ne!(r0, r1, "revision: register");
    assert_eq!(
        snap(&d).await.version.revision,
        r1,
        "revision: a read is no change"
    );
    d.renew(&n, "http://a", TTL).await.unwrap();
    assert_eq!(
        snap(&d).await.version.revision,
        r1,
        "revision: a renewal is no change"
    );
    d.deregister(&n, "http://a").await.unwrap();
    let r2 = snap(&d).await.version.revision;
    assert_ne!(r1, r2, "revision: deregister");
    d.register(&name("svc-2"), "http://b", Duration::from_millis(100))
        .await
        .unwrap();
    let r3 = snap(&d).await.version.revision;
    snap_until(&d, EXPIRY_LIMIT, "revision: reaping is a change", |s| {
        s.version.revision != r3
    })
    .await;
}

/// `fetch` with the current version says "unchanged" and when the next
/// lease runs out; any change, including a write by Go gosd (which does not
/// move the revision), brings the whole table.
pub async fn fetch_answers_unchanged_without_the_table<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    d.register(&name("svc-1"), "http://a", TTL).await.unwrap();
    let v = snap(&d).await.version;
    match d.fetch(Some(v)).await.unwrap() {
        Fetched::Unchanged { next_expiry } => assert_lease::<H>(next_expiry, TTL, "fetch"),
        other => panic!("fetch: expected unchanged, got {other:?}"),
    }
    h.write_raw("go-20160315122936.1", "http://go").await;
    match d.fetch(Some(v)).await.unwrap() {
        Fetched::Changed(s) => assert_eq!(s.entries.len(), 2, "fetch: Go write seen"),
        other => panic!("fetch: a Go write must count as a change, got {other:?}"),
    }
    let v = snap(&d).await.version;
    d.deregister(&name("svc-1"), "http://a").await.unwrap();
    let now = snap(&d).await.version;
    match d.fetch(Some(v)).await.unwrap() {
        Fetched::Changed(s) => assert_eq!(s.entries.len(), 1, "fetch: deregister seen"),
        Fetched::Changes {
            events, version, ..
        } => {
            assert_eq!(version, now, "fetch: the version after the changes");
            assert!(
                matches!(&events[..], [Event::Removed { field, version, since }]
                    if field == "svc-1" && *version == now && *since <= v.revision),
                "fetch: deregister seen as one removal after {v:?}, got {events:?}"
            );
        }
        other => panic!("fetch: deregister not seen: {other:?}"),
    }
}

/// A backend that lost its data reports a new generation.
pub async fn generation_changes_when_the_backend_loses_its_data<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    d.register(&name("svc-1"), "http://a", TTL).await.unwrap();
    let before = snap(&d).await.version;
    assert_eq!(
        snap(&d).await.version.generation,
        before.generation,
        "generation is stable"
    );
    h.wipe().await;
    let after = snap(&d).await.version;
    assert_ne!(
        after.generation, before.generation,
        "generation after data loss"
    );
}

/// `watch` starts with `Subscribed`, then pushes each change with the
/// version right after it, in order, each vouching (`since`) for the
/// revision it follows.
pub async fn watch_pushes_every_change_in_order<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = h.driver();
    let task = tokio::spawn(async move {
        let sink: crate::EventSink = std::sync::Arc::new(move |e| {
            let _ = tx.send(e);
        });
        watcher.watch(sink).await
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>| {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watch: no event within 10 s")
            .expect("watch: stream ended")
    };
    assert_eq!(next(&mut rx).await, Event::Subscribed);
    let v0 = snap(&d).await.version;
    let n = name("svc-1");
    d.register(&n, "http://a", TTL).await.unwrap();
    let put_revision = match next(&mut rx).await {
        Event::Put {
            version,
            since,
            entry,
            lease,
        } => {
            assert!(
                since <= v0.revision && v0.revision < version.revision,
                "watch: put follows {since}, is at {}, we stood at {}",
                version.revision,
                v0.revision
            );
            assert_eq!(version.entries, v0.entries + 1, "watch: put count");
            assert_eq!(
                version,
                snap(&d).await.version,
                "watch: put carries the version after it"
            );
            assert_eq!(
                (entry.field.as_str(), entry.url.as_str()),
                ("svc-1", "http://a")
            );
            assert_lease::<H>(lease, TTL, "watch: put");
            version.revision
        }
        other => panic!("watch: expected put, got {other:?}"),
    };
    d.deregister(&n, "http://a").await.unwrap();
    match next(&mut rx).await {
        Event::Removed {
            version,
            since,
            field,
        } => {
            assert_eq!(field, "svc-1");
            assert_eq!(since, put_revision, "watch: removal follows the put");
            assert!(version.revision > put_revision, "watch: removed version");
            assert_eq!(version.entries, v0.entries, "watch: removed count");
        }
        other => panic!("watch: expected removed, got {other:?}"),
    }
    d.register(&name("svc-2"), "http://b", Duration::from_millis(100))
        .await
        .unwrap();
    assert!(matches!(next(&mut rx).await, Event::Put { .. }));
    tokio::time::sleep(Duration::from_millis(150)).await; // the lease runs out
    snap(&d).await; // a read reaps, where reaping is lazy (Redis)
    match next(&mut rx).await {
        Event::Changed { .. } => {}
        Event::Removed { field, .. } if field == "svc-2" => {}
        other => panic!("watch: reaping must be pushed, got {other:?}"),
    }
    task.abort();
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
