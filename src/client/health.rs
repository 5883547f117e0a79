//! The optional health check (`GOSD_HEALTH_URL`): a local HTTP endpoint
//! asked on every heartbeat; a 2xx answer is healthy. `GOSD_HEALTH_FAILURES`
//! failures in a row mark the instance down; one success marks it up again.
//!
//! A plain HTTP/1.0 GET over a TCP connection, so that the facade needs no
//! HTTP client: the endpoint is the instance's own, on this host.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `url` answers 2xx within `timeout`. Any failure (refused,
/// timed out, not HTTP, another status) is unhealthy.
pub(super) async fn probe(url: &url::Url, timeout: Duration) -> Result<(), String> {
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
