//! gosd over TLS (`rediss://`), configured from the environment, against a
//! real redis-server that speaks nothing else: the seed's demo with mutual
//! TLS, and each TLS setting that is wrong, named in the error.

// Not in `support`: the router's tests share it and have no rcgen.
#[path = "support/certs.rs"]
mod certs;
mod support;

use std::process::Command;

use certs::Certs;
use support::{Proc, RedisServer, registry, wait_until};

fn tls_env(server: &RedisServer, certs: &Certs) -> Vec<(&'static str, String)> {
    vec![
        ("GOSD_REDIS_URL", server.url()),
        ("GOSD_REDIS_CA", certs.file("ca.pem")),
        ("GOSD_REDIS_CERT", certs.file("client.pem")),
        ("GOSD_REDIS_KEY", certs.file("client.key")),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Registration, heartbeats, picks, the pushed change and the
/// deregistration at SIGTERM all cross mutual TLS: the server has no
/// plain-text port.
#[test]
fn the_seed_demo_runs_over_mutual_tls() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.path(""), "yes");
    let env = tls_env(&server, &certs);
    let env = borrowed(&env);
    let (p1, _, url1) = Proc::provider_with("1", &env);
    let (_p2, _, url2) = Proc::provider_with("2", &env);
    let mut watch = Proc::spawn_with("watch", &["provider"], &env);
    let mut both = [url1.clone(), url2.clone()];
    both.sort();
    let first = watch.next_line().expect("watch printed its list");
    assert!(first.ends_with(&both.join(",")), "{first}");

    let mut consumer = Proc::spawn_with("consumer", &["10"], &env);
    assert_eq!(consumer.wait(), Some(0));
    let lines = consumer.lines();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {lines:?}");
    }

    // SIGTERM: provider 1 deregisters on a connection of its own, and the
    // watcher hears of it on its TLS subscription.
    p1.signal("TERM");
    let pushed = watch.next_line().expect("watch printed the change");
    assert!(pushed.ends_with(&format!(" 1 {url2}")), "{pushed}");
    wait_until("provider 1 out of the hash", || {
        registry(&server).iter().all(|(_, u)| *u != url1)
    });
}

type Env = Vec<(&'static str, String)>;

/// `provider` with `env`, expected to fail at start: its exit code and
/// stderr.
fn failed_start(env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(support::example("provider"));
    cmd.args([":0", "1"])
        .env("gosdTryRefreshAmount", "1")
        .env("RUST_LOG", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run provider");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_tls_setting_is_named_and_the_process_exits_nonzero() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.path(""), "yes");
    let plain = RedisServer::start();
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.display().to_string();
    let with = |changes: &[(&'static str, &str)]| {
        let mut env = tls_env(&server, &certs);
        for (k, v) in changes {
            env.retain(|(key, _)| key != k);
            if !v.is_empty() {
                env.push((k, v.to_string()));
            }
        }
        env
    };
    let plain_url = plain.url();
    let tls_port_as_plain = format!("redis://127.0.0.1:{}", server.port());
    let plain_port_as_tls = format!("rediss://localhost:{}", plain.port());
    let other_ca = certs.file("other-ca.pem");
    let stranger = certs.file("stranger.pem");
    let stranger_key = certs.file("stranger.key");
    let cases: Vec<(&str, Env, &[&str])> = vec![
        (
            "a CA file that is not there",
            with(&[("GOSD_REDIS_CA", "/no/such/ca.pem")]),
            &["GOSD_REDIS_CA", "/no/such/ca.pem"],
        ),
        (
            "a CA file that is not PEM",
            with(&[("GOSD_REDIS_CA", &garbage)]),
            &["GOSD_REDIS_CA", "holds no certificate"],
        ),
        (
            "a key file that is not PEM",
            with(&[("GOSD_REDIS_KEY", &garbage)]),
            &["GOSD_REDIS_KEY", "no private key"],
        ),
        (
            "a key that is not the certificate's",
            with(&[("GOSD_REDIS_KEY", &stranger_key)]),
            &["GOSD_REDIS_KEY", "does not go with"],
        ),
        (
            "a certificate without its key",
            with(&[("GOSD_REDIS_KEY", "")]),
            &["GOSD_REDIS_CERT", "set GOSD_REDIS_KEY too"],
        ),
        (
            "TLS files for a plain URL",
            with(&[("GOSD_REDIS_URL", &plain_url)]),
            &["GOSD_REDIS_CA", "rediss://"],
        ),
        (
            "a server certificate from another CA",
            with(&[("GOSD_REDIS_CA", &other_ca)]),
            &["set GOSD_REDIS_CA"],
        ),
        (
            "no client certificate",
            with(&[("GOSD_REDIS_CERT", ""), ("GOSD_REDIS_KEY", "")]),
            &["set GOSD_REDIS_CERT and GOSD_REDIS_KEY"],
        ),
        (
            "a client certificate the server does not trust",
            with(&[
                ("GOSD_REDIS_CERT", &stranger),
                ("GOSD_REDIS_KEY", &stranger_key),
            ]),
            &["refused the client certificate"],
        ),
        (
            "plain text to the TLS port",
            with(&[
                ("GOSD_REDIS_URL", &tls_port_as_plain),
                ("GOSD_REDIS_CA", ""),
                ("GOSD_REDIS_CERT", ""),
                ("GOSD_REDIS_KEY", ""),
            ]),
            &["use a rediss:// URL"],
        ),
        (
            "TLS to a plain port",
            with(&[("GOSD_REDIS_URL", &plain_port_as_tls)]),
            &["use redis://"],
        ),
    ];
    for (case, env, expected) in cases {
        let (code, stderr) = failed_start(&env);
        assert!(
            code.is_some_and(|c| c != 0),
            "{case}: exit {code:?}\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{case}: no {e:?} in\n{stderr}");
        }
    }
}
