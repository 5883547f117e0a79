//! The `gosd` binary against a real redis-server, as an operator runs it.

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

use std::process::{Output, Stdio};
use std::time::Duration;

use redis_server::{RedisServer, free_port};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A hang guard for things that take milliseconds, not a timing claim.
const PATIENCE: Duration = Duration::from_secs(20);

const GO_ENTRY: &str = "provider-20160315122936.17256541";

/// `gosd <args>` with only the given environment (none of the test
/// runner's `GOSD_*`).
fn gosd(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosd"));
    cmd.env_clear().envs(env.iter().copied()).args(args);
    cmd.kill_on_drop(true);
    cmd
}

async fn run(server: &RedisServer, args: &[&str]) -> Output {
    run_with(&[("gosdRedisAddr", &server.addr())], args).await
}

async fn run_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    tokio::time::timeout(PATIENCE, gosd(env, args).output())
        .await
        .expect("gosd finished")
        .expect("gosd ran")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A client for `server` that gives up fast.
async fn client(server: &RedisServer) -> gosd::Client {
    client_with(server, &[]).await
}

/// [`client`] with these metadata pairs for what it registers.
async fn client_with(server: &RedisServer, meta: &[(&str, &str)]) -> gosd::Client {
    let mut config = gosd::Config::default();
    config.redis.addr = Some(server.addr());
    config.cron = None;
    let mut builder = gosd::Client::builder().config(config);
    for (k, v) in meta {
        builder = builder.metadata(k, v);
    }
    builder.build().await.expect("client")
}

/// The columns of a `gosd ls` line.
fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A TCP port something listens on, for entries that are not ghosts.
async fn listening() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    (l, url)
}

