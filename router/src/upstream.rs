//! Connections to instances, driven by the task that serves the request.
//!
//! hyper's pooled client runs each upstream connection in a task of its
//! own and hands requests, responses and body chunks to it over channels:
//! every proxied request then wakes a second task, often on the other
//! worker thread. Here the connection is polled by whoever holds it: the
//! request's own future while it waits for the response head, then the
//! response body as the downstream connection pulls it. A request costs no
//! wake-up beyond its own sockets', as in nginx's event loop.
//!
//! - Idle connections wait in a pool per worker thread, so that checking
//!   one out or in takes no lock. A pool keeps at most [`MAX_IDLE`]
//!   connections per instance, and drops those idle for longer than
//!   [`IDLE_TIMEOUT`] (a sweep every [`SWEEP_EVERY`]), so instances that
//!   came and went leave nothing behind.
//! - A pooled connection is polled once before reuse, so that one the
//!   instance closed meanwhile is noticed and dropped. A request that a
//!   pooled connection could not take (closed in between) goes out once
//!   more on a fresh connection to the same instance: it was not sent.
//! - A connection goes back to the pool only once its response body has
//!   ended; a body dropped half-read closes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::ProxyBody;

/// Idle connections kept per instance and worker thread.
const MAX_IDLE: usize = 256;
/// How long a connection may sit idle before the pool drops it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a pool looks for connections idle too long.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

type Io = TokioIo<TcpStream>;

/// One HTTP/1 connection to an instance: the two halves hyper gives.
struct Conn {
    sender: SendRequest<ProxyBody>,
    driver: Connection<Io, ProxyBody>,
}

impl Conn {
    /// Lets the connection take in what happened while no one polled it;
    /// true if it can carry a request now.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if Pin::new(&mut self.driver).poll(&mut cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// Why a request did not get a response head.
pub(crate) enum Failure {
    /// The instance could not be reached: connection refused, reset, or no
    /// connection within the timeout.
    Connect(String),
    /// No response head within the timeout.
    Timeout,
    /// The URL cannot be used: not `http://host[:port]`.
    Unusable,
    /// The instance was reached but the exchange failed.
    Upstream(hyper::Error),
}

/// Sends `req` (whose URI is the upstream's absolute URL) and waits for the
/// response head, for at most `timeout` including the connect.
pub(crate) async fn send(
    mut req: Request<ProxyBody>,
    timeout: Duration,
) -> Result<Response<ProxyBody>, Failure> {
    let Some(target) = Target::of(req.uri()) else {
        return Err(Failure::Unusable);
    };
    // HTTP/1 to an origin server: origin-form, with the instance as Host.
    *req.uri_mut() = target.origin_form.clone();
    req.headers_mut()
        .insert(header::HOST, target.host_header.clone());
    let attempt = async {
        if let Some(conn) = checkout(&target.authority) {
            match exchange(conn, &target.authority, req).await {
                Err(Refused::Unsent(back)) => req = *back,
                done => return done.map_err(Refused::into_failure),
            }
        }
        let conn = connect(&target).await?;
        exchange(conn, &target.authority, req)
            .await
            .map_err(Refused::into_failure)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

/// Where a request goes, read from its absolute URI.
struct Target {
    /// `host:port`, the pool's key.
    authority: Box<str>,
    host: String,
    port: u16,
    host_header: HeaderValue,
    origin_form: Uri,
}

impl Target {
    fn of(uri: &Uri) -> Option<Self> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let origin_form = match uri.path_and_query() {
            Some(pq) => Uri::try_from(pq.as_str()).ok()?,
            None => Uri::from_static("/"),
        };
        Some(Self {
            authority: format!("{host}:{port}").into(),
            host: host.to_owned(),
            port,
            host_header: HeaderValue::from_str(authority.as_str()).ok()?,
            origin_form,
        })
    }
}

/// A request a connection did not carry to a response head.
enum Refused {
    /// Not sent at all: the connection had closed. Another may take it.
    Unsent(Box<Request<ProxyBody>>),
    /// Sent, or partly, and failed.
    Failed(hyper::Error),
}

impl Refused {
    fn into_failure(self) -> Failure {
        match self {
            // From a fresh connection: it closed as soon as it opened.
            Refused::Unsent(_) => Failure::Connect("the connection closed at once".into()),
            Refused::Failed(e) => Failure::Upstream(e),
        }
    }
}

/// Sends on `conn`, polling it until the response head is in. The body
/// then drives it, and pools it under `authority` at its end.
async fn exchange(
    mut conn: Conn,
    authority: &str,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, Refused> {
    let mut response = std::pin::pin!(conn.sender.try_send_request(req));
    let mut closed = false;
    let head = std::future::poll_fn(|cx| {
        if !closed {
            // Ready once the connection has closed; the response, or why
            // there is none, is then waiting in the channel.
            closed = Pin::new(&mut conn.driver).poll(cx).is_ready();
        }
        response.as_mut().poll(cx)
    })
    .await;
    match head {
        Ok(head) => {
            let conn = (!closed).then(|| (Box::<str>::from(authority), conn));
            Ok(head.map(|body| http_body_util::BodyExt::boxed(Streaming { body, conn })))
        }
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Refused::Unsent(Box::new(req))),
            None => Err(Refused::Failed(e.into_error())),
        },
    }
}

async fn connect(target: &Target) -> Result<Conn, Failure> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    Ok(Conn { sender, driver })
}

