//! A gRPC consumer: N health checks through one channel balanced over
//! every instance of `grpc-provider` (`gosd::tonic::balanced_channel`),
//! printing `Provider: <n>` for each, as the answering provider's
//! `x-provider` header says.
//!
//! ```text
//! cargo run --features tonic --example grpc_consumer -- [N=10] [SERVICE=grpc-provider]
//! ```
//! Exits non-zero if any call failed.

mod support;

use std::process::ExitCode;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: grpc_consumer [N=10] [SERVICE=grpc-provider]");
            return ExitCode::from(2);
        }
    };
    let service = args.next().unwrap_or_else(|| "grpc-provider".to_owned());
    let client = match gosd::connect().await.and_then(|()| gosd::client()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("grpc_consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Waits for a first instance (or says there is none), as any pick does.
    if let Err(e) = client.iterate_service_route(&service).await {
        eprintln!("grpc_consumer: {e}");
        return ExitCode::FAILURE;
    }
    let mut health = HealthClient::new(gosd::tonic::balanced_channel(client, &service));
    let mut failed = 0;
    for _ in 0..n {
        match health.check(HealthCheckRequest::default()).await {
            Ok(answer) => {
                let who = answer
                    .metadata()
                    .get("x-provider")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                println!("Provider: {who}");
            }
            Err(e) => {
                eprintln!("grpc_consumer: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("grpc_consumer: {failed} of {n} calls failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
