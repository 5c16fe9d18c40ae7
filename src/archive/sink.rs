//! Where `save` puts files: a deterministic tar stream (fixed order, mtime 0, numeric owner 0:0,
//! fixed modes) or a directory (files staged beside their final name, then renamed in).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub trait Sink {
    fn dir(&mut self, path: &str) -> Result<()>;
    /// Writes exactly `size` bytes from `data` (a reader that errors on a mismatch aborts the save).
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()>;
    fn symlink(&mut self, path: &str, target: &str) -> Result<()>;
    /// Already written (or, for a directory, already present): shared blobs are written once.
    fn has(&self, path: &str) -> bool;

    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.file(path, data.len() as u64, &mut &data[..])
    }
}

pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    written: HashSet<String>,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> Self {
        TarSink { builder: tar::Builder::new(out), written: HashSet::new() }
    }

    /// Writes the end-of-archive blocks and returns the stream.
    pub fn finish(self) -> Result<W> {
        self.builder.into_inner().context("cannot finish the archive")
    }

    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).with_context(|| format!("cannot name archive member {path}"))?;
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        Ok(h)
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &mut dyn Read) -> Result<()> {
        h.set_cksum();
        self.builder.append(&h, data).with_context(|| format!("cannot write {path}"))?;
        self.written.insert(path.trim_end_matches('/').to_string());
        Ok(())
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> Result<()> {
        let h = Self::header(&format!("{path}/"), tar::EntryType::Directory, 0o755, 0)?;
        self.append(h, path, &mut io::empty())
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let h = Self::header(path, tar::EntryType::Regular, 0o644, size)?;
        self.append(h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(path, tar::EntryType::Symlink, 0o777, 0)?;
        h.set_link_name(target).with_context(|| format!("cannot link {path} to {target}"))?;
        self.append(h, path, &mut io::empty())
    }

    fn has(&self, path: &str) -> bool {
        self.written.contains(path)
    }
}

pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: &Path) -> Result<DirSink> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        Ok(DirSink { root: root.to_path_buf() })
    }
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        let p = self.root.join(path);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))
    }

    fn file(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> Result<()> {
        let dest = self.root.join(path);
        let staged = super::save::partial_path(&dest)?;
        let result = (|| {
            let mut f =
                File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
            io::copy(data, &mut f).with_context(|| format!("cannot write {}", dest.display()))?;
            f.sync_all().with_context(|| format!("cannot sync {}", staged.display()))?;
            std::fs::rename(&staged, &dest).with_context(|| format!("cannot write {}", dest.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        result
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let p = self.root.join(path);
        std::os::unix::fs::symlink(target, &p).with_context(|| format!("cannot create {}", p.display()))
    }

    fn has(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }
}
