//! An instance's life: registered, renewed, leased, reaped, deregistered,
//! registered again.

use crate::Renewal;

use super::*;

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
