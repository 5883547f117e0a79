//! A registry that stops serving for longer than a TTL (here: held with
//! `MemoryDriver::stall`, as a stopped backend would be) does not evict
//! the instances whose renewals queued up behind the stall.

use std::sync::Arc;
use std::time::Duration;

use gosd_driver::{Driver, Event, InstanceName, Renewal};
use gosd_memory::MemoryDriver;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stall_of_three_ttls_evicts_nobody() {
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

    let ttl = Duration::from_millis(300);
    let name = InstanceName::new("svc", "1").unwrap();
    assert!(d.register(&name, "http://a", ttl).await.unwrap());
    assert!(matches!(rx.recv().await, Some(Event::Put { .. })));
    // A heartbeat every quarter TTL, and a reader that reaps.
    let (renewed_tx, mut renewed) = mpsc::unbounded_channel();
    let heartbeat = tokio::spawn({
        let (d, name) = (d.clone(), name.clone());
        async move {
            loop {
                tokio::time::sleep(ttl / 4).await;
                let r = d.renew(&name, "http://a", ttl).await;
                let _ = renewed_tx.send(r.map_err(|e| e.to_string()));
            }
        }
    });
    let reader = tokio::spawn({
        let d = d.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = d.fetch(None).await;
            }
        }
    });
    for _ in 0..2 {
        assert_eq!(renewed.recv().await, Some(Ok(Renewal::Renewed)));
    }
    for _ in 0..3 {
        let held = d.clone();
        tokio::task::spawn_blocking(move || held.stall(ttl * 3))
            .await
            .unwrap();
        // The renewal that waited out the stall, and the next, renew:
        // the entry was not reaped and restored.
        assert_eq!(renewed.recv().await, Some(Ok(Renewal::Renewed)));
        assert_eq!(renewed.recv().await, Some(Ok(Renewal::Renewed)));
    }
    heartbeat.abort();
    reader.abort();
    watcher.abort();
    let pushed: Vec<Event> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(
        pushed.is_empty(),
        "a live instance left the registry: {pushed:?}"
    );
}