/// A response body that drives its connection while it is read.
struct Streaming {
    body: Incoming,
    /// The connection and its instance, until the body ends (then the
    /// connection is pooled) or the connection closes (then it is dropped).
    conn: Option<(Box<str>, Conn)>,
}

impl Streaming {
    /// The body has ended: its connection can carry the next request.
    fn pool_connection(&mut self, cx: &mut Context<'_>) {
        if let Some((authority, mut conn)) = self.conn.take() {
            // Once more, so that it settles into waiting for the next
            // request; pooled unless that found it closed.
            if Pin::new(&mut conn.driver).poll(cx).is_pending() {
                checkin(authority, conn);
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // Read to its end, yet dropped before a poll saw the end. Half-read,
        // the connection closes with it instead: the rest of the body would
        // come before the next response.
        if self.body.is_end_stream() {
            self.pool_connection(&mut Context::from_waker(Waker::noop()));
        }
    }
}

impl Body for Streaming {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some((_, conn)) = &mut this.conn
            && Pin::new(&mut conn.driver).poll(cx).is_ready()
        {
            this.conn = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // hyper's server stops reading a body that says it has ended, so
        // the end is often seen here rather than as a final `None`.
        if frame.is_ready() && this.body.is_end_stream() {
            this.pool_connection(cx);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// This worker thread's idle connections, by instance.
#[derive(Default)]
struct Pool {
    idle: HashMap<Box<str>, Vec<(Instant, Conn)>>,
    swept: Option<Instant>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// An idle connection to `authority` that can take a request now, if this
/// thread has one. The most recently used first: it is the least likely
/// to have been closed by the instance.
fn checkout(authority: &str) -> Option<Conn> {
    POOL.with_borrow_mut(|pool| {
        let idle = pool.idle.get_mut(authority)?;
        while let Some((since, mut conn)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && conn.usable() {
                return Some(conn);
            }
        }
        None
    })
}

fn checkin(authority: Box<str>, conn: Conn) {
    let now = Instant::now();
    POOL.with_borrow_mut(|pool| {
        if pool
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            pool.swept = Some(now);
            pool.idle.retain(|_, idle| {
                idle.retain(|(since, _)| now.duration_since(*since) < IDLE_TIMEOUT);
                !idle.is_empty()
            });
        }
        let idle = pool.idle.entry(authority).or_default();
        if idle.len() < MAX_IDLE {
            idle.push((now, conn));
        }
    });
}
