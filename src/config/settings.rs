//! Every setting gosd reads from the environment, in one table: its
//! spellings and how its value goes into a [`Config`].

use super::*;

/// One setting read from the environment: its spellings, and how its value
/// goes into a [`Config`]. A new setting is one entry here (plus its field).
pub(super) struct Setting {
    /// The name errors fall back to, and `shown` redacts by.
    pub(super) key: &'static str,
    /// Go gosd's spelling, where Go gosd has the setting.
    pub(super) go: Option<&'static str>,
    pub(super) upper: &'static str,
    /// Parses the value into the config; `Err` says what was expected.
    pub(super) apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// In the order values are applied: a later entry may rely on an earlier
/// one (the heartbeat's default follows the TTL).
pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        key: "driver",
        go: None,
        upper: "GOSD_DRIVER",
        apply: |c, v| {
            c.driver = match v.trim().to_ascii_lowercase().as_str() {
                "redis" => DriverKind::Redis,
                "memory" => DriverKind::Memory,
                "etcd" => DriverKind::Etcd,
                _ => return Err("expected `redis`, `etcd` or `memory`".into()),
            };
            Ok(())
        },
    },
    Setting {
        key: "etcd_endpoints",
        go: None,
        upper: "GOSD_ETCD_ENDPOINTS",
        apply: |c, v| {
            c.etcd.endpoints = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            Ok(())
        },
    },
    Setting {
        key: "etcd_prefix",
        go: None,
        upper: "GOSD_ETCD_PREFIX",
        apply: |c, v| {
            c.etcd.prefix = v.trim().to_owned();
            Ok(())
        },
    },
    Setting {
        key: "redis_url",
        go: None,
        upper: "GOSD_REDIS_URL",
        apply: |c, v| {
            c.redis.url = Some(v.to_owned());
            Ok(())
        },
    },
    Setting {
        key: "redis_addr",
        go: Some("gosdRedisAddr"),
        upper: "GOSD_REDIS_ADDR",
        apply: |c, v| {
            c.redis.addr = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Setting {
        key: "redis_password",
        go: Some("gosdRedisPassword"),
        upper: "GOSD_REDIS_PASSWORD",
        apply: |c, v| {
            c.redis.password = Some(v.to_owned()).filter(|p| !p.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "redis_db",
        go: Some("gosdRedisDB"),
        upper: "GOSD_REDIS_DB",
        apply: |c, v| {
            c.redis.db = v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or("expected a database number, 0 or more")?;
            Ok(())
        },
    },
    Setting {
        key: "redis_ca",
        go: None,
        upper: "GOSD_REDIS_CA",
        apply: |c, v| {
            c.redis.tls_ca = Some(v.trim().into()).filter(|p: &PathBuf| !p.as_os_str().is_empty());
            Ok(())
        },
    },
    Setting {
        key: "redis_cert",
        go: None,
        upper: "GOSD_REDIS_CERT",
        apply: |c, v| {
            c.redis.tls_cert =
                Some(v.trim().into()).filter(|p: &PathBuf| !p.as_os_str().is_empty());
            Ok(())
        },
    },
    Setting {
        key: "redis_key",
        go: None,
        upper: "GOSD_REDIS_KEY",
        apply: |c, v| {
            c.redis.tls_key = Some(v.trim().into()).filter(|p: &PathBuf| !p.as_os_str().is_empty());
            Ok(())
        },
    },
    Setting {
        key: "redis_sentinels",
        go: None,
        upper: "GOSD_REDIS_SENTINELS",
        apply: |c, v| {
            c.redis.sentinels = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Setting {
        key: "redis_master",
        go: None,
        upper: "GOSD_REDIS_MASTER",
        apply: |c, v| {
            c.redis.master = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Setting {
        key: "redis_sentinel_password",
        go: None,
        upper: "GOSD_REDIS_SENTINEL_PASSWORD",
        apply: |c, v| {
            c.redis.sentinel_password = Some(v.to_owned()).filter(|p| !p.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "redis_cluster",
        go: None,
        upper: "GOSD_REDIS_CLUSTER",
        apply: |c, v| {
            c.redis.cluster = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Setting {
        key: "try_refresh_amount",
        go: Some("gosdTryRefreshAmount"),
        upper: "GOSD_TRY_REFRESH_AMOUNT",
        apply: |c, v| {
            c.try_refresh_amount = parse_count(v)?;
            Ok(())
        },
    },
    Setting {
        key: "try_find_service_amount",
        go: Some("gosdTryFindServiceAmount"),
        upper: "GOSD_TRY_FIND_SERVICE_AMOUNT",
        apply: |c, v| {
            c.try_find_service_amount = parse_count(v)?;
            Ok(())
        },
    },
    Setting {
        key: "try_find_service_delay",
        go: Some("gosdTryFindServiceDelay"),
        upper: "GOSD_TRY_FIND_SERVICE_DELAY",
        apply: |c, v| {
            c.try_find_service_delay = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        key: "ttl",
        go: None,
        upper: "GOSD_TTL",
        apply: |c, v| {
            c.ttl = parse_duration(v)?;
            c.heartbeat = c.ttl / 3;
            Ok(())
        },
    },
    Setting {
        key: "heartbeat",
        go: None,
        upper: "GOSD_HEARTBEAT",
        apply: |c, v| {
            c.heartbeat = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        key: "cron",
        go: None,
        upper: "GOSD_CRON",
        apply: |c, v| {
            c.cron = match v.trim().eq_ignore_ascii_case("off") {
                true => None,
                false => Some(v.parse()?),
            };
            Ok(())
        },
    },
    Setting {
        key: "key",
        go: None,
        upper: "GOSD_KEY",
        apply: |c, v| {
            c.key = v.to_owned();
            Ok(())
        },
    },
    Setting {
        key: "watch",
        go: None,
        upper: "GOSD_WATCH",
        apply: |c, v| {
            c.watch = parse_bool(v)?;
            Ok(())
        },
    },
    // Before zone and weight, which check it does not say otherwise.
    Setting {
        key: "meta",
        go: None,
        upper: "GOSD_META",
        apply: |c, v| {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, val) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("{pair:?} is not key=value"))?;
                insert_metadata(&mut c.metadata, k.trim(), val.trim())
                    .map_err(|r| format!("{pair:?}: {r}"))?;
            }
            Ok(())
        },
    },
    Setting {
        key: "zone",
        go: None,
        upper: "GOSD_ZONE",
        apply: |c, v| set_once(c, "zone", v.trim()),
    },
    Setting {
        key: "weight",
        go: None,
        upper: "GOSD_WEIGHT",
        apply: |c, v| {
            parse_weight(v)?;
            set_once(c, "weight", v.trim())
        },
    },
    Setting {
        key: "health_url",
        go: None,
        upper: "GOSD_HEALTH_URL",
        apply: |c, v| {
            c.health_url = Some(v.trim().to_owned()).filter(|u| !u.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "health_failures",
        go: None,
        upper: "GOSD_HEALTH_FAILURES",
        apply: |c, v| {
            c.health_failures = parse_count(v)?;
            Ok(())
        },
    },
    Setting {
        key: "drain",
        go: None,
        upper: "GOSD_DRAIN",
        apply: |c, v| {
            c.drain = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        key: "eject_after",
        go: None,
        upper: "GOSD_EJECT_AFTER",
        apply: |c, v| {
            c.eject_after = parse_count(v)?;
            Ok(())
        },
    },
    Setting {
        key: "eject_for",
        go: None,
        upper: "GOSD_EJECT_FOR",
        apply: |c, v| {
            c.eject_for = parse_duration(v)?;
            Ok(())
        },
    },
];

/// Sets a metadata key that has a variable of its own, unless `GOSD_META`
/// set it otherwise.
fn set_once(c: &mut Config, key: &str, v: &str) -> Result<(), String> {
    match c.metadata.get(key) {
        Some(other) if other != v => Err(format!(
            "GOSD_META sets {key}={other}; set {key} in one place"
        )),
        _ => c.metadata.insert(key, v),
    }
}

/// Adds one metadata pair by `GOSD_META`'s rules: [`Meta::insert`]'s
/// (the key, the value, at most 32 pairs and 4 KiB) and, since picks read
/// it, a `weight` of 1 to 1000. `Err` says why, naming neither the pair
/// nor where it came from: the caller does.
///
/// Public as [`crate::validate::metadata_pair`], for tools that write the
/// metadata of others (gosd-registrar's labels).
pub fn insert_metadata(meta: &mut Meta, key: &str, value: &str) -> Result<(), String> {
    if key == "weight" {
        parse_weight(value)?;
    }
    meta.insert(key, value)
}

/// A count of attempts: a whole number, 1 or more.
fn parse_count(v: &str) -> Result<u32, String> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "expected a whole number, 1 or more".into())
}

/// The value as it may appear in an error: passwords never do.
pub(super) fn shown(key: &str, value: &str) -> String {
    match key {
        "redis_password" | "redis_sentinel_password" => "***".to_owned(),
        "redis_url" | "redis_addr" | "redis_sentinels" | "redis_cluster" | "etcd_endpoints"
        | "health_url" => redact_url(value),
        _ => value.to_owned(),
    }
}

/// A bare integer is seconds (Go gosd's form); anything else is humantime.
///
/// Public as [`crate::env_value::duration`], for crates that read settings
/// of their own in gosd's syntax (gosd-router).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|e| format!("{e}; expected seconds (`3`) or a duration such as `250ms` or `2s`"))
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
///
/// Public as [`crate::env_value::boolean`].
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected `true` or `false`".into()),
    }
}
