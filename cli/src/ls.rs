//! `gosd ls [SERVICE] [--json]`: the instances a client sees, with their
//! leases, status and metadata.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use gosd::{Client, Meta};

use crate::Failure;

struct Row {
    service: String,
    instance: String,
    url: String,
    /// `None`: the entry has no lease (Go gosd's, or written by hand).
    lease: Option<Duration>,
    /// Up with none for an entry without metadata (Go gosd's).
    meta: Meta,
}

pub async fn run(service: Option<&str>, json: bool) -> Result<ExitCode, Failure> {
    let mut config = crate::config()?;
    // One read, then done: no subscription, no background refreshes.
    config.watch = false;
    config.cron = None;
    let client = Client::builder().config(config).build().await?;
    let leases = client.leases().await?;
    let mut rows: Vec<Row> = client
        .instances()
        .into_iter()
        .filter(|i| service.is_none_or(|s| i.service == s))
        .map(|i| Row {
            lease: leases.get(&i.name).copied(),
            meta: i.meta,
            service: i.service,
            instance: i.name,
            url: i.url.to_string(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", as_json(&rows))?;
    } else if rows.is_empty() {
        match service {
            Some(s) => eprintln!("no instance of {s:?} is registered"),
            None => eprintln!("no instance is registered"),
        }
    } else {
        write_table(&mut out, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn lease_left(lease: Option<Duration>) -> String {
    match lease {
        Some(left) => format!("{:.1}s", left.as_secs_f64()),
        None => "static".to_owned(),
    }
}

/// The metadata pairs as one word, `k=v,k=v` (sorted by key; keys and
/// values hold no `,` `=` or space), or `-` when there are none: a column
/// that is never empty, so that `awk` counts columns alike on every line.
pub fn pairs(meta: &Meta) -> String {
    let pairs: Vec<String> = meta.pairs().map(|(k, v)| format!("{k}={v}")).collect();
    match pairs.is_empty() {
        true => "-".to_owned(),
        false => pairs.join(","),
    }
}

fn write_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let header = ["SERVICE", "INSTANCE", "URL", "LEASE", "STATUS", "METADATA"].map(String::from);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.service.clone(),
                r.instance.clone(),
                r.url.clone(),
                lease_left(r.lease),
                r.meta.status.to_string(),
                pairs(&r.meta),
            ]
        })
        .collect();
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn as_json(rows: &[Row]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "service": r.service,
                "instance": r.instance,
                "url": r.url,
                "lease_ms": r.lease.map(|l| l.as_millis() as u64),
                "static": r.lease.is_none(),
                "status": r.meta.status.as_str(),
                "metadata": r
                    .meta
                    .pairs()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect()
}