fn exists(server: &RedisServer, field: &str) -> bool {
    redis::cmd("HEXISTS")
        .arg("gosd")
        .arg(field)
        .query::<bool>(&mut server.connection())
        .expect("HEXISTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_shows_registered_instances_with_leases_and_a_go_entry_as_static() {
    let server = RedisServer::start();
    let provider = client(&server).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let other = client(&server).await;
    let _other = other
        .register("billing", "http://127.0.0.1:4444")
        .await
        .expect("register");
    server.write_raw(GO_ENTRY, "http://127.0.0.1:5555");

    let out = run(&server, &["ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three instances:\n{text}");
    assert_eq!(
        columns(lines[0]),
        ["SERVICE", "INSTANCE", "URL", "LEASE", "STATUS", "METADATA"]
    );
    let line_of = |name: &str| {
        *lines
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
    };
    let go = line_of(GO_ENTRY);
    assert_eq!(
        columns(go),
        [
            "provider",
            GO_ENTRY,
            "http://127.0.0.1:5555",
            "static",
            "up",
            "-"
        ],
        "a Go entry is up, with no metadata"
    );
    let rust = columns(line_of(me.name().as_str()));
    assert_eq!(rust[2], "http://127.0.0.1:3333", "{rust:?}");
    assert_eq!(rust[4..], ["up", "-"], "{rust:?}");
    let lease = rust[3];
    let secs: f64 = lease
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("lease {lease:?} is not seconds"));
    assert!(secs > 0.0 && secs <= 10.0, "{rust:?}");
    // Sorted by service: billing first.
    assert!(lines[1].starts_with("billing"), "{text}");

    let only = run(&server, &["ls", "provider"]).await;
    assert!(!stdout(&only).contains("billing"), "{}", stdout(&only));
    assert_eq!(stdout(&only).lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_json_parses_and_says_which_entries_are_static() {
    let server = RedisServer::start();
    let provider = client(&server).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    server.write_raw(GO_ENTRY, "http://127.0.0.1:5555");

    let out = run(&server, &["ls", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["instance"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {rows:?}"))
    };
    let go = row(GO_ENTRY);
    assert_eq!(go["service"], "provider");
    assert_eq!(go["url"], "http://127.0.0.1:5555");
    assert_eq!(go["static"], true);
    assert!(go["lease_ms"].is_null());
    assert_eq!(go["status"], "up");
    assert_eq!(go["metadata"], serde_json::json!({}));
    let rust = row(me.name().as_str());
    assert_eq!(rust["static"], false);
    let ms = rust["lease_ms"].as_u64().expect("lease_ms is a number");
    assert!(ms > 0 && ms <= 10_000, "{rust}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_shows_status_and_metadata_in_the_table_and_the_json() {
    let server = RedisServer::start();
    let provider = client_with(&server, &[("version", "2.1.0"), ("zone", "eu-1")]).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    me.set_status(gosd::Status::Draining)
        .await
        .expect("set status");
    let name = me.name().to_string();

    let out = run(&server, &["ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{text}"));
    assert_eq!(
        columns(line)[4..],
        ["draining", "version=2.1.0,zone=eu-1"],
        "{line}"
    );

    let out = run(&server, &["ls", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = &rows[0];
    assert_eq!(row["instance"], name.as_str(), "{rows}");
    assert_eq!(row["status"], "draining");
    assert_eq!(
        row["metadata"],
        serde_json::json!({"version": "2.1.0", "zone": "eu-1"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_refuses_a_live_lease_and_force_removes_it_saying_so() {
    let server = RedisServer::start();
    let provider = client(&server).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let name = me.name().to_string();

    let refused = run(&server, &["deregister", &name]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains("refused") && why.contains("live lease") && why.contains("--force"),
        "{why}"
    );
    assert!(
        exists(&server, &name),
        "a refused deregister removes nothing"
    );

    let forced = run(&server, &["deregister", &name, "--force"]).await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    let said = stdout(&forced);
    assert!(
        said.contains(&format!("removed {name}")) && said.contains("lease left"),
        "{said}"
    );
    assert!(!exists(&server, &name));

    // A Go entry has no lease: removed without --force.
    server.write_raw(GO_ENTRY, "http://127.0.0.1:5555");
    let go = run(&server, &["deregister", GO_ENTRY]).await;
    assert!(go.status.success(), "{}", stderr(&go));
    assert!(stdout(&go).contains("static entry"), "{}", stdout(&go));
    assert!(!exists(&server, GO_ENTRY));

    let missing = run(&server, &["deregister", GO_ENTRY]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no entry"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_registry() {
    let server = RedisServer::start();
    let (_listener, url) = listening().await;
    let provider = client(&server).await;
    let _me = provider.register("provider", &url).await.expect("register");
    // A Go entry whose instance answers: static, not a ghost.
    server.write_raw(GO_ENTRY, &url);

    let out = run(&server, &["doctor"]).await;
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    for check in [
        "connectivity",
        "latency",
        "server version",
        "key types",
        "clock skew",
        "ghosts",
        "change log",
    ] {
        assert!(
            report.contains(&format!("ok       {check}:")),
            "{check}:\n{report}"
        );
    }
    assert!(!report.contains("PROBLEM"), "{report}");
    assert!(report.contains("healthy"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_a_ghost_and_suggests_deregistering_it() {
    let server = RedisServer::start();
    let ghost_url = format!("http://127.0.0.1:{}", free_port());
    server.write_raw(GO_ENTRY, &ghost_url);

    let out = run(&server, &["doctor"]).await;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let ghost = report
        .lines()
        .find(|l| l.starts_with("PROBLEM  ghosts:"))
        .unwrap_or_else(|| panic!("no ghost reported:\n{report}"));
    assert!(
        ghost.contains(GO_ENTRY) && ghost.contains(&ghost_url),
        "{ghost}"
    );
    assert!(
        report.contains(&format!("gosd deregister {GO_ENTRY}")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_a_key_of_the_wrong_type_naming_it() {
    let server = RedisServer::start();
    let provider = client(&server).await;
    let _me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let _: () = redis::cmd("SET")
        .arg("{gosd}:log")
        .arg("not a list")
        .query(&mut server.connection())
        .expect("SET");

    let out = run(&server, &["doctor"]).await;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let wrong = report
        .lines()
        .find(|l| l.starts_with("PROBLEM  key types:"))
        .unwrap_or_else(|| panic!("no key type problem:\n{report}"));
    assert!(
        wrong.contains("`{gosd}:log` is a string, gosd needs a list"),
        "{wrong}"
    );
    assert!(report.contains("DEL '{gosd}:log'"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_an_unreachable_redis_naming_it() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = run_with(&[("gosdRedisAddr", &addr)], &["doctor"]).await;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = report
        .lines()
        .find(|l| l.starts_with("PROBLEM  connectivity:"))
        .unwrap_or_else(|| panic!("no connectivity problem:\n{report}"));
    assert!(
        line.contains(&addr) && line.contains("unreachable"),
        "{line}"
    );
    assert!(
        report.contains("gosdRedisAddr"),
        "the fix names the setting:\n{report}"
    );
}

/// `gosd watch provider` against `server`, and its output's lines.
fn watch_provider(server: &RedisServer) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = gosd(&[("gosdRedisAddr", &server.addr())], &["watch", "provider"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("gosd watch");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

/// The next line `gosd watch` prints.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("gosd watch still running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_line_for_a_registration_and_a_removal() {
    let server = RedisServer::start();
    let (mut child, mut lines) = watch_provider(&server);

    let provider = client(&server).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let name = me.name().to_string();
    // Another service's instance is not this watch's business.
    let _billing = client(&server)
        .await
        .register("billing", "http://127.0.0.1:4444")
        .await
        .expect("register");

    let inserted = next_line(&mut lines).await;
    assert!(
        inserted.ends_with(&format!(" insert {name} http://127.0.0.1:3333 up -")),
        "{inserted}"
    );
    me.finish().await.expect("deregister");
    let removed = next_line(&mut lines).await;
    assert!(
        removed.ends_with(&format!(" remove {name} http://127.0.0.1:3333")),
        "{removed}"
    );
    // The line starts with when it happened.
    let time = removed.split(' ').next().unwrap();
    humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time:?}: {e}"));
    child.kill().await.expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_line_for_a_status_change_with_the_metadata() {
    let server = RedisServer::start();
    let provider = client_with(&server, &[("version", "2")]).await;
    let me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let name = me.name().to_string();
    let (mut child, mut lines) = watch_provider(&server);
    let url = "http://127.0.0.1:3333";
    let first = next_line(&mut lines).await;
    assert!(
        first.ends_with(&format!(" insert {name} {url} up version=2")),
        "{first}"
    );

    me.set_status(gosd::Status::Down).await.expect("set status");
    let down = next_line(&mut lines).await;
    assert!(
        down.ends_with(&format!(" update {name} {url} down version=2")),
        "{down}"
    );
    me.set_status(gosd::Status::Up).await.expect("set status");
    let up = next_line(&mut lines).await;
    assert!(
        up.ends_with(&format!(" update {name} {url} up version=2")),
        "{up}"
    );
    child.kill().await.expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_a_service_follows_every_service() {
    let server = RedisServer::start();
    let provider = client(&server).await;
    let _me = provider
        .register("provider", "http://127.0.0.1:3333")
        .await
        .expect("register");
    let mut child = gosd(&[("gosdRedisAddr", &server.addr())], &["watch"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("gosd watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("gosd watch still running");
    assert!(
        first.contains(" insert provider-"),
        "what there is first: {first}"
    );
    let billing = client(&server)
        .await
        .register("billing", "http://127.0.0.1:4444")
        .await
        .expect("register");
    let next = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("gosd watch still running");
    assert!(
        next.ends_with(&format!(
            " insert {} http://127.0.0.1:4444 up -",
            billing.name()
        )),
        "{next}"
    );
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn a_bad_argument_is_a_usage_error() {
    for args in [
        &["deregister", "no_dash"][..],
        &["ls", "--nope"],
        &["frobnicate"],
        &[],
    ] {
        let out = run_with(&[], args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let said = stderr(&out);
        assert!(
            said.contains("Usage") || said.contains("--help"),
            "{args:?}: {said}"
        );
        if args.first() == Some(&"deregister") {
            assert!(said.contains("expected <service>-<id>"), "{said}");
        }
    }
}

#[tokio::test]
async fn a_bad_setting_is_the_library_error_naming_it_without_the_password() {
    let out = run_with(&[("gosdRedisDB", "x")], &["ls"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("gosdRedisDB=\"x\""),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("gosd doctor"),
        "a setting is no case for doctor"
    );

    let url = format!("redis://:hunter2@127.0.0.1:{}/0", free_port());
    for command in ["ls", "doctor", "deregister"] {
        let mut args = vec![command];
        if command == "deregister" {
            args.push(GO_ENTRY);
        }
        let out = run_with(
            &[("GOSD_REDIS_URL", &url), ("gosdTryRefreshAmount", "1")],
            &args,
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{command}");
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("unreachable"), "{command}: {said}");
        assert!(!said.contains("hunter2"), "{command}: {said}");
        if command != "doctor" {
            assert!(stderr(&out).contains("`gosd doctor`"), "{command}: {said}");
        }
    }
}
