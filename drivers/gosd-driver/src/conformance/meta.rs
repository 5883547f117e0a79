//! Status and metadata: stored beside the entry, pushed with it, gone
//! with it, and absent (up, nothing else) for entries written by hand.

use super::*;
use crate::{Meta, Status};

fn meta_of(s: &Snapshot, field: &str) -> Option<Meta> {
    s.entries
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.meta.clone())
}

fn sample(status: Status) -> Meta {
    let mut m = Meta::default();
    m.status = status;
    m.insert("version", "2.1.0").expect("valid pair");
    m.insert("zone", "eu-1").expect("valid pair");
    m
}

/// What `register_with` stores is what every read returns; an entry
/// written by Go gosd, or registered without metadata, reads as up with
/// no pairs; and the URL itself is stored as it always was.
pub async fn metadata_is_stored_beside_the_entry<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let meta = sample(Status::Draining);
    assert!(
        d.register_with(&name("svc-1"), "http://a", &meta, TTL)
            .await
            .unwrap()
    );
    d.register(&name("svc-2"), "http://b", TTL).await.unwrap();
    h.write_raw("go-20160315122936.17256541", "http://go").await;
    let s = snap(&h.driver()).await;
    assert_eq!(meta_of(&s, "svc-1"), Some(meta), "metadata: stored");
    assert_eq!(url_of(&s, "svc-1"), Some("http://a"), "metadata: URL as is");
    assert_eq!(
        meta_of(&s, "svc-2"),
        Some(Meta::default()),
        "metadata: none given"
    );
    assert_eq!(
        meta_of(&s, "go-20160315122936.17256541"),
        Some(Meta::default()),
        "metadata: a Go gosd entry is up with none"
    );
    assert_eq!(s.entries.len(), 3, "metadata: no extra entries");
}

/// A renewal with other metadata (a status change) writes it, moves the
/// revision and is pushed as a put of the whole entry; a renewal with the
/// same metadata is no change.
pub async fn a_status_change_is_pushed<H: Harness>(h: &H) {
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
            .expect("status: no event within 10 s")
            .expect("status: stream ended")
    };
    assert_eq!(next(&mut rx).await, Event::Subscribed);
    let n = name("svc-1");
    let up = sample(Status::Up);
    d.register_with(&n, "http://a", &up, TTL).await.unwrap();
    match next(&mut rx).await {
        Event::Put { entry, .. } => assert_eq!(entry.meta, up, "status: put carries it"),
        other => panic!("status: expected put, got {other:?}"),
    }
    let v = snap(&d).await.version;
    d.renew_with(&n, "http://a", &up, TTL).await.unwrap();
    assert_eq!(
        snap(&d).await.version,
        v,
        "status: a renewal with the same metadata is no change"
    );
    let down = sample(Status::Down);
    assert_eq!(
        d.renew_with(&n, "http://a", &down, TTL).await.unwrap(),
        crate::Renewal::Renewed
    );
    match next(&mut rx).await {
        Event::Put {
            entry,
            version,
            since,
            ..
        } => {
            assert_eq!(
                (entry.field.as_str(), entry.url.as_str()),
                ("svc-1", "http://a")
            );
            assert_eq!(entry.meta.status, Status::Down, "status: pushed");
            assert_eq!(entry.meta, down);
            assert!(since <= v.revision && version.revision > v.revision);
            assert_eq!(version.entries, v.entries, "status: no entry added");
            assert_eq!(version, snap(&d).await.version);
        }
        other => panic!("status: expected put, got {other:?}"),
    }
    assert_eq!(meta_of(&snap(&d).await, "svc-1"), Some(down.clone()));
    match d.fetch(Some(v)).await.unwrap() {
        Fetched::Changed(s) => assert_eq!(meta_of(&s, "svc-1"), Some(down)),
        Fetched::Changes { events, .. } => assert!(
            matches!(&events[..], [Event::Put { entry, .. }] if entry.meta == down),
            "status: fetched as one put: {events:?}"
        ),
        other => panic!("status: the change must be fetched, got {other:?}"),
    }
    // Back to nothing at all: reads as an entry without metadata.
    d.renew_with(&n, "http://a", &Meta::default(), TTL)
        .await
        .unwrap();
    match next(&mut rx).await {
        Event::Put { entry, .. } => assert_eq!(entry.meta, Meta::default()),
        other => panic!("status: expected put, got {other:?}"),
    }
    assert_eq!(meta_of(&snap(&d).await, "svc-1"), Some(Meta::default()));
    task.abort();
}

/// Metadata goes with its entry: deregistered, or its lease reaped, the
/// name registered again without metadata has none.
pub async fn metadata_goes_with_its_entry<H: Harness>(h: &H) {
    h.wipe().await;
    let d = h.driver();
    let n = name("svc-1");
    let meta = sample(Status::Draining);
    d.register_with(&n, "http://a", &meta, TTL).await.unwrap();
    assert!(d.deregister(&n, "http://a").await.unwrap());
    assert!(d.register(&n, "http://a", TTL).await.unwrap());
    assert_eq!(
        meta_of(&snap(&d).await, "svc-1"),
        Some(Meta::default()),
        "metadata: gone with a deregistration"
    );
    let short = name("svc-2");
    d.register_with(&short, "http://b", &meta, Duration::from_millis(100))
        .await
        .unwrap();
    snap_until(&d, EXPIRY_LIMIT, "metadata: lease reaped", |s| {
        url_of(s, "svc-2").is_none()
    })
    .await;
    assert!(d.register(&short, "http://b", TTL).await.unwrap());
    assert_eq!(
        meta_of(&snap(&d).await, "svc-2"),
        Some(Meta::default()),
        "metadata: gone with the lease"
    );
}
