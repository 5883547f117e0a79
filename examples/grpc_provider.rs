//! A gRPC provider: registers service `grpc-provider` and serves the
//! standard gRPC health service (`grpc.health.v1.Health`, whose code
//! tonic-health ships: no protoc), answering SERVING with its number in
//! the `x-provider` response header.
//!
//! ```text
//! cargo run --features tonic --example grpc_provider -- :PORT N
//! ```
//! `:PORT` listens on every interface and registers `http://localhost:PORT`;
//! `host:port` listens there and registers `http://host:port`. Every
//! request gives gosd a chance to refresh (`gosd::layer::UpdateByCron`).
//! On SIGINT/SIGTERM it deregisters, then exits with status 130/143.

mod support;

use std::process::ExitCode;

use tonic::codegen::http;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(n)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: grpc_provider <:port | host:port> <number>   e.g. grpc_provider :50051 1"
        );
        return ExitCode::from(2);
    };
    let Ok(number) = http::HeaderValue::from_str(&n) else {
        eprintln!("grpc_provider: {n:?} cannot go in a header");
        return ExitCode::from(2);
    };
    let (bind, url) = match listen.strip_prefix(':') {
        Some(port) => (
            format!("0.0.0.0:{port}"),
            format!("http://localhost:{port}"),
        ),
        None => (listen.clone(), format!("http://{listen}")),
    };
    // Listen before registering: nobody should be routed to a port we could not take.
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("grpc_provider: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = match gosd::start("grpc-provider", &url).await {
        Ok(me) => me,
        Err(e) => {
            eprintln!("grpc_provider: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("registered as {me}");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let tag =
        tower::util::MapResponseLayer::new(move |mut r: http::Response<tonic::body::Body>| {
            r.headers_mut().insert("x-provider", number.clone());
            r
        });
    let served = Server::builder()
        .layer(gosd::layer::UpdateByCron::global())
        .layer(tag)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await;
    if let Err(e) = served {
        eprintln!("grpc_provider: {e}");
        return ExitCode::FAILURE;
    }
    drop(me);
    ExitCode::SUCCESS
}
