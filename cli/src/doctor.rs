//! `gosd doctor`: checks the registry and says what is wrong and how to
//! fix it. What any driver can be asked (can it be read, what entries it
//! holds, which of them answer) is checked here; what only the backend
//! can tell (version, key types, clock, change log) comes from the
//! driver's own `diagnose`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gosd::driver::{Entry, Finding, Severity};
use gosd::{DynDriver, InstanceName};

use crate::Failure;

/// How long an entry's host may take to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run() -> Result<ExitCode, Failure> {
    let driver = crate::config()?.open_driver()?;
    let findings = check(&*driver).await;
    for f in &findings {
        let label = match f.severity {
            Severity::Ok => "ok",
            Severity::Warning => "WARNING",
            _ => "PROBLEM",
        };
        println!("{label:<8} {}: {}", f.check, f.detail);
        if let Some(fix) = &f.fix {
            println!("{:<8}   fix: {fix}", "");
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (problems, warnings) = (count(Severity::Problem), count(Severity::Warning));
    if problems == 0 {
        println!("healthy: {} checks, {warnings} warning(s)", findings.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s), {warnings} warning(s): see the fixes above");
        Ok(ExitCode::FAILURE)
    }
}

async fn check(driver: &dyn DynDriver) -> Vec<Finding> {
    let backend = driver.backend();
    let started = Instant::now();
    let snapshot = match driver.snapshot().await {
        Ok(s) => s,
        Err(e) if e.is_transient() => {
            // Nothing else can be checked.
            return vec![Finding::problem(
                "connectivity",
                e.to_string(),
                "start the server, or point gosd at it: gosdRedisAddr / GOSD_REDIS_URL \
                 (GOSD_ETCD_ENDPOINTS for etcd), the same settings the services use",
            )];
        }
        Err(e) => {
            // It answered, but not as gosd expects: the driver's checks
            // below usually say why (a key of the wrong type).
            let mut findings = vec![Finding::problem(
                "registry read",
                e.to_string(),
                "see the other problems; until they are fixed no client can refresh",
            )];
            findings.extend(backend_checks(driver).await);
            return findings;
        }
    };
    let mut findings = vec![Finding::ok(
        "connectivity",
        format!(
            "read the registry ({}) from {backend} in {:.1} ms",
            entries_count(snapshot.entries.len()),
            started.elapsed().as_secs_f64() * 1000.0
        ),
    )];
    findings.extend(backend_checks(driver).await);
    match driver.leases().await {
        Ok(leases) => {
            let leased: HashSet<String> = leases.into_iter().map(|(field, _)| field).collect();
            findings.extend(entries(snapshot.entries, &leased).await);
        }
        Err(e) => findings.push(Finding::problem(
            "leases",
            e.to_string(),
            "see the other problems; ghosts cannot be told from instances without the leases",
        )),
    }
    findings
}

async fn backend_checks(driver: &dyn DynDriver) -> Vec<Finding> {
    match driver.diagnose().await {
        Ok(findings) => findings,
        Err(e) => vec![Finding::problem(
            "backend checks",
            e.to_string(),
            "see the connectivity check",
        )],
    }
}

/// Malformed entries, and lease-less ones whose URL accepts no TCP
/// connection: ghosts.
async fn entries(entries: Vec<Entry>, leased: &HashSet<String>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut dials = tokio::task::JoinSet::new();
    let mut statics = 0;
    for e in entries {
        let Some(name) = InstanceName::parse(&e.field) else {
            findings.push(Finding::warning(
                "entries",
                format!(
                    "{:?} → {:?} is not <service>-<id>: every client skips it",
                    e.field, e.url
                ),
                "remove it by hand (Redis: HDEL <GOSD_KEY> <field>)",
            ));
            continue;
        };
        let target = url::Url::parse(&e.url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        let Some((host, port)) = target else {
            findings.push(Finding::warning(
                "entries",
                format!(
                    "{name} → {:?} is not a URL with a host and port: every client skips it",
                    e.url
                ),
                format!("gosd deregister {name}"),
            ));
            continue;
        };
        if leased.contains(name.as_str()) {
            continue;
        }
        statics += 1;
        dials.spawn(async move {
            let answered =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
                    .await;
            let why = match answered {
                Ok(Ok(_)) => return None,
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            };
            Some(Finding::problem(
                "ghosts",
                format!(
                    "{name} → {} has no lease and {host}:{port} does not accept a TCP connection ({why}): \
                     clients route to it and fail",
                    e.url
                ),
                format!("if it is gone for good: gosd deregister {name}"),
            ))
        });
    }
    let mut ghosts = 0;
    while let Some(done) = dials.join_next().await {
        if let Ok(Some(ghost)) = done {
            ghosts += 1;
            findings.push(ghost);
        }
    }
    if ghosts == 0 {
        let detail = match statics {
            0 => "every entry has a lease".to_owned(),
            n => format!(
                "{} without a lease, each accepting TCP connections",
                entries_count(n)
            ),
        };
        findings.push(Finding::ok("ghosts", detail));
    }
    findings
}

fn entries_count(n: usize) -> String {
    match n {
        1 => "1 entry".to_owned(),
        n => format!("{n} entries"),
    }
}
