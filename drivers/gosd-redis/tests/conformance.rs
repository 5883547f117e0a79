//! The shared driver conformance suite, against a real redis-server.

#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use gosd_driver::conformance::{self, Harness, LeaseReporting};
use gosd_redis::RedisDriver;
use redis_server::{RedisServer, free_port};

struct Redis {
    server: RedisServer,
}

impl Harness for Redis {
    type Driver = RedisDriver;
    /// Redis reaps lazily, on a read: clients come back at expiry.
    const LEASES: LeaseReporting = LeaseReporting::Reported;

    fn driver(&self) -> RedisDriver {
        RedisDriver::new(self.server.url().parse().expect("options"))
    }

    fn unreachable(&self) -> RedisDriver {
        RedisDriver::new(
            format!("redis://127.0.0.1:{}/0", free_port())
                .parse()
                .expect("options"),
        )
    }

    async fn wipe(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.server.connection())
            .expect("FLUSHALL");
    }

    async fn write_raw(&self, field: &str, value: &str) {
        self.server.write_raw(field, value);
    }
}

#[tokio::test]
async fn redis_driver_passes_the_conformance_suite() {
    let harness = Redis {
        server: RedisServer::start(),
    };
    conformance::run(&harness).await;
}
