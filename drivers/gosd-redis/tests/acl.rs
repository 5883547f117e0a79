//! A Redis 6+ ACL user with exactly the rule the README gives passes the
//! conformance suite, in plain text and over TLS; a user missing part of it
//! fails with an error that says what it lacks; the password never shows.

#[path = "../../../tests/support/certs.rs"]
mod certs;
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use certs::Certs;
use gosd_driver::conformance::{self, Harness, LeaseReporting};
use gosd_driver::{Driver, InstanceName};
use gosd_redis::{RedisDriver, RedisOptions};
use redis_server::{RedisServer, free_port};

const PASSWORD: &str = "pw-4b1d-never-shown";

/// The README's `ACL SETUSER gosd …` line, with the password in it.
fn readme_rule() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("ACL SETUSER gosd "))
        .expect("the README gives the ACL rule on a line of its own");
    line.split_whitespace()
        .map(|w| w.replace(">PASSWORD", &format!(">{PASSWORD}")))
        .collect()
}

/// Creates user `name` from the README's rule, minus the words `without`
/// drops (each replaced by the word after `=>`, or dropped).
fn create_user(server: &RedisServer, name: &str, without: &[(&str, &str)]) {
    let mut rule = readme_rule();
    rule[2] = name.to_owned();
    for (word, instead) in without {
        let at = rule
            .iter()
            .position(|w| w == word)
            .expect("word in the rule");
        match instead.is_empty() {
            true => drop(rule.remove(at)),
            false => rule[at] = (*instead).to_owned(),
        }
    }
    let mut cmd = redis::cmd(&rule[0]);
    for w in &rule[1..] {
        cmd.arg(w);
    }
    let _: () = cmd.query(&mut server.connection()).expect("ACL SETUSER");
}

struct AclUser {
    server: RedisServer,
    certs: Option<Certs>,
    user: &'static str,
}

/// `user` with the test's password, on `port`; TLS with `certs`.
fn options(user: &str, port: u16, certs: Option<&Certs>) -> RedisOptions {
    let scheme = if certs.is_some() { "rediss" } else { "redis" };
    let url = format!("{scheme}://{user}:{PASSWORD}@localhost:{port}/0");
    let options = RedisOptions::from_url(&url).expect("options");
    assert!(!format!("{options:?}").contains(PASSWORD), "{options:?}");
    match certs {
        Some(c) => options.tls_ca(c.path("ca.pem")).expect("CA"),
        None => options,
    }
}

impl AclUser {
    fn options(&self, port: u16) -> RedisOptions {
        options(self.user, port, self.certs.as_ref())
    }
}

impl Harness for AclUser {
    type Driver = RedisDriver;
    /// Redis reaps lazily, on a read: clients come back at expiry.
    const LEASES: LeaseReporting = LeaseReporting::Reported;

    fn driver(&self) -> RedisDriver {
        let driver = RedisDriver::new(self.options(self.server.port()));
        assert!(!format!("{driver:?}").contains(PASSWORD));
        driver
    }

    fn unreachable(&self) -> RedisDriver {
        RedisDriver::new(self.options(free_port()))
    }

    async fn wipe(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.server.connection())
            .expect("FLUSHALL");
    }

    async fn write_raw(&self, field: &str, value: &str) {
        self.server.write_raw(field, value);
    }
}

#[tokio::test]
async fn a_user_with_exactly_the_readme_rule_passes_the_conformance_suite() {
    let server = RedisServer::start();
    create_user(&server, "gosd", &[]);
    conformance::run(&AclUser {
        server,
        certs: None,
        user: "gosd",
    })
    .await;
}

#[tokio::test]
async fn the_same_user_passes_it_over_tls() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.path(""), "no");
    create_user(&server, "gosd", &[]);
    conformance::run(&AclUser {
        server,
        certs: Some(certs),
        user: "gosd",
    })
    .await;
}

#[tokio::test]
async fn a_user_missing_part_of_the_rule_fails_saying_what_it_lacks() {
    let server = RedisServer::start();
    create_user(&server, "nochannel", &[("&{gosd}:events", "")]);
    create_user(&server, "noscripts", &[("+evalsha", "")]);
    create_user(&server, "otherkeys", &[("~{gosd}:*", "~other")]);
    let name = InstanceName::parse("svc-1").unwrap();
    for (user, lacking) in [
        ("nochannel", "channel"),
        ("noscripts", "evalsha"),
        ("otherkeys", "key"),
    ] {
        let driver = RedisDriver::new(options(user, server.port(), None));
        let err = driver
            .register(&name, "http://a", Duration::from_secs(30))
            .await
            .expect_err("registering without the permissions");
        let shown = format!("{err} {err:?}");
        println!("{user}: {err}");
        assert!(shown.contains("the README's ACL rule"), "{user}: {shown}");
        assert!(shown.contains(lacking), "{user}: {shown}");
        assert!(!shown.contains(PASSWORD), "{user}: {shown}");
    }
    // A wrong password: refused, and not shown either.
    let wrong = RedisOptions::from_url(&format!(
        "redis://gosd:not-{PASSWORD}@localhost:{}/0",
        server.port()
    ))
    .unwrap();
    let err = RedisDriver::new(wrong)
        .snapshot()
        .await
        .expect_err("wrong password");
    let shown = format!("{err} {err:?}");
    println!("wrong password: {err}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}
