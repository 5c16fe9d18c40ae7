//! Docker's `commit --pause` (its default): a running container's processes are frozen through
//! the runtime (`runc pause`, the cgroup freezer) while its layer is packed, and resumed after,
//! also when packing fails. The mount's own freeze (fs/freeze.rs) holds the changes that reach
//! the daemon; pausing also stops writes to files already open, which FUSE passthrough sends
//! straight to the writable layer.

use anyhow::{Result, bail};

use super::runtime::Runtime;
use super::status::{self, Status};
use crate::store::Store;
use crate::store::containers::ContainerRecord;

/// A paused container, resumed on drop.
pub struct Paused {
    runtime: Runtime,
    id: String,
}

/// Pauses `c` if it is running; `None` when it is not (nothing to pause).
pub fn pause(store: &Store, c: &ContainerRecord) -> Result<Option<Paused>> {
    if status::status(c) != Status::Running {
        return Ok(None);
    }
    let runtime = super::lifecycle::runtime_of(store, c)?;
    let out = runtime.command(None).arg("pause").arg(&c.id).stdin(std::process::Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "pausing container {} ({}): {} (commit --pause=false commits without pausing)",
            c.name,
            runtime.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(Paused { runtime, id: c.id.clone() }))
}

impl Drop for Paused {
    fn drop(&mut self) {
        let out = self
            .runtime
            .command(None)
            .arg("resume")
            .arg(&self.id)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "strata: warning: resuming container {}: {} ({} resume {} may help)",
                self.id,
                String::from_utf8_lossy(&o.stderr).trim(),
                self.runtime.name,
                self.id
            ),
            Err(e) => eprintln!("strata: warning: resuming container {}: {e}", self.id),
        }
    }
}
