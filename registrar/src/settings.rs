//! The registrar's settings: gosd's registry variables, plus where the
//! container engine is, which host IP to publish, and the label prefix.

use std::net::IpAddr;

/// Where the engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The label prefix when `GOSD_REGISTRAR_LABEL_PREFIX` is not set.
pub const DEFAULT_LABEL_PREFIX: &str = "gosd";

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// One of the registrar's own variables has a value it cannot use.
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        /// The variable, as spelled in the environment.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it, and what would be accepted.
        reason: String,
    },
    /// One of gosd's registry variables is invalid (it names the variable).
    #[error(transparent)]
    Gosd(#[from] gosd::Error),
}

/// Everything the registrar is configured with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// The engine's address (`DOCKER_HOST`): `unix://<path>`, `tcp://host:port`
    /// or `http://host:port`.
    pub docker_host: String,
    /// `GOSD_REGISTRAR_HOST_IP`: register `http://<this ip>:<published port>`
    /// instead of the container's own IP and port.
    pub host_ip: Option<IpAddr>,
    /// `GOSD_REGISTRAR_LABEL_PREFIX`: the labels read are `<prefix>.service`,
    /// `<prefix>.port`, `<prefix>.scheme`, `<prefix>.network` and
    /// `<prefix>.meta.<key>`.
    pub label_prefix: String,
    /// gosd's settings: the registry, its TTL and heartbeat.
    pub gosd: gosd::Config,
}

impl Settings {
    /// Reads the environment.
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable and its value.
    pub fn from_env() -> Result<Self, SettingsError> {
        let mut vars = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Ok(k) = k.into_string() else { continue };
            match v.into_string() {
                Ok(v) => vars.push((k, v)),
                Err(_) if k == "DOCKER_HOST" || k.starts_with("GOSD_") || k.starts_with("gosd") => {
                    let var = if k == "DOCKER_HOST" {
                        "DOCKER_HOST"
                    } else {
                        "a gosd variable"
                    };
                    return Err(SettingsError::Invalid {
                        var,
                        value: format!("{k}=(not shown)"),
                        reason: "the value is not valid UTF-8".into(),
                    });
                }
                Err(_) => {}
            }
        }
        Self::from_vars(vars)
    }

    /// Reads these variables as if they were the environment.
    ///
    /// ```
    /// let s = gosd_registrar::Settings::from_vars([("GOSD_REGISTRAR_HOST_IP", "192.0.2.7")])?;
    /// assert_eq!(s.docker_host, "unix:///var/run/docker.sock");
    /// assert_eq!(s.host_ip, Some("192.0.2.7".parse().unwrap()));
    /// assert_eq!(s.label_prefix, "gosd");
    ///
    /// let e = gosd_registrar::Settings::from_vars([("DOCKER_HOST", "ftp://engine")]).unwrap_err();
    /// assert!(e.to_string().starts_with(r#"invalid DOCKER_HOST="ftp://engine""#), "{e}");
    /// # Ok::<_, gosd_registrar::SettingsError>(())
    /// ```
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable and its value.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, SettingsError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let docker_host = get("DOCKER_HOST")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        check_docker_host(&docker_host)?;
        let host_ip = match get("GOSD_REGISTRAR_HOST_IP").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<IpAddr>().map_err(|_| SettingsError::Invalid {
                var: "GOSD_REGISTRAR_HOST_IP",
                value: v.clone(),
                reason: "expected an IP address, e.g. 192.0.2.7 or 2001:db8::7".into(),
            })?),
        };
        let label_prefix =
            get("GOSD_REGISTRAR_LABEL_PREFIX").unwrap_or_else(|| DEFAULT_LABEL_PREFIX.to_owned());
        check_label_prefix(&label_prefix)?;
        // Ours are not gosd's: it would warn about them as likely typos.
        let gosd = gosd::Config::from_vars(
            vars.iter()
                .filter(|(k, _)| !k.starts_with("GOSD_REGISTRAR_"))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Ok(Self {
            docker_host,
            host_ip,
            label_prefix,
            gosd,
        })
    }
}

fn check_docker_host(host: &str) -> Result<(), SettingsError> {
    let bad = |reason: &str| SettingsError::Invalid {
        var: "DOCKER_HOST",
        value: host.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = ["unix://", "tcp://", "http://"]
        .iter()
        .find_map(|scheme| host.strip_prefix(scheme))
        .ok_or_else(|| {
            bad("expected unix:///path/to/docker.sock, tcp://host:port or http://host:port (TLS and ssh are not supported)")
        })?;
    if rest.is_empty() {
        return Err(bad("it names no socket or host"));
    }
    Ok(())
}

fn check_label_prefix(prefix: &str) -> Result<(), SettingsError> {
    let ok = !prefix.is_empty()
        && !prefix.starts_with('.')
        && !prefix.ends_with('.')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            var: "GOSD_REGISTRAR_LABEL_PREFIX",
            value: prefix.to_owned(),
            reason: "expected letters, digits, `.`, `-` or `_`, not starting or ending with `.` (e.g. gosd or com.example.gosd)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_each_bad_value_names_its_variable() {
        let s = Settings::from_vars(std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(s.docker_host, DEFAULT_DOCKER_HOST);
        assert_eq!(s.host_ip, None);
        assert_eq!(s.label_prefix, "gosd");
        for (var, value) in [
            ("DOCKER_HOST", "/var/run/docker.sock"),
            ("DOCKER_HOST", "unix://"),
            ("GOSD_REGISTRAR_HOST_IP", "localhost"),
            ("GOSD_REGISTRAR_LABEL_PREFIX", ""),
            ("GOSD_REGISTRAR_LABEL_PREFIX", "gosd."),
            ("GOSD_REGISTRAR_LABEL_PREFIX", "a b"),
            ("GOSD_TTL", "soon"),
        ] {
            let e = Settings::from_vars([(var, value)]).unwrap_err().to_string();
            assert!(e.contains(var) && e.contains(value), "{var}={value}: {e}");
        }
        let s = Settings::from_vars([
            ("DOCKER_HOST", "tcp://engine:2375"),
            ("GOSD_REGISTRAR_LABEL_PREFIX", "com.example.sd"),
            ("GOSD_REGISTRAR_HOST_IP", "2001:db8::7"),
        ])
        .unwrap();
        assert_eq!(s.docker_host, "tcp://engine:2375");
        assert_eq!(s.label_prefix, "com.example.sd");
        assert!(s.host_ip.unwrap().is_ipv6());
    }
}
