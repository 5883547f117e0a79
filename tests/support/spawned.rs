//! Starting a server process for a test and waiting for its own "ready"
//! log line, so no test sleeps waiting for it.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Which of the child's outputs carries its log.
pub enum Log {
    Stdout,
    Stderr,
}

/// Spawns `cmd` and waits up to `within` for a log line containing one
/// of `ready`. `None` (and the child killed) if it never came. Panics with
/// `install` when the program is not installed.
pub fn spawn_until_ready(
    mut cmd: Command,
    log: Log,
    ready: &'static [&'static str],
    within: Duration,
    install: &str,
) -> Option<Child> {
    match log {
        Log::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::null()),
        Log::Stderr => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{install}"),
        Err(e) => panic!("could not run {:?}: {e}", cmd.get_program()),
    };
    let output: Box<dyn Read + Send> = match log {
        Log::Stdout => Box::new(child.stdout.take().expect("piped stdout")),
        Log::Stderr => Box::new(child.stderr.take().expect("piped stderr")),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    // Keeps draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if ready.iter().any(|r| line.contains(r)) {
                let _ = ready_tx.send(());
            }
        }
    });
    match ready_rx.recv_timeout(within) {
        Ok(()) => Some(child),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}
