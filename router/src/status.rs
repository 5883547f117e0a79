//! What the router shows about itself: the status page, `/-/services`
//! (every instance with its lease and this router's counters, as JSON), and
//! `/-/events`, the page's live feed.
//!
//! The feed is gosd's change stream ([`gosd::Client::watch_all_services`])
//! as server-sent events, so that the page shows an instance the moment the
//! router's table has it, and never polls the registry for that:
//! - `insert` / `remove`: `{"service", "name", "url"}` / `{"service", "name"}`,
//!   first an `insert` for each instance there is, then one per change;
//! - `stats`: the `/-/services` document, once a second, for the counters
//!   and leases (which change with every request, not with the table).
//!
//! A feed ends when the browser goes away, when the client does, or when
//! the router shuts down: an open page must not hold up a graceful drain.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::{mpsc, watch};

use crate::ProxyBody;
use crate::health::{Health, Stats};

/// How often the feed sends the counters.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The status page: one HTML file with its CSS and script inline, no build
/// step, no external assets. It follows `/-/events`.
pub(crate) fn page() -> Response<ProxyBody> {
    const PAGE: &str = include_str!("status.html");
    crate::made_here(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(PAGE.as_bytes()),
    )
}

/// Every service, its instances, their leases and this router's counters.
/// A failed lease read leaves `lease_ms` null rather than failing the page.
pub(crate) async fn services(client: &gosd::Client, health: &Health) -> serde_json::Value {
    let leases = client.leases().await.unwrap_or_default();
    let known = health.known();
    let none = Stats::default();
    // Names sort as `a-1` < `a-b-1` < `a-2`: group by service explicitly.
    let mut services: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        Default::default();
    for instance in client.instances() {
        // An instance the counters have not caught up with has none yet.
        let s = known.get(&instance.url).map_or(&none, |s| &**s);
        services
            .entry(instance.service)
            .or_default()
            .push(serde_json::json!({
                "name": instance.name,
                "url": instance.url.as_str(),
                "status": instance.meta.status.as_str(),
                "meta": instance.meta.pairs().collect::<std::collections::BTreeMap<_, _>>(),
                "lease_ms": leases.get(&instance.name).map(|d| d.as_millis() as u64),
                "requests": s.requests.load(Ordering::Relaxed),
                "errors": s.errors.load(Ordering::Relaxed),
                "ejected_for_ms": client.ejected_for(&instance.url).map(|d| d.as_millis() as u64),
            }));
    }
    let services: Vec<serde_json::Value> = services
        .into_iter()
        .map(|(name, instances)| serde_json::json!({ "name": name, "instances": instances }))
        .collect();
    serde_json::json!({ "services": services })
}

/// `/-/events`: a response that streams the feed until one of its ends
/// (see the module docs). `closing` turns true when the router shuts down.
pub(crate) fn events(
    client: gosd::Client,
    health: Arc<Health>,
    closing: watch::Receiver<bool>,
) -> Response<ProxyBody> {
    // A few events of slack; beyond that the task waits for the browser,
    // and the change stream, which keeps only the net difference, absorbs
    // whatever happens meanwhile.
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(feed(client, health, closing, tx));
    let body = Feed(rx).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn feed(
    client: gosd::Client,
    health: Arc<Health>,
    mut closing: watch::Receiver<bool>,
    tx: mpsc::Sender<Bytes>,
) {
    // Reconnect a second after a drop, rather than the browser's default 3.
    if tx
        .send(Bytes::from_static(b"retry: 1000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut changes = client.watch_all_services();
    let mut stats = tokio::time::interval(STATS_EVERY);
    // Also done when the router is dropped without a shutdown.
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let mut closed = std::pin::pin!(closed);
    loop {
        let event = tokio::select! {
            change = changes.next() => match change {
                Some(change) => change_event(&change),
                None => return,
            },
            _ = stats.tick() => Some(event("stats", &services(&client, &health).await)),
            () = &mut closed => return,
            () = tx.closed() => return,
        };
        let Some(event) = event else { continue };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// `None` for a kind of change this router does not know.
fn change_event(change: &gosd::Change) -> Option<Bytes> {
    match change {
        gosd::Change::Insert(name, route) => Some(event(
            "insert",
            &serde_json::json!({ "service": name.service(), "name": name.as_str(), "url": route.as_str() }),
        )),
        gosd::Change::Remove(name) => Some(event(
            "remove",
            &serde_json::json!({ "service": name.service(), "name": name.as_str() }),
        )),
        _ => None,
    }
}

/// One server-sent event. JSON has no raw newline, so one `data:` line
/// holds it.
fn event(kind: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The response body: whatever the feed task sends, until it stops.
struct Feed(mpsc::Receiver<Bytes>);

impl Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|b| Ok(Frame::data(b))))
    }
}
