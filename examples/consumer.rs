//! A consumer, as in gosd's README: registers nothing, makes N requests to
//! `GET <route>/ping` through `iterate_service_route`, prints each body.
//!
//! ```text
//! cargo run --example consumer -- [N=10] [SERVICE=provider]
//! ```
//! An instance that cannot be reached (connect error or timeout) is skipped
//! for the next one, and its route deleted at its third unreachable answer
//! in a row. An error status is reported, not acted on: the instance is
//! alive. Exits non-zero if any request failed.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::ExitCode;

use support::GetError;

/// One request goes to at most this many instances, moving on when one
/// cannot be reached.
const TRIES: usize = 3;

/// A route is deleted after this many unreachable answers in a row, as the
/// seed advises (3 to 5): one lost connection is no proof that an
/// instance is gone, and for an entry without a lease (a Go gosd provider)
/// deleting it removes it from the registry for every consumer, for good.
const UNREACHABLE_IN_A_ROW: u32 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: consumer [N=10] [SERVICE=provider]");
            return ExitCode::from(2);
        }
    };
    let service = args.next().unwrap_or_else(|| "provider".to_owned());
    let client = match gosd::connect().await.and_then(|()| gosd::client()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    // gosd looks again before giving up (gosdTryFindServiceAmount times,
    // gosdTryFindServiceDelay apart: 5 × 3 s by default); say so rather
    // than sit silent.
    if client.routes(&service).is_empty() {
        eprintln!(
            "consumer: no instance of {service:?} is registered yet; waiting for one \
             (gosdTryFindServiceAmount × gosdTryFindServiceDelay, 5 × 3 s by default)"
        );
    }
    let mut unreachable = Unreachable::default();
    let mut failed = 0;
    for _ in 0..n {
        match request(&service, &mut unreachable).await {
            Ok(body) => println!("{body}"),
            // No route at all: nothing more to try.
            Err(Failure::Gosd(e)) => {
                eprintln!("consumer: {e}");
                return ExitCode::FAILURE;
            }
            // Reported; the next request goes on.
            Err(Failure::Get(e)) => {
                eprintln!("consumer: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("consumer: {failed} of {n} requests failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

enum Failure {
    Gosd(gosd::Error),
    Get(GetError),
}

/// Unreachable answers in a row, per route.
#[derive(Default)]
struct Unreachable(HashMap<String, u32>);

impl Unreachable {
    /// Counts one; true when the route has now failed often enough to go.
    fn count(&mut self, route: &str) -> bool {
        let n = self.0.entry(route.to_owned()).or_default();
        *n += 1;
        *n >= UNREACHABLE_IN_A_ROW
    }

    fn forget(&mut self, route: &str) {
        self.0.remove(route);
    }
}

async fn request(service: &str, unreachable: &mut Unreachable) -> Result<String, Failure> {
    let mut last = None;
    for _ in 0..TRIES {
        let route = gosd::iterate_service_route(service)
            .await
            .map_err(Failure::Gosd)?;
        let route = route.to_string();
        match support::http_get(&format!("{route}/ping")).await {
            Ok(body) => {
                unreachable.forget(&route);
                return Ok(body);
            }
            Err(e @ GetError::Unreachable(_)) => {
                if unreachable.count(&route) {
                    tracing::warn!(%route, error = %e, "unreachable {UNREACHABLE_IN_A_ROW} times in a row; deleting the route");
                    gosd::delete_service_with_url(&route)
                        .await
                        .map_err(Failure::Gosd)?;
                    unreachable.forget(&route);
                } else {
                    tracing::warn!(%route, error = %e, "unreachable; trying another instance");
                }
                last = Some(e);
            }
            // The instance answered: it is alive, whatever it said.
            Err(e) => {
                unreachable.forget(&route);
                return Err(Failure::Get(e));
            }
        }
    }
    Err(Failure::Get(last.unwrap_or_else(|| {
        GetError::Other("no attempt made".into())
    })))
}
