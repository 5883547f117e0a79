//! TLS against a real redis-server: what works, and what each mistake
//! looks like. Every failure says which setting to fix.

#[path = "../../../tests/support/certs.rs"]
mod certs;
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use certs::Certs;
use gosd_driver::{Driver, DriverError};
use gosd_redis::{RedisDriver, RedisOptions};
use redis_server::RedisServer;

/// The error a first command gets, shown as a user sees it.
async fn failure(options: RedisOptions) -> String {
    let driver = RedisDriver::new(options);
    match driver.snapshot().await {
        Ok(s) => panic!("expected a failure, got {s:?}"),
        Err(e @ DriverError::Unavailable { .. }) => e.to_string(),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
    }
}

async fn works(options: RedisOptions) {
    let driver = RedisDriver::new(options);
    let name = gosd_driver::InstanceName::parse("svc-1").unwrap();
    assert!(
        driver
            .register(&name, "http://a", std::time::Duration::from_secs(30))
            .await
            .expect("register over TLS")
    );
    assert!(
        driver
            .deregister(&name, "http://a")
            .await
            .expect("deregister")
    );
}

fn tls(server: &RedisServer) -> RedisOptions {
    RedisOptions::from_url(&server.url()).expect("rediss URL")
}

#[tokio::test]
async fn a_private_ca_is_trusted_and_a_client_certificate_is_optional_where_the_server_says_so() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.path(""), "optional");
    works(tls(&server).tls_ca(certs.path("ca.pem")).unwrap()).await;
    let mtls = tls(&server)
        .tls_ca(certs.path("ca.pem"))
        .and_then(|o| o.tls_client_cert(certs.path("client.pem"), certs.path("client.key")))
        .unwrap();
    works(mtls).await;
}

#[tokio::test]
async fn each_tls_mistake_names_what_to_fix() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.path(""), "yes");
    let plain = RedisServer::start();
    let ca = |o: RedisOptions, file: &str| o.tls_ca(certs.path(file)).unwrap();
    let client = |o: RedisOptions, name: &str| {
        o.tls_client_cert(
            certs.path(&format!("{name}.pem")),
            certs.path(&format!("{name}.key")),
        )
        .unwrap()
    };

    let cases = [
        (
            "the system roots do not know the test CA",
            client(tls(&server), "client"),
            "set GOSD_REDIS_CA",
        ),
        (
            "another CA",
            client(ca(tls(&server), "other-ca.pem"), "client"),
            "set GOSD_REDIS_CA",
        ),
        (
            "no client certificate where one is required",
            ca(tls(&server), "ca.pem"),
            "set GOSD_REDIS_CERT and GOSD_REDIS_KEY",
        ),
        (
            "a client certificate from a CA the server does not trust",
            client(ca(tls(&server), "ca.pem"), "stranger"),
            "refused the client certificate",
        ),
        (
            "plain text to the TLS port",
            RedisOptions::from_url(&format!("redis://127.0.0.1:{}", server.port())).unwrap(),
            "if this port speaks TLS, use a rediss:// URL",
        ),
        (
            "TLS to a plain port",
            RedisOptions::from_url(&format!("rediss://localhost:{}", plain.port())).unwrap(),
            // Which one depends on whether the hello's random bytes hold a
            // newline, after which Redis answers with an error in plain text.
            "use redis://",
        ),
    ];
    for (case, options, hint) in cases {
        let shown = failure(options).await;
        println!("{case}: {shown}");
        assert!(shown.contains(hint), "{case}: {shown}");
    }
}
