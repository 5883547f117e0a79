//! Watches one service's route list change, live. Registers nothing.
//!
//! ```text
//! cargo run --example watch -- provider
//! ```
//! Prints the current list, then one line per change, as
//! `<unix_ms> <count> <url>,<url>,…` with the URLs sorted. Start and stop
//! providers in other terminals to see how fast changes arrive.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let Some(service) = std::env::args().nth(1) else {
        eprintln!("usage: watch <SERVICE>   e.g. watch provider");
        return ExitCode::from(2);
    };
    let client = match gosd::connect().await.and_then(|()| gosd::client()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut changes = client.changes();
    let mut last = None;
    loop {
        // Mark the current version seen before reading the routes, so a
        // change made while we print is not missed.
        changes.borrow_and_update();
        let mut urls: Vec<String> = client
            .routes(&service)
            .iter()
            .map(|r| r.to_string())
            .collect();
        urls.sort();
        if last.as_ref() != Some(&urls) {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            match urls.is_empty() {
                true => println!("{ms} 0"),
                false => println!("{ms} {} {}", urls.len(), urls.join(",")),
            }
            last = Some(urls);
        }
        if changes.changed().await.is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
