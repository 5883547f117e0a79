//! `gosd watch [SERVICE]`: one line per change, live, from gosd's change
//! stream (`Client::watch_all_services` / `Client::watch_service`).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use gosd::{Change, Client};

use crate::Failure;

pub async fn run(service: Option<&str>) -> Result<ExitCode, Failure> {
    let client = Client::builder().config(crate::config()?).build().await?;
    let mut changes = match service {
        Some(s) => client.watch_service(s),
        None => client.watch_all_services(),
    };
    // A removal names only the instance; its line shows the URL it had.
    let mut urls = HashMap::new();
    let mut out = std::io::stdout().lock();
    while let Some(change) = changes.next().await {
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        let line = match change {
            Change::Insert(name, route) => {
                let line = format!("{now} insert {name} {route}");
                urls.insert(name, route);
                line
            }
            Change::Remove(name) => {
                let url = urls
                    .remove(&name)
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                format!("{now} remove {name} {url}")
            }
            // A kind of change this build does not know: the next line
            // shows the state it led to.
            _ => continue,
        };
        // Into a closed pipe (`| head`): stop quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
