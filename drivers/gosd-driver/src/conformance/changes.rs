//! How clients learn of changes: the revision, `fetch`, the generation,
//! and `watch`.

use super::*;

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
