//! The optional health checks, asked on every heartbeat: a local HTTP
//! endpoint (`GOSD_HEALTH_URL`, a 2xx answer is healthy) and a closure
//! given to the builder ([`ClientBuilder::health_check`]). With both, both
//! must pass. `GOSD_HEALTH_FAILURES` failures in a row mark the instance
//! down; one success marks it up again.
//!
//! The endpoint is asked with a plain HTTP/1.0 GET over a TCP connection,
//! so that the facade needs no HTTP client: the endpoint is the instance's
//! own, on this host.
//!
//! [`ClientBuilder::health_check`]: super::ClientBuilder::health_check

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest a health check may take (less when the heartbeat is shorter).
const LONGEST: Duration = Duration::from_secs(2);

/// What a health check given to
/// [`ClientBuilder::health_check`](super::ClientBuilder::health_check)
/// answers: `true` or `Ok(_)` is healthy; `false` or `Err(e)` is a
/// failure, and `e` is logged when the failures mark the instance down.
pub trait IntoHealth {
    /// `Ok` when healthy; else why not, for the log.
    fn into_health(self) -> Result<(), String>;
}

impl IntoHealth for bool {
    fn into_health(self) -> Result<(), String> {
        match self {
            true => Ok(()),
            false => Err("answered false".into()),
        }
    }
}

impl<T, E: std::fmt::Display> IntoHealth for Result<T, E> {
    fn into_health(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

/// A health check from the builder, boxed.
pub(crate) type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Boxes `check` into a [`Check`].
pub(super) fn boxed<F, Fut>(check: F) -> Check
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output: IntoHealth> + Send + 'static,
{
    Arc::new(move || {
        let answer = check();
        Box::pin(async move { answer.await.into_health() })
    })
}

/// How long a check may take: at most half the heartbeat, and half of what
/// the lease has to spare beyond it (the renewal waits for the check), and
/// [`LONGEST`].
pub(super) fn timeout(heartbeat: Duration, ttl: Duration) -> Duration {
    LONGEST
        .min(heartbeat / 2)
        .min(ttl.saturating_sub(heartbeat) / 2)
}

/// Runs the checks there are, at once, each within `timeout`: `None` when
/// there is none, else `Ok` when all pass, or what failed.
pub(super) async fn run(
    url: Option<&url::Url>,
    check: Option<&Check>,
    timeout: Duration,
) -> Option<Result<(), String>> {
    if url.is_none() && check.is_none() {
        return None;
    }
    // Each gives why it failed, or `None`: passed, or not set.
    let by_url = async {
        let url = url?;
        let why = probe(url, timeout).await.err()?;
        Some(format!("GOSD_HEALTH_URL {url}: {why}"))
    };
    let by_closure = async {
        let why = call(check?, timeout).await.err()?;
        Some(format!("the builder's health_check: {why}"))
    };
    let failed = match tokio::join!(by_url, by_closure) {
        (None, None) => return Some(Ok(())),
        (Some(a), Some(b)) => format!("{a}; {b}"),
        (Some(one), None) | (None, Some(one)) => one,
    };
    Some(Err(failed))
}

/// Runs `check` within `timeout`, on a task of its own: a check that panics
/// fails, and leaves the heartbeat alone; one that hangs fails at the
/// timeout and is aborted at its next await.
async fn call(check: &Check, timeout: Duration) -> Result<(), String> {
    let check = check.clone();
    let mut task = tokio::spawn(async move { check().await });
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) if e.is_panic() => Err(format!("panicked: {}", panic_message(e.into_panic()))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            task.abort();
            Err(format!("no answer within {timeout:?}"))
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "(not a string)".to_owned(),
        },
    }
}

/// Whether `url` answers 2xx within `timeout`. Any failure (refused,
/// timed out, not HTTP, another status) is unhealthy.
async fn probe(url: &url::Url, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(format!("answered {status}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The status code of a GET of `url`.
async fn get(url: &url::Url) -> std::io::Result<u16> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: gosd\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // The status line is all that counts: `HTTP/1.x NNN ...`.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = std::str::from_utf8(&head[..len]).map_err(|_| invalid("not HTTP"))?;
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("not an HTTP status line"))
}

/// Consecutive failures, and the verdict they make.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    failures: u32,
    unhealthy: bool,
}

impl Verdict {
    /// Counts one probe; `Some(unhealthy)` when the verdict changed.
    pub(super) fn record(&mut self, ok: bool, failures_to_down: u32) -> Option<bool> {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        let unhealthy = match ok {
            true => false,
            false => self.unhealthy || self.failures >= failures_to_down,
        };
        (unhealthy != self.unhealthy).then(|| {
            self.unhealthy = unhealthy;
            unhealthy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOON: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_check_that_says_no_fails_or_errs_panics_or_hangs_fails_and_says_why() {
        let ok = boxed(|| async { true });
        assert_eq!(run(None, Some(&ok), SOON).await, Some(Ok(())));
        assert_eq!(run(None, None, SOON).await, None, "no check, no verdict");
        let cases: [(Check, &str); 4] = [
            (boxed(|| async { false }), "answered false"),
            (
                boxed(|| async { Err::<(), _>("database gone") }),
                "database gone",
            ),
            (
                boxed(|| async { panic!("checked a bad state") as bool }),
                "panicked: checked a bad state",
            ),
            (boxed(std::future::pending::<bool>), "no answer within 50ms"),
        ];
        for (check, says) in cases {
            let answer = run(None, Some(&check), SOON).await;
            assert_eq!(
                answer,
                Some(Err(format!("the builder's health_check: {says}")))
            );
        }
    }

    #[tokio::test]
    async fn with_a_url_and_a_closure_both_must_pass() {
        // Nobody listens there: refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/healthz")).unwrap();
        let ok = boxed(|| async { true });
        let no = boxed(|| async { false });
        let both = run(Some(&url), Some(&no), SOON).await.unwrap().unwrap_err();
        assert!(
            both.starts_with("GOSD_HEALTH_URL http://127.0.0.1:"),
            "{both}"
        );
        assert!(
            both.ends_with("; the builder's health_check: answered false"),
            "{both}"
        );
        let url_only = run(Some(&url), Some(&ok), SOON).await.unwrap().unwrap_err();
        assert!(!url_only.contains("health_check"), "{url_only}");
    }

    #[test]
    fn a_check_leaves_the_renewal_time_to_spare() {
        let s = Duration::from_secs;
        assert_eq!(timeout(s(10) / 3, s(10)), s(10) / 6);
        assert_eq!(timeout(s(30), s(60)), s(2));
        assert_eq!(timeout(s(9), s(10)), Duration::from_millis(500));
    }

    #[test]
    fn n_failures_in_a_row_mark_down_and_one_success_up() {
        let mut v = Verdict::default();
        assert_eq!(v.record(false, 3), None);
        assert_eq!(v.record(false, 3), None);
        assert_eq!(v.record(true, 3), None, "the count starts over");
        assert_eq!(v.record(false, 3), None);
        assert_eq!(v.record(false, 3), None);
        assert_eq!(v.record(false, 3), Some(true));
        assert_eq!(v.record(false, 3), None, "said once");
        assert_eq!(v.record(true, 3), Some(false));
    }
}
