//! What makes a service name, an instance id and a route URL valid.

use gosd_driver::InstanceName;

use crate::error::{Error, Result};
use crate::random::random_u64;

const MAX_NAME: usize = 200;

/// A service name: 1 to 200 of `A-Z a-z 0-9 . _ -`, not starting or ending
/// with `-`. It becomes the first path segment in the router and the part of
/// the registry field before the last `-`.
pub fn check_service(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME {
        Some("it is longer than 200 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only letters, digits, `.`, `_` and `-` are allowed")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must not start or end with `-`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The longest URL accepted: browsers and proxies commonly refuse longer.
pub(crate) const MAX_URL: usize = 2048;

/// The longest registry field (`<service>-<id>`) accepted.
pub(crate) const MAX_FIELD: usize = 512;

/// A route URL: absolute, with a host, at most 2,048 bytes, no white space
/// or control character anywhere (the URL parser would silently drop a
/// tab or a newline inside it, and a raw newline splits log and output
/// lines). Any scheme (`http`, `https`, `grpc`, …). Kept exactly as given:
/// a normalised `http://h:1` would gain a `/` and break `route + "/ping"`.
pub fn check_url(url: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidUrl {
        url: shown(url),
        reason,
    };
    if url.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if url.len() > MAX_URL {
        return Err(bad(format!(
            "it is {} bytes long; at most {MAX_URL} are accepted",
            url.len()
        )));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "it contains {c:?}; white space and control characters are not allowed (percent-encode them)"
        )));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| bad(format!("{e}; expected e.g. http://localhost:3333")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(
            "it has no host; expected e.g. http://localhost:3333".into()
        ));
    }
    Ok(())
}

/// A registry field as an instance name: `<service>-<id>`, at most 512
/// bytes, no white space or control character. `Err` says what is wrong.
pub(crate) fn parse_field(field: &str) -> Result<InstanceName, String> {
    if field.len() > MAX_FIELD {
        return Err(format!(
            "the field is {} bytes long; at most {MAX_FIELD} are accepted",
            field.len()
        ));
    }
    if field.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the field contains white space or a control character".into());
    }
    InstanceName::parse(field).ok_or_else(|| "the field is not <service>-<id>".into())
}

/// A registry value for a message: control characters escaped, cut to its
/// first 100 characters with its length, so a hostile entry can neither
/// split a log line nor flood the log.
pub(crate) fn shown(value: &str) -> String {
    let escaped: String = value
        .chars()
        .take(100)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().nth(100).is_some() {
        format!("{escaped}… ({} bytes)", value.len())
    } else {
        escaped
    }
}

/// A fresh instance name, `<service>-<YYYYmmddHHMMSS>.<8 digits>`, the shape
/// Go gosd uses. Uniqueness comes from the registry (register-if-absent,
/// retried with a new id); the digits only make collisions rare.
pub(crate) fn new_instance_name(service: &str) -> Option<InstanceName> {
    let now = chrono::Utc::now();
    let id = format!(
        "{}.{:08}",
        now.format("%Y%m%d%H%M%S"),
        random_u64() % 100_000_000
    );
    InstanceName::new(service, &id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        for ok in ["provider", "order-api", "a", "v1.2_x"] {
            check_service(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a b", "a/b", "ä", &"x".repeat(201)] {
            assert!(
                matches!(check_service(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://localhost:3333",
            "https://a.b/c",
            "grpc://10.0.0.1:50051",
            "http://[::1]:80",
        ] {
            check_url(ok).unwrap();
        }
        for bad in [
            "",
            "localhost:3333",
            "http://localhost:fake",
            " http://a",
            "mailto:x@y",
            "http://",
        ] {
            assert!(
                matches!(check_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hostile_urls_and_fields_are_refused_and_shown_harmlessly() {
        let long = format!("http://a/{}", "x".repeat(MAX_URL));
        for bad in [
            "http://a/b\nc",
            "http://a/b c",
            "http://a/\tb",
            "http://a/\u{7f}",
            "http://a/\u{2028}",
            long.as_str(),
        ] {
            let Err(Error::InvalidUrl { url, reason }) = check_url(bad) else {
                panic!("accepted {bad:?}");
            };
            assert!(url.len() < 200 && !url.contains('\n'), "{url}: {reason}");
        }
        check_url(&format!("http://a/{}", "x".repeat(MAX_URL - 9))).unwrap();
        assert!(parse_field(&format!("svc-{}", "1".repeat(MAX_FIELD))).is_err());
        assert!(parse_field("svc-1\n").is_err());
        assert!(parse_field("s v-1").is_err());
        assert_eq!(parse_field("svc-1").unwrap().as_str(), "svc-1");
        assert_eq!(shown("a\nb"), "a\\nb");
    }

    #[test]
    fn instance_names_have_go_gosd_shape() {
        let n = new_instance_name("provider").unwrap();
        assert_eq!(n.service(), "provider");
        let (stamp, digits) = n.id().split_once('.').unwrap();
        assert_eq!((stamp.len(), digits.len()), (14, 8), "{n}");
        assert!(n.id().bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        assert_ne!(
            new_instance_name("p").unwrap(),
            new_instance_name("p").unwrap()
        );
    }

    proptest! {
        #[test]
        fn any_name_or_url_is_accepted_whole_or_refused_naming_it(s in ".*") {
            match check_service(&s) {
                // An accepted service name makes instance names that parse
                // back to it.
                Ok(()) => {
                    let n = new_instance_name(&s).unwrap();
                    let parsed = InstanceName::parse(n.as_str()).unwrap();
                    prop_assert_eq!(parsed.service(), s.as_str());
                }
                Err(Error::InvalidName { name, .. }) => prop_assert_eq!(name, s.clone()),
                Err(other) => prop_assert!(false, "not InvalidName: {other:?}"),
            }
            match check_url(&s) {
                Ok(()) => prop_assert!(url::Url::parse(&s).is_ok()),
                // Named as logs show it: escaped, and cut when very long.
                Err(Error::InvalidUrl { url, .. }) => prop_assert_eq!(url, shown(&s)),
                Err(other) => prop_assert!(false, "not InvalidUrl: {other:?}"),
            }
            // A field that parses is the service and the id it was split into.
            if let Some(n) = InstanceName::parse(&s) {
                prop_assert_eq!(format!("{}-{}", n.service(), n.id()), s.clone());
                prop_assert_eq!(n.as_str(), s.as_str());
            }
        }

        #[test]
        fn valid_service_names_round_trip(s in "[a-z0-9][a-z0-9._-]{0,30}[a-z0-9]") {
            check_service(&s).unwrap();
            let n = new_instance_name(&s).unwrap();
            let parsed = InstanceName::parse(n.as_str()).unwrap();
            prop_assert_eq!(parsed.service(), s.as_str());
        }
    }
}
