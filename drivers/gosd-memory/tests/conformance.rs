//! The shared driver conformance suite, on the in-process registry.

use gosd_driver::conformance::{self, Harness, LeaseReporting};
use gosd_memory::MemoryDriver;

struct Memory {
    registry: MemoryDriver,
    down: MemoryDriver,
}

impl Harness for Memory {
    type Driver = MemoryDriver;
    /// Leases run on the process clock; clients come back at expiry.
    const LEASES: LeaseReporting = LeaseReporting::Reported;

    fn driver(&self) -> MemoryDriver {
        self.registry.clone()
    }

    fn unreachable(&self) -> MemoryDriver {
        self.down.clone()
    }

    async fn wipe(&self) {
        self.registry.wipe();
    }

    async fn write_raw(&self, field: &str, value: &str) {
        self.registry.write_raw(field, value);
    }
}

#[tokio::test]
async fn memory_driver_passes_the_conformance_suite() {
    let down = MemoryDriver::new();
    down.set_reachable(false);
    let harness = Memory {
        registry: MemoryDriver::new(),
        down,
    };
    conformance::run(&harness).await;
}
