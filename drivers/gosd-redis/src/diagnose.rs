//! `Driver::diagnose` for Redis: what only a Redis connection can check
//! (round trip, server version, key types, clock, change log), reported
//! as driver-neutral [`Finding`]s so that tools name no redis-rs type.

use std::time::{SystemTime, UNIX_EPOCH};

use gosd_driver::Finding;
use redis::FromRedisValue;

use super::*;

/// The change log's length that the scripts keep (`LTRIM 0 63`).
const LOG_KEPT: usize = 64;

/// Above this, clocks are worth syncing. gosd itself reads only Redis's
/// clock, so skew never shortens or lengthens a lease.
const SKEW_WARNING_MS: f64 = 1000.0;

/// A round trip this slow eats a quarter of the reply timeout.
const SLOW_ROUND_TRIP: Duration = Duration::from_millis(500);

/// How many PINGs the round trip is the median of.
const PINGS: usize = 5;

pub(crate) async fn run(d: &RedisDriver) -> Result<Vec<Finding>, DriverError> {
    let (_, mut conn) = d.conn().await?;
    // The first PING tells an unreachable server: that is an error, not a finding.
    let mut findings = vec![round_trip(d, &mut conn).await?];
    findings.push(version(d, &mut conn).await);
    findings.push(key_types(d, &mut conn).await);
    findings.push(clock(d, &mut conn).await);
    findings.push(change_log(d, &mut conn).await);
    Ok(findings)
}

async fn query<T: FromRedisValue>(
    d: &RedisDriver,
    conn: &mut Conn,
    cmd: &redis::Cmd,
) -> Result<T, DriverError> {
    match conn {
        // Keyless checks are about the gosd slot's primary.
        Conn::Cluster(c) => {
            let v = crate::cluster::to_owner(c, cmd.clone(), &d.keys.hash)
                .await
                .map_err(|e| d.error(e))?;
            T::from_redis_value(v).map_err(|e| d.error(e.into()))
        }
        Conn::Single(_) => cmd.query_async(conn).await.map_err(|e| d.error(e)),
    }
}

/// A command that failed (an ACL that forbids it, a renamed command):
/// the check could not run, which is worth saying, not fatal.
fn not_checked(check: &str, what: &str, e: DriverError) -> Finding {
    Finding::warning(
        check,
        format!("could not run {what}: {e}"),
        format!("allow {what} for gosd's Redis user to have this checked"),
    )
}

async fn round_trip(d: &RedisDriver, conn: &mut Conn) -> Result<Finding, DriverError> {
    let mut times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = std::time::Instant::now();
        query::<Value>(d, conn, &redis::cmd("PING")).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let (median, max) = (times[PINGS / 2], times[PINGS - 1]);
    let detail = format!(
        "{}: PING round trip {:.2} ms (median of {PINGS}; slowest {:.2} ms)",
        d.backend,
        ms(median),
        ms(max)
    );
    Ok(if median >= SLOW_ROUND_TRIP {
        Finding::warning(
            "latency",
            detail,
            format!(
                "every registry call waits this long, and the driver gives up on a reply after {} s: \
                 run Redis closer to its clients",
                TIMEOUT.as_secs()
            ),
        )
    } else {
        Finding::ok("latency", detail)
    })
}

async fn version(d: &RedisDriver, conn: &mut Conn) -> Finding {
    const CHECK: &str = "server version";
    let info: String = match query(d, conn, redis::cmd("INFO").arg("server")).await {
        Ok(info) => info,
        Err(e) => return not_checked(CHECK, "INFO", e),
    };
    let Some(version) = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
    else {
        return Finding::warning(
            CHECK,
            "INFO server names no redis_version",
            "check by hand that the server is Redis 5 or newer",
        );
    };
    let Some(major) = version
        .split('.')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return Finding::warning(
            CHECK,
            format!("redis_version {version:?} is not a version number"),
            "check by hand that the server is Redis 5 or newer",
        );
    };
    if major < 5 {
        return Finding::problem(
            CHECK,
            format!("Redis {version}: gosd needs Redis 5 or newer"),
            "upgrade Redis: gosd's scripts read TIME before they write, which needs \
             the effect replication that Redis 5 made the default (7+ also has sharded pub/sub)",
        );
    }
    let sharded = if major >= 7 {
        "sharded pub/sub (SPUBLISH) is available"
    } else {
        "no sharded pub/sub (it came with Redis 7): fine on one server or a primary with replicas"
    };
    Finding::ok(
        CHECK,
        format!("Redis {version} (5 or newer needed); {sharded}"),
    )
}

