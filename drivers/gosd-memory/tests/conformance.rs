//! The shared driver conformance suite, on the in-process registry.

use gosd_driver::conformance::{self, Harness};
use gosd_memory::MemoryDriver;

struct Memory {
    registry: MemoryDriver,
    down: MemoryDriver,
}

impl Harness for Memory {
    type Driver = MemoryDriver;

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
