//! [`EtcdOptions`]: where the etcd cluster is, and the registry's prefix.

use gosd_driver::{DriverError, redact_url};

/// Where the registry lives: the etcd cluster's endpoints and the key
/// prefix. Both are checked when the options are made, and these are the
/// only rules for them: gosd checks `GOSD_ETCD_ENDPOINTS` and
/// `GOSD_ETCD_PREFIX` with this type too. Nothing is connected here.
///
/// An endpoint is `http://host:port` or `host:port`, with a non-empty host
/// (no whitespace, `/`, `?` or `#` in it) and a port from 1 to 65535. TLS
/// (`https://`) and credentials (`user:pass@`) are not supported yet and
/// are refused, never echoing what came before the `@`.
///
/// An invalid setting is [`DriverError::InvalidConfig`] naming it
/// (`endpoints` or `prefix`), the value (the endpoints joined by `,`) and
/// what would be accepted.
///
/// ```
/// use gosd_driver::DriverError;
/// use gosd_etcd::EtcdOptions;
///
/// let options = EtcdOptions::new(["127.0.0.1:2379", "http://10.0.0.2:2379/"], "/gosd/")?;
/// assert_eq!(options.endpoints(), ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]);
/// assert_eq!(options.prefix(), "/gosd");
/// assert_eq!(EtcdOptions::default().endpoints(), ["http://localhost:2379"]);
///
/// let err = EtcdOptions::new(["http://root:hunter2@e:2379"], "/gosd").unwrap_err();
/// assert!(matches!(&err, DriverError::InvalidConfig { setting, .. } if setting == "endpoints"));
/// assert!(err.to_string().contains("credentials") && !err.to_string().contains("hunter2"));
/// assert!(EtcdOptions::new(["h:0"], "/gosd").is_err());
/// # Ok::<_, DriverError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `http://host:port` each, in the order given.
    endpoints: Vec<String>,
    /// Without a trailing `/`, never empty.
    prefix: String,
}

impl Default for EtcdOptions {
    /// `http://localhost:2379`, prefix `/gosd`.
    fn default() -> Self {
        Self {
            endpoints: vec!["http://localhost:2379".to_owned()],
            prefix: "/gosd".to_owned(),
        }
    }
}

impl EtcdOptions {
    /// The cluster at `endpoints` (`http://host:port` or `host:port`, at
    /// least one), with the registry under `prefix` (gosd's is `/gosd`; a
    /// trailing `/` is dropped).
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] for `endpoints` when there is none
    /// or one is not a plain `http://host:port`, and for `prefix` when it
    /// is empty (or only `/`).
    pub fn new<E: AsRef<str>>(
        endpoints: impl IntoIterator<Item = E>,
        prefix: &str,
    ) -> Result<Self, DriverError> {
        let given: Vec<E> = endpoints.into_iter().collect();
        let given: Vec<&str> = given.iter().map(AsRef::as_ref).collect();
        let endpoints = check_endpoints(&given).map_err(|reason| DriverError::InvalidConfig {
            setting: "endpoints".to_owned(),
            value: redact_url(&given.join(",")),
            reason,
        })?;
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(DriverError::InvalidConfig {
                setting: "prefix".to_owned(),
                value: prefix.to_owned(),
                reason: "the key prefix must not be empty; e.g. /gosd".to_owned(),
            });
        }
        Ok(Self {
            endpoints,
            prefix: trimmed.to_owned(),
        })
    }

    /// The endpoints, each as `http://host:port`.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Each endpoint as `http://host:port`, or what is wrong with one.
fn check_endpoints(endpoints: &[&str]) -> Result<Vec<String>, String> {
    if endpoints.is_empty() {
        return Err(
            "no endpoint given; expected at least one endpoint, e.g. http://localhost:2379".into(),
        );
    }
    let mut urls = Vec::with_capacity(endpoints.len());
    for &e in endpoints {
        if let Some((_, host)) = e.rsplit_once('@') {
            // Never echo what came before the `@`: it may be a password.
            return Err(format!(
                "endpoint `***@{host}`: credentials in an endpoint are not supported; expected http://host:port"
            ));
        }
        let hostport = match e.split_once("://") {
            None => e,
            Some(("http", rest)) => rest.trim_end_matches('/'),
            Some(("https", _)) => {
                return Err("TLS (https://) is not supported yet; use http://".into());
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme `{scheme}`; expected http://host:port"
                ));
            }
        };
        let valid = hostport.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || "/?#".contains(c))
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if !valid {
            return Err(format!(
                "endpoint `{}`: expected http://host:port, e.g. http://localhost:2379",
                redact_url(e)
            ));
        }
        urls.push(format!("http://{hostport}"));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let err = |e: &[&str]| EtcdOptions::new(e, "/gosd").unwrap_err().to_string();
        assert!(err(&[]).contains("no endpoint"));
        assert!(err(&["https://h:2379"]).contains("TLS"));
        assert!(err(&["grpc://h:2379"]).contains("unsupported scheme `grpc`"));
        assert!(err(&["h"]).contains("expected http://host:port"));
        let creds = err(&["http://u:hunter2@h:2379"]);
        assert!(
            creds.contains("credentials") && !creds.contains("hunter2"),
            "{creds}"
        );
        assert!(
            EtcdOptions::new(["h:1"], "/")
                .unwrap_err()
                .to_string()
                .contains("prefix")
        );
    }

    #[test]
    fn the_stricter_rules_hold() {
        for bad in [
            "h:0",
            "http://h:0",
            "h:65536",
            "h :1",
            "http://a b:1",
            ":2379",
            "h/x:1",
            "h:1/",
            "h:1?pass=hunter2",
            "",
        ] {
            let e = EtcdOptions::new([bad], "/gosd").unwrap_err();
            assert!(
                matches!(&e, DriverError::InvalidConfig { setting, .. } if setting == "endpoints"),
                "{bad}: {e:?}"
            );
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!e.to_string().contains("answered unexpectedly"), "{e}");
        }
        let ok = EtcdOptions::new(["e1:2379", "http://e2:2379/"], "/svc").unwrap();
        assert_eq!(ok.endpoints(), ["http://e1:2379", "http://e2:2379"]);
    }
}
