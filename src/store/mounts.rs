//! `mounts/<sha256 of mountpoint>.json`: read-only image mounts (containers record theirs in their
//! own record), so `umount` finds the daemon to wait for and `rmi` knows the image is in use.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Store, records};
use crate::oci::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageMount {
    pub mountpoint: PathBuf,
    pub pid: i32,
    pub image: Digest,
}

impl Store {
    fn mount_record(&self, mountpoint: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let key = Digest::of_bytes(mountpoint.as_os_str().as_bytes());
        self.root.join("mounts").join(format!("{}.json", key.hex()))
    }

    pub fn image_mounts(&self) -> Result<Vec<ImageMount>> {
        let dir = self.root.join("mounts");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
        for e in entries {
            let p = e?.path();
            out.extend(records::read_runtime(&p));
        }
        Ok(out)
    }

    pub fn record_image_mount(&self, m: &ImageMount) -> Result<()> {
        self.ensure_writable()?;
        std::fs::create_dir_all(self.root.join("mounts"))?;
        records::write_runtime(&self.tmp_dir(), &self.mount_record(&m.mountpoint), m)
    }

    pub fn forget_image_mount(&self, mountpoint: &Path) -> Result<()> {
        self.ensure_writable()?;
        match std::fs::remove_file(self.mount_record(mountpoint)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
