//! Expired leases leave the in-process registry one change at a time, so
//! watchers apply them as they apply deregistrations.

use std::sync::Arc;
use std::time::Duration;

use gosd_driver::{Driver, Event, InstanceName};
use gosd_memory::MemoryDriver;
use tokio::sync::mpsc;

#[tokio::test]
async fn each_expired_lease_is_pushed_as_a_removal_of_its_own() {
    let d = MemoryDriver::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = Arc::new(move |e: Event| {
        let _ = tx.send(e);
    });
    let watcher = tokio::spawn({
        let d = d.clone();
        async move { d.watch(sink).await }
    });
    assert_eq!(rx.recv().await, Some(Event::Subscribed));

    let name = |id: &str| InstanceName::new("svc", id).unwrap();
    d.register(&name("0"), "http://0", Duration::from_secs(60))
        .await
        .unwrap();
    // A lease of zero has run out at the next call, which reaps it.
    for id in ["1", "2"] {
        d.register(&name(id), "http://n", Duration::ZERO)
            .await
            .unwrap();
    }
    let now = d.snapshot().await.unwrap().version;

    let mut removed = Vec::new();
    while removed.len() < 2 {
        match rx.recv().await {
            Some(Event::Removed {
                field,
                version,
                since,
            }) => removed.push((field, version.revision - since, version.entries)),
            Some(Event::Put { .. }) => {}
            other => panic!("expected puts and removals, got {other:?}"),
        }
    }
    // svc-1 is reaped by svc-2's registration, svc-2 by the snapshot.
    let removed: Vec<_> = removed
        .iter()
        .map(|(field, step, entries)| (field.as_str(), *step, *entries))
        .collect();
    assert_eq!(removed, [("svc-1", 1, 1), ("svc-2", 1, 1)]);
    assert_eq!(now.entries, 1);
    watcher.abort();
}
