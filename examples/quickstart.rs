//! gosd in one command, no external service:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//! Starts two providers and a consumer in this process; the consumer prints
//! ten bodies alternating between `"Provider: 1"` and `"Provider: 2"`.
//! With no Redis configured it uses the in-process memory registry; with
//! `gosdRedisAddr` or `GOSD_REDIS_URL` set it uses that Redis.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use gosd::{Client, Config, DriverKind};

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut config = Config::from_env()?;
    if config.driver == DriverKind::Redis && !config.redis.is_configured() {
        config.driver = DriverKind::Memory;
        println!(
            "No Redis configured (set gosdRedisAddr or GOSD_REDIS_URL to use one): using the in-process memory registry."
        );
    } else {
        println!(
            "Using the registry configured in the environment ({:?}).",
            config.driver
        );
    }

    let mut providers = Vec::new();
    for n in ["1", "2"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let client = Client::builder().config(config.clone()).build().await?;
        let me = client.register("provider", &url).await?;
        println!("provider {n}: registered as {me} at {url}");
        let refresh = {
            let client = client.clone();
            move || client.update_by_cron()
        };
        tokio::spawn(
            async move { axum::serve(listener, support::ping_app(n.into(), refresh)).await },
        );
        providers.push(me);
    }

    let consumer = Client::builder().config(config).build().await?;
    println!("consumer: 10 requests to GET <route>/ping");
    for _ in 0..10 {
        let route = consumer.iterate_service_route("provider").await?;
        println!("{}", support::http_get(&format!("{route}/ping")).await?);
    }

    for me in providers {
        me.finish().await?;
    }
    Ok(())
}
