//! What a container's labels, state and network settings say to register:
//! the instance name, URL, metadata and status, or why not.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum, PortBinding};
use gosd::{InstanceName, Meta, Status};

/// How many hex digits of the container id an instance name carries.
pub const SHORT_ID: usize = 12;

/// One container's registry entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `<service>-<container id, first 12 hex>`.
    pub name: InstanceName,
    /// Where it serves.
    pub url: String,
    /// Its `<prefix>.meta.<key>` labels, and its status: down while its
    /// health check fails, else up.
    pub meta: Meta,
    /// The container's name, for logs.
    pub container: String,
}

/// What to do with one container.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Register it (as down, if it is failing its health check).
    Register(Target),
    /// It is not labelled `<prefix>.service`: none of ours.
    Unlabelled,
    /// It is labelled but not serving now (not running, paused, or its
    /// health check has not run yet).
    NotServing(&'static str),
    /// Its labels or network settings cannot make an entry: why, naming
    /// the label.
    Bad(String),
}

/// The first 12 hex digits of a container id, lowercased; `None` when the
/// engine gave something else.
pub fn short_id(id: &str) -> Option<String> {
    let short = id.get(..SHORT_ID)?;
    short
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| short.to_ascii_lowercase())
}

/// Whether a registry name has the shape the registrar gives its entries:
/// an id of exactly 12 lowercase hex digits. gosd's own ids
/// (`20261121190255.46985214`) never have it.
pub fn is_registrar_name(name: &InstanceName) -> bool {
    let id = name.id();
    id.len() == SHORT_ID && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The container's name without the engine's leading `/`, and its short id.
pub fn display_name(c: &ContainerInspectResponse) -> String {
    let name = c.name.as_deref().unwrap_or("").trim_start_matches('/');
    let id = c.id.as_deref().and_then(short_id).unwrap_or_default();
    format!("{name} ({id})")
}

/// Reads a container's labels and network settings.
pub fn decide(c: &ContainerInspectResponse, prefix: &str, host_ip: Option<IpAddr>) -> Decision {
    let empty = HashMap::new();
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .unwrap_or(&empty);
    let label = |key: &str| labels.get(&format!("{prefix}.{key}")).map(String::as_str);
    let Some(service) = label("service") else {
        return Decision::Unlabelled;
    };
    let state = c.state.as_ref();
    if !state.and_then(|s| s.running).unwrap_or(false) {
        return Decision::NotServing("not running");
    }
    if state.and_then(|s| s.paused).unwrap_or(false) {
        return Decision::NotServing("paused");
    }
    // Unhealthy is alive but unfit: it keeps its entry, marked down, so
    // that consumers skip it (or fail open when every instance is down).
    let status = match state.and_then(|s| s.health.as_ref()).and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => return Decision::NotServing("health: starting"),
        Some(HealthStatusEnum::UNHEALTHY) => Status::Down,
        _ => Status::Up,
    };
    match target(c, labels, prefix, service, host_ip) {
        Ok(mut t) => {
            t.meta.status = status;
            Decision::Register(t)
        }
        Err(reason) => Decision::Bad(reason),
    }
}

/// The `<prefix>.meta.<key>=<value>` labels as metadata, checked by
/// `GOSD_META`'s rules; `Err` names the first label (by key) that breaks
/// them.
fn metadata(labels: &HashMap<String, String>, prefix: &str) -> Result<Meta, String> {
    let meta_prefix = format!("{prefix}.meta.");
    let mut pairs: Vec<(&str, &str)> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&meta_prefix)?, v.as_str())))
        .collect();
    pairs.sort_unstable();
    let mut meta = Meta::default();
    for (key, value) in pairs {
        gosd::validate::metadata_pair(&mut meta, key, value)
            .map_err(|e| format!("label {meta_prefix}{key}={value:?}: {e}"))?;
    }
    Ok(meta)
}

