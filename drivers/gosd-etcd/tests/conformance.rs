//! The shared driver conformance suite, against a real etcd.

#[path = "../../../tests/support/etcd_server.rs"]
mod etcd_server;

use etcd_client::{Client, DeleteOptions, PutOptions};
use etcd_server::EtcdServer;
use gosd_driver::conformance::{self, Harness, LeaseReporting};
use gosd_driver::{Driver, Fetched, InstanceName};
use gosd_etcd::{EtcdDriver, EtcdOptions};

struct Etcd {
    server: EtcdServer,
}

impl Etcd {
    async fn client(&self) -> Client {
        Client::connect([self.server.endpoint()], None)
            .await
            .expect("connect to the test etcd")
    }
}

impl Harness for Etcd {
    type Driver = EtcdDriver;
    /// etcd's lessor deletes the key and the watch pushes the removal.
    const LEASES: LeaseReporting = LeaseReporting::ExpiredByTheBackend;

    fn driver(&self) -> EtcdDriver {
        EtcdDriver::new(EtcdOptions::new([self.server.endpoint()], "/gosd").expect("options"))
    }

    fn unreachable(&self) -> EtcdDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        EtcdDriver::new(
            EtcdOptions::new([format!("http://127.0.0.1:{port}")], "/gosd").expect("options"),
        )
    }

    /// What a member restarted without its data dir looks like to gosd:
    /// no keys, no leases.
    async fn wipe(&self) {
        let mut c = self.client().await;
        for lease in c.leases().await.expect("list leases").leases() {
            c.lease_revoke(lease.id()).await.expect("revoke");
        }
        c.delete("", Some(DeleteOptions::new().with_all_keys()))
            .await
            .expect("delete all");
    }

    async fn write_raw(&self, field: &str, value: &str) {
        let key = self.driver().key_of(field);
        self.client()
            .await
            .put(key, value, None::<PutOptions>)
            .await
            .expect("put");
    }
}

#[tokio::test]
async fn etcd_driver_passes_the_conformance_suite() {
    let harness = Etcd {
        server: EtcdServer::start(),
    };
    conformance::run(&harness).await;
}

/// An etcd that restarts with an empty data dir counts revisions from 1
/// again, so a generation taken from etcd's own numbering would repeat and
/// a stale `known` version would pass for current. The generation is a
/// fresh number instead.
#[tokio::test]
async fn a_restart_with_no_data_is_a_new_generation() {
    let mut server = EtcdServer::start();
    let d = EtcdDriver::new(EtcdOptions::new([server.endpoint()], "/gosd").expect("options"));
    let ttl = std::time::Duration::from_secs(30);
    let a = InstanceName::parse("svc-1").unwrap();
    d.register(&a, "http://a", ttl).await.unwrap();
    let known = d.snapshot().await.unwrap().version;

    server.restart_empty();
    let d = EtcdDriver::new(EtcdOptions::new([server.endpoint()], "/gosd").expect("options"));
    let b = InstanceName::parse("svc-2").unwrap();
    d.register(&b, "http://b", ttl).await.unwrap();
    let now = d.snapshot().await.unwrap().version;
    assert_ne!(now.generation, known.generation, "{known:?} -> {now:?}");
    assert!(
        matches!(d.fetch(Some(known)).await.unwrap(), Fetched::Changed(_)),
        "a fetch with the old version must see the new registry"
    );
}
