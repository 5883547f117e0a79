//! The log of recent changes that lets a fetch answer with them, against a
//! real redis-server.

#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use gosd_driver::{Driver, Event, Fetched, InstanceName, Renewal, Version};
use gosd_redis::RedisDriver;
use redis_server::RedisServer;

const TTL: Duration = Duration::from_secs(60);

fn name(n: usize) -> InstanceName {
    InstanceName::new("svc", &n.to_string()).expect("name")
}

#[tokio::test]
async fn a_fetch_a_few_changes_behind_gets_them_in_order_and_one_too_far_behind_the_table() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    d.register(&name(0), "http://0", TTL).await.unwrap();
    let known = d.snapshot().await.unwrap().version;

    d.register(&name(1), "http://1", TTL).await.unwrap();
    d.deregister(&name(0), "http://0").await.unwrap();
    let now = d.snapshot().await.unwrap().version;
    let Fetched::Changes {
        events,
        version,
        next_expiry,
    } = d.fetch(Some(known)).await.unwrap()
    else {
        panic!("two changes behind: expected the changes");
    };
    assert_eq!(version, now);
    assert!(next_expiry.is_some_and(|left| left <= TTL));
    match &events[..] {
        [
            Event::Put {
                entry, version: v1, ..
            },
            Event::Removed {
                field, version: v2, ..
            },
        ] => {
            assert_eq!(
                (entry.field.as_str(), entry.url.as_str()),
                ("svc-1", "http://1")
            );
            assert_eq!(v1.revision, known.revision + 1);
            assert_eq!((field.as_str(), *v2), ("svc-0", now));
        }
        other => panic!("expected a put then a removal, got {other:?}"),
    }

    // The log keeps 64 messages: 63 changes and the one before them.
    let far = d.snapshot().await.unwrap().version;
    for n in 2..2 + 64 {
        d.register(&name(n), "http://n", TTL).await.unwrap();
    }
    match d.fetch(Some(far)).await.unwrap() {
        Fetched::Changed(s) => assert_eq!(s.entries.len(), 65),
        other => panic!("64 changes behind: expected the table, got {other:?}"),
    }
    let near = Version {
        revision: far.revision + 1,
        entries: far.entries + 1,
        ..far
    };
    match d.fetch(Some(near)).await.unwrap() {
        Fetched::Changes { events, .. } => assert_eq!(events.len(), 63),
        other => panic!("63 changes behind: expected the changes, got {other:?}"),
    }

    // The same revision with another version is another history.
    let other_history = Version {
        entries: near.entries + 1,
        ..near
    };
    assert!(matches!(
        d.fetch(Some(other_history)).await.unwrap(),
        Fetched::Changed(_)
    ));
}

/// Registers `leased` entries and then ends their leases, so that the next
/// script reaps them all at once. Returns the version in between.
async fn with_expired_leases(server: &RedisServer, d: &RedisDriver, leased: usize) -> Version {
    let names: Vec<InstanceName> = (1..=leased).map(name).collect();
    for n in &names {
        d.register(n, "http://n", TTL).await.unwrap();
    }
    let known = d.snapshot().await.unwrap().version;
    server.end_leases(&names.iter().map(InstanceName::as_str).collect::<Vec<_>>());
    known
}

#[tokio::test]
async fn a_reap_of_up_to_32_reaches_a_fetch_as_one_removal_per_entry() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    let known = with_expired_leases(&server, &d, 32).await;
    let Fetched::Changes {
        events, version, ..
    } = d.fetch(Some(known)).await.unwrap()
    else {
        panic!("a reap of 32: expected the changes");
    };
    assert_eq!(version, d.snapshot().await.unwrap().version);
    assert_eq!(events.len(), 32);
    for (i, e) in events.iter().enumerate() {
        let Event::Removed { version, since, .. } = e else {
            panic!("expected removals only, got {e:?}");
        };
        let step = i as u64 + 1;
        assert_eq!(
            (*since, version.revision, version.entries),
            (known.revision + step - 1, known.revision + step, 32 - step),
            "one change each"
        );
    }
}

#[tokio::test]
async fn a_reap_of_more_than_32_means_a_whole_read() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    let known = with_expired_leases(&server, &d, 33).await;
    match d.fetch(Some(known)).await.unwrap() {
        Fetched::Changed(s) => assert!(s.entries.is_empty(), "all 33 reaped"),
        other => panic!("expected the table, got {other:?}"),
    }
}

#[tokio::test]
async fn a_late_heartbeat_renews_a_lease_that_no_script_reaped_yet() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    let known = with_expired_leases(&server, &d, 1).await;
    // Reaped and restored, the entry would leave watching clients' tables
    // for a moment: two changes instead of none.
    assert_eq!(
        d.renew(&name(1), "http://n", TTL).await.unwrap(),
        Renewal::Renewed
    );
    assert!(matches!(
        d.fetch(Some(known)).await.unwrap(),
        Fetched::Unchanged { .. }
    ));
}

#[tokio::test]
async fn a_log_key_of_the_wrong_type_fails_a_change_before_it_writes_anything() {
    let server = RedisServer::start();
    let d = RedisDriver::new(server.url().parse().expect("options"));
    d.register(&name(0), "http://0", TTL).await.unwrap();
    let before = d.snapshot().await.unwrap();
    let mut con = server.connection();
    let _: () = redis::cmd("SET")
        .arg("{gosd}:log")
        .arg("not a list")
        .query(&mut con)
        .unwrap();
    assert!(d.register(&name(1), "http://1", TTL).await.is_err());
    assert!(d.deregister(&name(0), "http://0").await.is_err());
    let _: () = redis::cmd("DEL").arg("{gosd}:log").query(&mut con).unwrap();
    let after = d.snapshot().await.unwrap();
    assert_eq!(
        (after.entries, after.version),
        (before.entries, before.version),
        "nothing was written"
    );
}
