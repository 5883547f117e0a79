//! Watches one service's route list change, live. Registers nothing.
//!
//! ```text
//! cargo run --example watch -- provider
//! ```
//! Follows `Client::watch_service`, gosd's stream of instance changes
//! (the instances that take new requests: one set draining or down leaves
//! it while another is up). Prints the current list, then one line per
//! change, as
//! `<unix_ms> <count> <url>,<url>,…` with the URLs sorted. Start and stop
//! providers in other terminals to see how fast changes arrive.
//!
//! With `--status` (`watch provider --status`) each URL is followed by its
//! instance's status, `<url>=up|draining|down`, and a status change prints
//! a line too: it follows the client's table instead of the stream.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use gosd::Change;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let Some(service) = std::env::args().nth(1) else {
        eprintln!("usage: watch <SERVICE> [--status]   e.g. watch provider");
        return ExitCode::from(2);
    };
    let with_status = std::env::args().nth(2).as_deref() == Some("--status");
    let client = match gosd::connect().await.and_then(|()| gosd::client()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watch: {e}");
            return ExitCode::FAILURE;
        }
    };
    if with_status {
        return watch_status(client, &service).await;
    }
    // gosd's change stream: the instances there are, then each change.
    let mut changes = client.watch_service(&service);
    let mut instances = BTreeMap::new();
    loop {
        // Take what is ready now too, so that a burst prints as one line.
        while let Some(next) = changes.next().now_or_never() {
            let Some(change) = next else {
                return ExitCode::SUCCESS;
            };
            apply(&mut instances, change);
        }
        let mut urls: Vec<&str> = instances
            .values()
            .map(|r: &gosd::Route| r.as_str())
            .collect();
        urls.sort_unstable();
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        match urls.is_empty() {
            true => println!("{ms} 0"),
            false => println!("{ms} {} {}", urls.len(), urls.join(",")),
        }
        match changes.next().await {
            Some(change) => apply(&mut instances, change),
            None => return ExitCode::SUCCESS,
        }
    }
}

fn apply(instances: &mut BTreeMap<gosd::InstanceName, gosd::Route>, change: Change) {
    match change {
        Change::Insert(name, route) => {
            instances.insert(name, route);
        }
        Change::Remove(name) => {
            instances.remove(&name);
        }
        // A kind of change this example does not know yet.
        _ => {}
    }
}

/// `--status`: prints the service's instances with their status whenever
/// the client's table changes them.
async fn watch_status(client: &gosd::Client, service: &str) -> ExitCode {
    let mut changes = client.changes();
    let mut last = None;
    loop {
        changes.borrow_and_update();
        let mut shown: Vec<String> = client
            .instances()
            .into_iter()
            .filter(|i| i.service == service)
            .map(|i| format!("{}={}", i.url, i.meta.status))
            .collect();
        shown.sort_unstable();
        if last.as_ref() != Some(&shown) {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            match shown.is_empty() {
                true => println!("{ms} 0"),
                false => println!("{ms} {} {}", shown.len(), shown.join(",")),
            }
            last = Some(shown);
        }
        if changes.changed().await.is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
