//! The status page in a real browser (Debian's chromium, driven by
//! playwright-core): a registered instance is shown; when it stops, the page
//! shows it gone without a reload, following the router's live feed
//! (`/-/events`) rather than polling. The screenshot it takes is kept in
//! the target directory (`$CARGO_TARGET_DIR`, by default `target/`), as
//! status-page.png.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gosd_router::{Router, RouterConfig};
use support::{Proc, RedisServer, client, routes_become};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails (never skips) with what to install when the browser is missing.
fn check_browser_installed() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: the status page test needs a real browser. \
         Install it with `apt-get install -y chromium`, or run `bash .ci/run`, which does."
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix router/tests/browser` \
         (needs node and npm), or `bash .ci/run`, which does."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_an_instance_and_then_its_departure_live() {
    check_browser_installed();
    let server = RedisServer::start();
    let (mut provider, name, _) = Proc::provider(&server, "1", &[]);
    let client = client(&server).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Router::new(client.clone(), RouterConfig::default()).serve(
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    routes_become(&client, "provider", "the provider", |r| r.len() == 1).await;

    let shot = support::target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = Command::new("node")
        .arg(browser_dir().join("status_page.mjs"))
        .arg(format!("http://{addr}/-/"))
        .arg(&shot)
        .env("INSTANCE", &name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is needed to drive the browser: install nodejs and npm");
    let mut said = BufReader::new(browser.stdout.take().unwrap()).lines();
    let line = tokio::task::block_in_place(|| said.next());
    assert_eq!(
        line.and_then(Result::ok).as_deref(),
        Some("SHOWN"),
        "the page never showed {name}"
    );

    provider.signal("TERM");
    assert_eq!(provider.wait(), Some(143));
    browser
        .stdin
        .take()
        .unwrap()
        .write_all(b"stopped\n")
        .unwrap();
    let line = tokio::task::block_in_place(|| said.next());
    assert_eq!(
        line.and_then(Result::ok).as_deref(),
        Some("GONE"),
        "the page never showed {name} gone"
    );
    let status = tokio::task::block_in_place(|| browser.wait()).unwrap();
    assert!(status.success(), "the browser script failed");
    assert!(shot.exists(), "a screenshot was taken");
    let _ = stop.send(());
}
