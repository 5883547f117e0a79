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

/// A route URL: absolute, with a host, no surrounding white space. Any
/// scheme (`http`, `https`, `grpc`, …). Kept exactly as given: a
/// normalised `http://h:1` would gain a `/` and break `route + "/ping"`.
pub fn check_url(url: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if url.trim() != url || url.is_empty() {
        return Err(bad("it is empty or has white space around it".into()));
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
                Err(Error::InvalidUrl { url, .. }) => prop_assert_eq!(url, s.clone()),
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
