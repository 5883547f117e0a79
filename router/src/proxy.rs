//! Forwarding one request to one instance: the upstream URI, headers that
//! must not cross a proxy, the ones a proxy adds.

use std::net::SocketAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};

/// Hop-by-hop headers (RFC 9110 §7.6.1): about one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Adds `X-Forwarded-For` (appending to one already there), `-Proto` and
/// `-Host`.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, host: Option<HeaderValue>) {
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
}

/// Splits `/<service>/<rest>` into the service and the rest (with its
/// leading `/`). `None` for `/` or an empty first segment.
pub(crate) fn split_service(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (service, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, "/"),
    };
    (!service.is_empty()).then_some((service, rest))
}

/// The upstream URI: the route's URL, then the path (the rest, or the
/// whole path when the prefix is kept) and the query.
pub(crate) fn upstream_uri(route: &str, path: &str, query: Option<&str>) -> Option<Uri> {
    let base = route.trim_end_matches('/');
    let uri = match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    uri.parse().ok()
}

/// Safe to send twice: retried once on another instance when the first
/// could not be reached.
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_first_segment() {
        assert_eq!(split_service("/provider/ping"), Some(("provider", "/ping")));
        assert_eq!(split_service("/provider"), Some(("provider", "/")));
        assert_eq!(split_service("/provider/a/b/"), Some(("provider", "/a/b/")));
        assert_eq!(split_service("/"), None);
        assert_eq!(split_service("//x"), None);
    }

    #[test]
    fn builds_upstream_uris() {
        let u = upstream_uri("http://h:1", "/ping", Some("a=1")).unwrap();
        assert_eq!(u.to_string(), "http://h:1/ping?a=1");
        let u = upstream_uri("http://h:1/", "/ping", None).unwrap();
        assert_eq!(u.to_string(), "http://h:1/ping");
    }

    #[test]
    fn strips_hop_by_hop_and_what_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn appends_to_x_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut h,
            "127.0.0.1:5555".parse().unwrap(),
            Some(HeaderValue::from_static("gw:8000")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw:8000");
    }
}
