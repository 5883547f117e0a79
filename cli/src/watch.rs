//! `gosd watch [SERVICE]`: one line per change, live: an instance that
//! came, went, or changed its status or metadata.
//!
//! It follows the client's table (`Client::changes`, `Client::instances`),
//! as the `watch` example's `--status` does, rather than
//! `Client::watch_service`'s stream: that one reports only where
//! instances are, and a status change (a pushed `putm`) moves none.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use gosd::{Client, Instance};

use crate::Failure;
use crate::ls::pairs;

pub async fn run(service: Option<&str>) -> Result<ExitCode, Failure> {
    let client = Client::builder().config(crate::config()?).build().await?;
    let mut changes = client.changes();
    // What the last lines showed: a removal names the URL the instance had.
    let mut shown: BTreeMap<String, Instance> = BTreeMap::new();
    let mut out = std::io::stdout().lock();
    loop {
        // Seen before reading: a change during the read wakes us again.
        changes.borrow_and_update();
        let now: BTreeMap<String, Instance> = client
            .instances()
            .into_iter()
            .filter(|i| service.is_none_or(|s| i.service == s))
            .map(|i| (i.name.clone(), i))
            .collect();
        let lines = differences(
            &shown,
            &now,
            &humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        );
        // Into a closed pipe (`| head`): stop quietly.
        if lines
            .iter()
            .try_for_each(|line| writeln!(out, "{line}"))
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
        shown = now;
        if changes.changed().await.is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines from `before` to `after`, at `time`: `<time> remove
/// <instance> <url>`; `<time> insert <instance> <url> <status>
/// <metadata>` for one that is new or at another URL; `<time> update …`
/// (the same fields) for one whose status or metadata changed.
fn differences(
    before: &BTreeMap<String, Instance>,
    after: &BTreeMap<String, Instance>,
    time: &str,
) -> Vec<String> {
    let gone = before
        .iter()
        .filter(|(name, _)| !after.contains_key(*name))
        .map(|(name, i)| format!("{time} remove {name} {}", i.url));
    let changed = after.iter().filter_map(|(name, i)| {
        let verb = match before.get(name) {
            Some(old) if old == i => return None,
            Some(old) if old.url == i.url => "update",
            _ => "insert",
        };
        let (url, status, metadata) = (&i.url, i.meta.status, pairs(&i.meta));
        Some(format!("{time} {verb} {name} {url} {status} {metadata}"))
    });
    gone.chain(changed).collect()
}