fn target(
    c: &ContainerInspectResponse,
    labels: &HashMap<String, String>,
    prefix: &str,
    service: &str,
    host_ip: Option<IpAddr>,
) -> Result<Target, String> {
    let label = |key: &str| labels.get(&format!("{prefix}.{key}")).map(String::as_str);
    if let Err(e) = gosd::validate::service_name(service) {
        return Err(format!("label {prefix}.service={service:?}: {e}"));
    }
    let port = match label("port") {
        None => {
            return Err(format!(
                "label {prefix}.port (the container port) is missing"
            ));
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "label {prefix}.port={p:?} is not a port number (1 to 65535)"
                ));
            }
        },
    };
    let scheme = label("scheme").unwrap_or("http");
    let host_network = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        == Some("host");
    let (ip, port) = match host_ip {
        Some(ip) if host_network => (ip, port),
        Some(ip) => (ip, published_port(c, port, ip)?),
        None if host_network => {
            return Err(
                "it uses the host's network, so it has no IP of its own: set GOSD_REGISTRAR_HOST_IP"
                    .into(),
            );
        }
        None => (container_ip(c, label("network"), prefix)?, port),
    };
    let url = match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    };
    if let Err(e) = gosd::validate::route_url(&url) {
        return Err(format!(
            "label {prefix}.scheme={scheme:?} makes no URL: {e}"
        ));
    }
    let id =
        c.id.as_deref()
            .and_then(short_id)
            .ok_or_else(|| format!("the engine gave no usable container id ({:?})", c.id))?;
    let name = InstanceName::new(service, &id)
        .ok_or_else(|| format!("label {prefix}.service={service:?} makes no instance name"))?;
    Ok(Target {
        name,
        url,
        meta: metadata(labels, prefix)?,
        container: display_name(c),
    })
}

/// The host port that `port/tcp` is published on at `ip` (or on every
/// address).
fn published_port(c: &ContainerInspectResponse, port: u16, ip: IpAddr) -> Result<u16, String> {
    let key = format!("{port}/tcp");
    let bindings: &[PortBinding] = c
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .and_then(|p| p.get(&key))
        .and_then(Option::as_deref)
        .unwrap_or(&[]);
    bindings
        .iter()
        .filter(|b| {
            let host = b.host_ip.as_deref().unwrap_or("");
            host.is_empty()
                || host == "0.0.0.0"
                || host == "::"
                || host.parse::<IpAddr>().ok() == Some(ip)
        })
        .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "port {key} is not published on {ip} (GOSD_REGISTRAR_HOST_IP): publish it, e.g. -p {port}:{port}"
            )
        })
}

