//! `Driver::diagnose` against a real redis-server: healthy, then each of
//! gosd's keys written with the wrong type.

#[path = "../../../tests/support/cluster.rs"]
mod cluster;
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use gosd_driver::{Driver, InstanceName, Severity};
use gosd_redis::RedisDriver;
use redis_server::{RedisServer, free_port};

fn driver(url: &str) -> RedisDriver {
    RedisDriver::new(url.parse().expect("options"))
}

#[tokio::test]
async fn a_healthy_registry_has_no_problem_and_every_check_reports() {
    let server = RedisServer::start();
    let d = driver(&server.url());
    let name = InstanceName::new("svc", "1").unwrap();
    assert!(
        d.register(
            &name,
            "http://127.0.0.1:1",
            std::time::Duration::from_secs(60)
        )
        .await
        .unwrap()
    );
    let findings = d.diagnose().await.expect("diagnose");
    let checks: Vec<&str> = findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        [
            "latency",
            "server version",
            "key types",
            "clock skew",
            "change log"
        ]
    );
    for f in &findings {
        assert_eq!(f.severity, Severity::Ok, "{f:?}");
    }
    let log = &findings[4].detail;
    assert!(
        log.contains("holds 1 change") && log.contains("revision 1"),
        "{log}"
    );
}

#[tokio::test]
async fn each_key_of_the_wrong_type_is_a_problem_naming_it_and_its_fix() {
    let server = RedisServer::start();
    let d = driver(&server.url());
    for (key, needed) in [
        ("gosd", "hash"),
        ("{gosd}:leases", "zset"),
        ("{gosd}:rev", "string"),
        ("{gosd}:gone", "zset"),
        ("{gosd}:gen", "string"),
        ("{gosd}:log", "list"),
        ("{gosd}:meta", "hash"),
    ] {
        let mut conn = server.connection();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
        // A string, or (where gosd needs a string) a list.
        let wrong = if needed == "string" {
            redis::cmd("RPUSH").arg(key).arg("x").query::<()>(&mut conn)
        } else {
            redis::cmd("SET").arg(key).arg("x").query::<()>(&mut conn)
        };
        wrong.unwrap();
        let findings = d.diagnose().await.expect("diagnose");
        let types = findings.iter().find(|f| f.check == "key types").unwrap();
        assert_eq!(types.severity, Severity::Problem, "{key}: {types:?}");
        assert!(
            types.detail.contains(&format!("`{key}` is a"))
                && types.detail.contains(&format!("gosd needs a {needed}")),
            "{key}: {}",
            types.detail
        );
        let fix = types.fix.as_deref().unwrap();
        assert!(fix.contains(&format!("DEL '{key}'")), "{key}: {fix}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_finding() {
    let d = driver(&format!("redis://127.0.0.1:{}/0", free_port()));
    let e = d.diagnose().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}

/// On a cluster, every check runs on the gosd slot's primary.
#[tokio::test]
async fn a_healthy_registry_on_a_cluster_has_no_problem() {
    let set = cluster::ClusterSet::start();
    let d = RedisDriver::new(
        gosd_redis::RedisOptions::new()
            .cluster(&set.list())
            .expect("options"),
    );
    let name = InstanceName::new("svc", "1").unwrap();
    assert!(
        d.register(
            &name,
            "http://127.0.0.1:1",
            std::time::Duration::from_secs(60)
        )
        .await
        .unwrap()
    );
    let findings = d.diagnose().await.expect("diagnose");
    assert_eq!(findings.len(), 5);
    for f in &findings {
        assert_eq!(f.severity, Severity::Ok, "{f:?}");
    }
}
