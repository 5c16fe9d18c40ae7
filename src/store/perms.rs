//! Store directories are closed to other users, whatever the umask: layer trees hold other
//! images' setuid binaries, file-capability binaries and device nodes, which a local user must
//! never reach through the store (Docker's CVE-2021-41091). The root and the few directories
//! under it that gate every path (`GATES` in `mod.rs`) are 0700; a group may keep search
//! permission (0710), which Docker and containers/storage use where a mount needs traversal.
//! Deeper directories need no walk: nothing below a closed directory is reachable.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Permission bits a store directory may have beyond the owner's: group search only.
const ALLOWED_OTHERS: u32 = 0o010;

/// Creates `dir` (and missing parents) 0700, or narrows an existing one that others can read,
/// write or (for everyone) search. Cheap: one stat when nothing is to change.
pub fn private_dir(dir: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create store directory {}", dir.display()))?;
            std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?
        }
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", dir.display())),
    };
    if !meta.is_dir() {
        // The root itself may be a symlink to a directory; the directories under it may not.
        if meta.file_type().is_symlink() && std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            return narrow(dir, std::fs::metadata(dir)?.permissions().mode());
        }
        anyhow::bail!("store directory {} is not a directory", dir.display());
    }
    narrow(dir, meta.permissions().mode())
}

/// The owner keeps rwx (a umask of 0777 must not lock the store out); others lose everything,
/// except a group search bit set on purpose (group `--x`: a wide 0755 store becomes 0700, since
/// the group could otherwise walk into old layer directories still 0755 below).
fn narrow(dir: &Path, mode: u32) -> Result<()> {
    let deliberate = mode & 0o077 == ALLOWED_OTHERS;
    let want = if deliberate { 0o710 } else { 0o700 };
    if mode & 0o777 == want {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(want))
        .with_context(|| format!("cannot make store directory {} private (chmod {want:o})", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrows_what_others_may_do_and_keeps_group_search() {
        let t = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let wide = t.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&wide).unwrap();
        assert_eq!(mode(&wide), 0o700);
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&wide).unwrap();
        assert_eq!(mode(&wide), 0o700);
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o510)).unwrap();
        private_dir(&wide).unwrap();
        assert_eq!(mode(&wide), 0o710);
        let fresh = t.path().join("a/b");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
