//! `gosd ls [SERVICE] [--json]`: the instances a client sees, with their
//! leases.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use gosd::Client;

use crate::Failure;

struct Row {
    service: String,
    instance: String,
    url: String,
    /// `None`: the entry has no lease (Go gosd's, or written by hand).
    lease: Option<Duration>,
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

fn write_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let header = ["SERVICE", "INSTANCE", "URL", "LEASE"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.service.clone(),
                r.instance.clone(),
                r.url.clone(),
                lease_left(r.lease),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, row: [&str; 4]| {
        let [s, i, u, l] = row;
        let [ws, wi, wu, _] = widths;
        writeln!(out, "{s:<ws$}  {i:<wi$}  {u:<wu$}  {l}")
    };
    line(out, header)?;
    for row in &cells {
        line(out, [&row[0], &row[1], &row[2], &row[3]])?;
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
            })
        })
        .collect()
}