async fn key_types(d: &RedisDriver, conn: &mut Conn) -> Finding {
    const CHECK: &str = "key types";
    let k = &d.keys;
    // (key, the type gosd needs, what deleting it does)
    let expected: [(&str, &str, &str); 7] = [
        (
            &k.hash,
            "hash",
            "it is gosd's registry, but something else wrote it: point gosd at \
             another hash with GOSD_KEY, or delete it if nothing else needs it",
        ),
        (
            &k.leases,
            "zset",
            "delete it: every running instance writes its lease again at its next heartbeat",
        ),
        (
            &k.revision,
            "string",
            "delete it together with the generation key: a new generation begins, \
             which every client reads whole",
        ),
        (
            &k.gone,
            "zset",
            "delete it: it only keeps deregistered names out for the rest of their lease",
        ),
        (
            &k.generation,
            "string",
            "delete it: a new generation begins, which every client reads whole",
        ),
        (
            &k.log,
            "list",
            "delete it: clients a few changes behind read the registry whole instead",
        ),
        (
            &k.meta,
            "hash",
            "delete it: every running instance writes its status and metadata again at its \
             next heartbeat",
        ),
    ];
    let mut read = redis::pipe();
    for (key, ..) in &expected {
        read.cmd("TYPE").arg(*key);
    }
    let types: Vec<String> = match read.query_async(conn).await {
        Ok(t) => t,
        Err(e) => return not_checked(CHECK, "TYPE", d.error(e)),
    };
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    for ((key, needed, fix), found) in expected.iter().zip(&types) {
        if found != "none" && found != needed {
            wrong.push(format!("`{key}` is a {found}, gosd needs a {needed}"));
            fixes.push(format!("`{key}`: {fix} (redis-cli DEL '{key}')"));
        }
    }
    if wrong.is_empty() {
        let present = types.iter().filter(|t| *t != "none").count();
        return Finding::ok(
            CHECK,
            format!(
                "{present} of gosd's {} keys exist, each of the right type",
                expected.len()
            ),
        );
    }
    Finding::problem(
        CHECK,
        format!("{}; every gosd script fails on it", wrong.join("; ")),
        fixes.join("; "),
    )
}

async fn clock(d: &RedisDriver, conn: &mut Conn) -> Finding {
    const CHECK: &str = "clock skew";
    let asked = SystemTime::now();
    let started = std::time::Instant::now();
    let time: Result<(String, String), _> = query(d, conn, &redis::cmd("TIME")).await;
    let round_trip = started.elapsed();
    let server_us = match time {
        Ok((secs, micros)) => match (secs.parse::<f64>(), micros.parse::<f64>()) {
            (Ok(s), Ok(us)) => s * 1e6 + us,
            _ => {
                return Finding::warning(
                    CHECK,
                    format!("TIME answered {secs:?} {micros:?}, not a time"),
                    "check the server by hand",
                );
            }
        },
        Err(e) => return not_checked(CHECK, "TIME", e),
    };
    // The server read its clock about halfway through the round trip.
    let host_us = (asked + round_trip / 2)
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let skew_ms = (server_us - host_us) / 1000.0;
    let direction = if skew_ms >= 0.0 { "ahead of" } else { "behind" };
    let detail = format!(
        "Redis's clock is {:.1} ms {direction} this host's (± {:.1} ms); \
         leases use Redis's clock alone",
        skew_ms.abs(),
        ms(round_trip) / 2.0
    );
    if skew_ms.abs() > SKEW_WARNING_MS {
        Finding::warning(
            CHECK,
            detail,
            "sync both clocks with NTP (chrony, systemd-timesyncd): leases are unaffected, \
             but log times and Go gosd's time-stamped instance ids disagree",
        )
    } else {
        Finding::ok(CHECK, detail)
    }
}

async fn change_log(d: &RedisDriver, conn: &mut Conn) -> Finding {
    const CHECK: &str = "change log";
    let k = &d.keys;
    let mut read = redis::pipe();
    read.llen(&k.log).get(&k.revision).zcard(&k.gone);
    let (len, revision, gone): (usize, Option<String>, usize) = match read.query_async(conn).await {
        Ok(v) => v,
        // A wrong type shows under "key types", with its fix.
        Err(e) => return not_checked(CHECK, "LLEN, GET and ZCARD", d.error(e)),
    };
    let detail = format!(
        "`{}` holds {len} change(s) (gosd keeps the last {LOG_KEPT}); revision {}; \
         {gone} deregistered name(s) waiting out their lease in `{}`",
        k.log,
        revision.as_deref().unwrap_or("0"),
        k.gone
    );
    if len > LOG_KEPT {
        Finding::warning(
            CHECK,
            format!("{detail}: longer than gosd keeps, so something else pushes to it"),
            format!(
                "find that writer; then trim it (redis-cli LTRIM '{}' 0 {})",
                k.log,
                LOG_KEPT - 1
            ),
        )
    } else {
        Finding::ok(CHECK, detail)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