/// The container's IP on the network `wanted`, or on the first network by
/// name (the order the engine's JSON lists them in).
fn container_ip(
    c: &ContainerInspectResponse,
    wanted: Option<&str>,
    prefix: &str,
) -> Result<IpAddr, String> {
    let empty = HashMap::new();
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .unwrap_or(&empty);
    let mut by_name: Vec<_> = networks.iter().collect();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    let found = match wanted {
        Some(w) => by_name.iter().find(|(name, _)| name.as_str() == w),
        None => by_name.first(),
    };
    let Some((network, settings)) = found else {
        let names: Vec<&String> = by_name.iter().map(|(name, _)| *name).collect();
        return Err(match wanted {
            Some(w) => format!(
                "label {prefix}.network={w:?}: the container is not on it (it is on {names:?})"
            ),
            None => "it is on no network".into(),
        });
    };
    [&settings.ip_address, &settings.global_ipv6_address]
        .into_iter()
        .filter_map(|a| a.as_deref())
        .find_map(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| format!("it has no IP address on network {network:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerConfig, ContainerState, EndpointSettings, Health, HostConfig, NetworkSettings,
    };

    const ID: &str = "b3d181bdb9cb061ef6281ba5518c5c8fc6dcd6975d8f977edc7bb46df3165667";

    fn container(labels: &[(&str, &str)]) -> ContainerInspectResponse {
        let networks = HashMap::from([
            (
                "podman".to_owned(),
                EndpointSettings {
                    ip_address: Some("10.88.0.2".into()),
                    ..Default::default()
                },
            ),
            (
                "other".to_owned(),
                EndpointSettings {
                    ip_address: Some("10.89.0.5".into()),
                    ..Default::default()
                },
            ),
        ]);
        ContainerInspectResponse {
            id: Some(ID.into()),
            name: Some("/web1".into()),
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(networks),
                ports: Some(HashMap::from([(
                    "8080/tcp".to_owned(),
                    Some(vec![PortBinding {
                        host_ip: Some("".into()),
                        host_port: Some("18080".into()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn registered(d: Decision) -> (String, String) {
        match d {
            Decision::Register(t) => (t.name.to_string(), t.url),
            other => panic!("not registered: {other:?}"),
        }
    }

    fn bad(d: Decision) -> String {
        match d {
            Decision::Bad(reason) => reason,
            other => panic!("not bad: {other:?}"),
        }
    }

    #[test]
    fn labels_make_the_name_and_url() {
        let c = container(&[("gosd.service", "web"), ("gosd.port", "8080")]);
        assert_eq!(
            registered(decide(&c, "gosd", None)),
            ("web-b3d181bdb9cb".into(), "http://10.89.0.5:8080".into()),
            "the first network by name: `other` before `podman`"
        );
        let c = container(&[
            ("gosd.service", "web"),
            ("gosd.port", "8080"),
            ("gosd.network", "podman"),
            ("gosd.scheme", "https"),
        ]);
        assert_eq!(
            registered(decide(&c, "gosd", None)).1,
            "https://10.88.0.2:8080"
        );
        let host: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            registered(decide(&c, "gosd", Some(host))).1,
            "https://192.0.2.7:18080",
            "the published port"
        );
        let c = container(&[("sd.service", "web"), ("sd.port", "8080")]);
        assert_eq!(decide(&c, "gosd", None), Decision::Unlabelled);
        assert!(matches!(decide(&c, "sd", None), Decision::Register(_)));
    }

    #[test]
    fn host_network_needs_the_host_ip() {
        let mut c = container(&[("gosd.service", "web"), ("gosd.port", "9000")]);
        c.host_config = Some(HostConfig {
            network_mode: Some("host".into()),
            ..Default::default()
        });
        assert!(bad(decide(&c, "gosd", None)).contains("GOSD_REGISTRAR_HOST_IP"));
        let host: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            registered(decide(&c, "gosd", Some(host))).1,
            "http://[2001:db8::7]:9000"
        );
    }

    #[test]
    fn bad_labels_say_which_label_and_why() {
        for (labels, says) in [
            (&[("gosd.service", "web")][..], "gosd.port"),
            (
                &[("gosd.service", "web"), ("gosd.port", "http")],
                "\"http\"",
            ),
            (&[("gosd.service", "web"), ("gosd.port", "0")], "gosd.port"),
            (&[("gosd.service", "web"), ("gosd.port", "70000")], "70000"),
            (
                &[("gosd.service", "bad name"), ("gosd.port", "80")],
                "gosd.service",
            ),
            (
                &[("gosd.service", "-web"), ("gosd.port", "80")],
                "gosd.service",
            ),
            (
                &[
                    ("gosd.service", "web"),
                    ("gosd.port", "80"),
                    ("gosd.scheme", "a b"),
                ],
                "gosd.scheme",
            ),
            (
                &[
                    ("gosd.service", "web"),
                    ("gosd.port", "80"),
                    ("gosd.network", "nope"),
                ],
                "gosd.network",
            ),
        ] {
            let reason = bad(decide(&container(labels), "gosd", None));
            assert!(reason.contains(says), "{labels:?}: {reason}");
        }
        let c = container(&[("gosd.service", "web"), ("gosd.port", "9999")]);
        let reason = bad(decide(&c, "gosd", Some("192.0.2.7".parse().unwrap())));
        assert!(reason.contains("9999/tcp is not published"), "{reason}");
    }

    #[test]
    fn meta_labels_are_the_metadata_checked_as_gosd_meta_is() {
        let c = container(&[
            ("gosd.service", "web"),
            ("gosd.port", "8080"),
            ("gosd.meta.zone", "eu-1"),
            ("gosd.meta.weight", "300"),
            ("gosd.meta.version", "2.1.0"),
            ("gosd.metaversion", "not a meta label"),
            ("other.meta.team", "not ours"),
        ]);
        let Decision::Register(t) = decide(&c, "gosd", None) else {
            panic!("not registered")
        };
        assert_eq!(t.meta.encode(), "up,version=2.1.0,weight=300,zone=eu-1");
        for (label, value, says) in [
            ("gosd.meta.weight", "0", "1 to 1000"),
            ("gosd.meta.weight", "heavy", "1 to 1000"),
            ("gosd.meta.bad key", "1", "not allowed in a key"),
            ("gosd.meta.", "1", "a key is 1 to 64"),
            ("gosd.meta.version", "2.1 beta", "not allowed in a value"),
        ] {
            let c = container(&[
                ("gosd.service", "web"),
                ("gosd.port", "8080"),
                (label, value),
            ]);
            let reason = bad(decide(&c, "gosd", None));
            assert!(
                reason.contains(&format!("label {label}={value:?}")) && reason.contains(says),
                "{label}={value}: {reason}"
            );
        }
        let many: Vec<(String, String)> = (0..33)
            .map(|i| (format!("gosd.meta.k{i:02}"), "v".to_owned()))
            .collect();
        let mut labels = vec![("gosd.service", "web"), ("gosd.port", "8080")];
        labels.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let reason = bad(decide(&container(&labels), "gosd", None));
        assert!(
            reason.contains("gosd.meta.k32") && reason.contains("at most 32 pairs"),
            "{reason}"
        );
    }

    #[test]
    fn only_a_running_container_past_its_first_health_check_serves() {
        let labels = [("gosd.service", "web"), ("gosd.port", "8080")];
        let with_state = |state: ContainerState| {
            let mut c = container(&labels);
            c.state = Some(state);
            decide(&c, "gosd", None)
        };
        let health = |status| {
            Some(Health {
                status: Some(status),
                ..Default::default()
            })
        };
        assert!(matches!(
            with_state(ContainerState::default()),
            Decision::NotServing(_)
        ));
        for state in [
            ContainerState {
                running: Some(true),
                paused: Some(true),
                ..Default::default()
            },
            ContainerState {
                running: Some(true),
                health: health(HealthStatusEnum::STARTING),
                ..Default::default()
            },
        ] {
            assert!(matches!(with_state(state), Decision::NotServing(_)));
        }
        for (health, status) in [
            (None, Status::Up),
            (health(HealthStatusEnum::HEALTHY), Status::Up),
            (health(HealthStatusEnum::UNHEALTHY), Status::Down),
        ] {
            match with_state(ContainerState {
                running: Some(true),
                health,
                ..Default::default()
            }) {
                Decision::Register(t) => assert_eq!(t.meta.status, status),
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn registrar_names_are_told_from_gosd_names() {
        let name = |s: &str| InstanceName::parse(s).unwrap();
        assert!(is_registrar_name(&name("web-b3d181bdb9cb")));
        assert!(!is_registrar_name(&name("web-20261121190255.46985214")));
        assert!(!is_registrar_name(&name("web-B3D181BDB9CB")));
        assert!(!is_registrar_name(&name("web-b3d181bdb9c")));
        assert_eq!(short_id(ID).as_deref(), Some("b3d181bdb9cb"));
        assert_eq!(short_id("xyz"), None);
        assert_eq!(short_id("zzzzzzzzzzzzzz"), None);
    }
}
