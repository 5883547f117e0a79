//! `gosd`: list, watch, remove and check the instances of a gosd registry
//! from a shell. It reads gosd's own settings from the environment
//! (`gosdRedisAddr`, `GOSD_REDIS_URL`, `GOSD_KEY`, `GOSD_DRIVER`, …), as
//! every gosd client does, and registers nothing.
//!
//! Exit status: 0 when done (for `doctor`: nothing wrong), 1 when it
//! failed or found a problem, 2 for a bad argument.

mod deregister;
mod doctor;
mod ls;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gosd::{Config, DriverKind, InstanceName};

/// The gosd registry from a shell. Settings come from gosd's environment
/// variables (gosdRedisAddr, GOSD_REDIS_URL, GOSD_KEY, GOSD_DRIVER, ...).
#[derive(Parser)]
#[command(name = "gosd", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List instances: service, instance name, URL, lease left ("static"
    /// for entries without a lease, such as Go gosd's), status (up,
    /// draining, down) and metadata (k=v,k=v, or - for none).
    Ls {
        /// Only this service's instances.
        service: Option<String>,
        /// One JSON array of {service, instance, url, lease_ms, static,
        /// status, metadata}.
        #[arg(long)]
        json: bool,
    },
    /// Print one line per change, live: `<time> insert <instance> <url>
    /// <status> <metadata>`, `<time> update …` (the same fields: its status
    /// or metadata changed) or `<time> remove <instance> <url>`, starting
    /// with an insert for each instance there is.
    Watch {
        /// Only this service's instances.
        service: Option<String>,
    },
    /// Remove one entry. An instance with a live lease is refused unless
    /// --force: it is running, and stopping it deregisters it.
    Deregister {
        /// The instance, `<service>-<id>`, as `gosd ls` shows it.
        #[arg(value_parser = instance_name)]
        name: InstanceName,
        /// Remove it even if its lease is live.
        #[arg(long)]
        force: bool,
    },
    /// Check the registry: connectivity and latency, server version, key
    /// types, clock skew, ghosts (lease-less entries nothing answers at),
    /// the change log. Exits 1 if anything is wrong, saying how to fix it.
    Doctor,
}

fn instance_name(s: &str) -> Result<InstanceName, String> {
    InstanceName::parse(s)
        .ok_or_else(|| "expected <service>-<id>, e.g. provider-20160315122936.17256541".to_owned())
}

/// What a command failed with: the library's errors as they are (they name
/// the variable, the value and the backend, never a password), or the
/// command's own message.
type Failure = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // gosd logs through tracing, to stderr, apart from the output, unless
    // RUST_LOG says otherwise: errors only for a command that reports its
    // own failure (the client's "registry lost; retrying" would only
    // repeat it), warnings too for `watch`, which runs on through an
    // outage and should say so.
    let level = match args.command {
        Command::Watch { .. } => "warn",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let outcome = match args.command {
        Command::Ls { service, json } => ls::run(service.as_deref(), json).await,
        Command::Watch { service } => watch::run(service.as_deref()).await,
        Command::Deregister { name, force } => deregister::run(&name, force).await,
        Command::Doctor => doctor::run().await,
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("gosd: {e}");
        if is_registry_error(&*e) {
            eprintln!("gosd: `gosd doctor` checks the registry and says how to fix what it finds");
        }
        ExitCode::FAILURE
    })
}

/// Whether the registry failed (not a setting or an argument): then
/// `doctor` can tell more.
fn is_registry_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<gosd::DriverError>()
        || matches!(
            e.downcast_ref::<gosd::Error>(),
            Some(gosd::Error::Driver(_) | gosd::Error::Unreachable { .. })
        )
}

/// gosd's configuration from the environment, for a tool in a process of
/// its own: the in-process memory registry would always be empty here.
fn config() -> Result<Config, Failure> {
    let config = Config::from_env()?;
    if config.driver == DriverKind::Memory {
        return Err("GOSD_DRIVER=memory is a registry inside one process: \
                    this command would see an empty one; use redis or etcd"
            .into());
    }
    Ok(config)
}
