//! The shared driver conformance suite, against a real redis-server.

#[path = "../../../tests/support/certs.rs"]
mod certs;
#[path = "../../../tests/support/cluster.rs"]
mod cluster;
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use certs::Certs;
use gosd_driver::conformance::{self, Harness, LeaseReporting};
use gosd_redis::{RedisDriver, RedisOptions};
use redis_server::{RedisServer, free_port};

struct Redis {
    server: RedisServer,
    /// For a TLS server: its certificates, and the driver presents the
    /// client certificate.
    certs: Option<Certs>,
}

impl Redis {
    fn options(&self, url: &str) -> RedisOptions {
        let options: RedisOptions = url.parse().expect("options");
        match &self.certs {
            None => options,
            Some(c) => options
                .tls_ca(c.path("ca.pem"))
                .and_then(|o| o.tls_client_cert(c.path("client.pem"), c.path("client.key")))
                .expect("TLS options"),
        }
    }
}

impl Harness for Redis {
    type Driver = RedisDriver;
    /// Redis reaps lazily, on a read: clients come back at expiry.
    const LEASES: LeaseReporting = LeaseReporting::Reported;

    fn driver(&self) -> RedisDriver {
        RedisDriver::new(self.options(&self.server.url()))
    }

    fn unreachable(&self) -> RedisDriver {
        let scheme = if self.certs.is_some() {
            "rediss"
        } else {
            "redis"
        };
        RedisDriver::new(self.options(&format!("{scheme}://localhost:{}/0", free_port())))
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
        certs: None,
    };
    conformance::run(&harness).await;
}

/// Every connection (commands, the subscription, the one deregistration
/// opens) over mutual TLS, to a server that speaks nothing else.
#[tokio::test]
async fn redis_driver_passes_the_conformance_suite_over_mutual_tls() {
    let certs = Certs::new();
    let harness = Redis {
        server: RedisServer::start_tls(&certs.path(""), "yes"),
        certs: Some(certs),
    };
    conformance::run(&harness).await;
}

/// A Redis Cluster of 3 primaries with a replica each: the scripts and
/// reads go to the gosd slot's primary, events are sharded pub/sub.
struct Cluster(cluster::ClusterSet);

impl Harness for Cluster {
    type Driver = RedisDriver;
    const LEASES: LeaseReporting = LeaseReporting::Reported;

    fn driver(&self) -> RedisDriver {
        RedisDriver::new(
            RedisOptions::new()
                .cluster(&self.0.list())
                .expect("options"),
        )
    }

    fn unreachable(&self) -> RedisDriver {
        let list = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
        RedisDriver::new(RedisOptions::new().cluster(&list).expect("options"))
    }

    async fn wipe(&self) {
        self.0.on_primaries(&redis::cmd("FLUSHALL"));
    }

    async fn write_raw(&self, field: &str, value: &str) {
        let _: () = redis::cmd("HSET")
            .arg("gosd")
            .arg(field)
            .arg(value)
            .query(&mut self.0.owner_conn("gosd"))
            .expect("HSET");
    }
}

#[tokio::test]
async fn redis_driver_passes_the_conformance_suite_on_a_cluster() {
    let set = cluster::ClusterSet::start();
    // One slot for all of gosd's keys, the events' shard channel included.
    let slot = set.slot("gosd");
    for key in ["{gosd}:leases", "{gosd}:rev", "{gosd}:events", "{gosd}:log"] {
        assert_eq!(set.slot(key), slot, "{key}");
    }
    conformance::run(&Cluster(set)).await;
}
