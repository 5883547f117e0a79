//! `gosd deregister NAME [--force]`: removes one entry, refusing one whose
//! lease is live unless forced.

use std::process::ExitCode;

use gosd::InstanceName;

use crate::Failure;

pub async fn run(name: &InstanceName, force: bool) -> Result<ExitCode, Failure> {
    let driver = crate::config()?.open_driver()?;
    let backend = driver.backend();
    let snapshot = driver.snapshot().await?;
    let Some(entry) = snapshot
        .entries
        .into_iter()
        .find(|e| e.field == name.as_str())
    else {
        return Err(format!(
            "{backend} has no entry {name}: nothing was removed (`gosd ls` lists the entries)"
        )
        .into());
    };
    let lease = driver
        .leases()
        .await?
        .into_iter()
        .find_map(|(field, left)| (field == name.as_str()).then_some(left));
    if let (Some(left), false) = (lease, force) {
        eprintln!(
            "gosd: refused: {name} ({}) has a live lease ({:.1} s left), so its instance \
             is running and renewing it. Stop that instance (it deregisters itself), or \
             pass --force to remove it anyway.",
            entry.url,
            left.as_secs_f64()
        );
        return Ok(ExitCode::FAILURE);
    }
    // Removes it only if it still maps to this URL: a name re-registered
    // elsewhere in between is left alone.
    if !driver.deregister(name, &entry.url).await? {
        return Err(format!(
            "{name} changed while being removed (it is gone, or at another URL now): \
             nothing was removed"
        )
        .into());
    }
    match lease {
        Some(left) => println!(
            "removed {name} ({}) from {backend}, with {:.1} s of its lease left. Its \
             instance, if still running, finds itself deregistered at its next heartbeat \
             and stops renewing: it stays out of the registry until it restarts.",
            entry.url,
            left.as_secs_f64()
        ),
        None => println!(
            "removed {name} ({}) from {backend}: a static entry (no lease)",
            entry.url
        ),
    }
    Ok(ExitCode::SUCCESS)
}
