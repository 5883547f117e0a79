//! The in-process registry behind `GOSD_DRIVER=memory`.

use gosd_memory::MemoryDriver;

/// The in-process registry that `GOSD_DRIVER=memory` selects: one per
/// process, shared by every client in it.
pub fn shared_memory_registry() -> MemoryDriver {
    static SHARED: std::sync::OnceLock<MemoryDriver> = std::sync::OnceLock::new();
    SHARED.get_or_init(MemoryDriver::new).clone()
}
