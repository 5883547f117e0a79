//! An ACL user's password (`redis://user:pass@`) never shows: the examples
//! run with it at `trace` logging, through a working registry, a wrong
//! password, a user without the permissions, and a server that is down,
//! and every byte they print is searched for it. So is every `Debug` and
//! error of the configuration.

mod support;

use std::process::{Command, Output, Stdio};

use support::{RedisServer, free_port, registry, wait_until};

const PASSWORD: &str = "pw-7c3e-never-shown";

/// Creates `user` from the README's rule, with `PASSWORD`; `strip` drops
/// one word of it (e.g. the channel).
fn create_user(server: &RedisServer, user: &str, strip: Option<&str>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("ACL SETUSER gosd "))
        .unwrap();
    let mut words: Vec<String> = line
        .split_whitespace()
        .filter(|w| Some(*w) != strip)
        .map(|w| w.replace(">PASSWORD", &format!(">{PASSWORD}")))
        .collect();
    words[2] = user.to_owned();
    let mut cmd = redis::cmd(&words[0]);
    for w in &words[1..] {
        cmd.arg(w);
    }
    let _: () = cmd.query(&mut server.connection()).expect("ACL SETUSER");
}

fn run(example: &str, args: &[&str], url: &str) -> Command {
    let mut cmd = Command::new(support::example(example));
    cmd.args(args)
        .env("GOSD_REDIS_URL", url)
        .env("RUST_LOG", "trace")
        .env("gosdTryRefreshAmount", "2")
        .env("gosdTryFindServiceAmount", "1")
        .env("gosdTryFindServiceDelay", "0");
    cmd
}

fn shown(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_password_never_shows_in_any_output() {
    let server = RedisServer::start();
    create_user(&server, "gosd", None);
    create_user(&server, "nochannel", Some("&{gosd}:events"));
    let url =
        |user: &str, pass: &str, port: u16| format!("redis://{user}:{pass}@127.0.0.1:{port}/0");
    let good = url("gosd", PASSWORD, server.port());
    let mut outputs = Vec::new();

    // Works: a provider, a consumer that reaches it, SIGTERM deregisters.
    let port = free_port();
    let provider = run("provider", &[&format!(":{port}"), "1"], &good)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the provider registered", || !registry(&server).is_empty());
    let consumer = run("consumer", &["2"], &good).output().unwrap();
    assert!(consumer.status.success(), "{}", shown(&consumer));
    outputs.push(("consumer", shown(&consumer)));
    let ok = Command::new("kill")
        .args(["-TERM", &provider.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let provider = provider.wait_with_output().unwrap();
    assert_eq!(provider.status.code(), Some(143), "{}", shown(&provider));
    assert!(registry(&server).is_empty(), "deregistered as the ACL user");
    outputs.push(("provider", shown(&provider)));

    // Fails: each at start, non-zero, saying why.
    for (case, url, why) in [
        (
            "wrong password",
            url("gosd", &format!("x{PASSWORD}"), server.port()),
            "uthentication",
        ),
        (
            "no channel permission",
            url("nochannel", PASSWORD, server.port()),
            "ACL rule",
        ),
        (
            "server down",
            url("gosd", PASSWORD, free_port()),
            "unreachable",
        ),
    ] {
        let out = run("provider", &[&format!(":{}", free_port()), "1"], &url)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{case}: {}", shown(&out));
        assert!(
            shown(&out).contains(why),
            "{case}: no {why:?} in {}",
            shown(&out)
        );
        outputs.push((case, shown(&out)));
    }

    // The configuration's own Debug and errors.
    let config = gosd::Config::from_vars([("GOSD_REDIS_URL", good.as_str())]).unwrap();
    outputs.push(("Config Debug", format!("{config:?} {config:#?}")));
    for bad in [
        format!("redis://gosd:{PASSWORD}@127.0.0.1:99999/0"),
        format!("redis:/gosd:{PASSWORD}@h:6379"),
        format!("http://gosd:{PASSWORD}@h:6379"),
    ] {
        let err = gosd::Config::from_vars([("GOSD_REDIS_URL", bad.as_str())]).unwrap_err();
        outputs.push(("config error", format!("{err} {err:?}")));
    }
    let err = gosd::Config::from_vars([
        ("GOSD_REDIS_PASSWORD", PASSWORD),
        ("gosdRedisPassword", "other"),
    ])
    .unwrap_err();
    outputs.push(("conflicting passwords", format!("{err} {err:?}")));

    for (what, text) in outputs {
        assert!(
            !text.is_empty() || what == "consumer",
            "{what} printed nothing"
        );
        assert!(
            !text.contains(PASSWORD),
            "{what} shows the password:\n{text}"
        );
    }
}
