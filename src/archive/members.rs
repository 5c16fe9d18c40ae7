//! Random access to the files of an image archive: a tar file indexed once (name → data offset and
//! size, read back by offset, never re-scanned) or a layout directory on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::layer::range::FileRange;
use crate::layer::targuard::{ExtensionTooLong, HeaderGuard};

/// Small JSON members (manifest.json, manifests, configs, indexes) are read whole and parsed
/// into a tree several times their size: capped at 16 MiB, four times what a pull accepts for a
/// config (a manifest.json naming 100,000 tags is about 5 MiB).
const MAX_JSON: u64 = 16 << 20;

/// The files of an archive or layout, by normalised relative name (`blobs/sha256/…`, `manifest.json`).
pub trait Members {
    /// The input's name for error messages (the file or directory the user gave).
    fn describe(&self) -> &str;
    /// The size of a regular file member, if it exists.
    fn size(&self, name: &str) -> Option<u64>;
    /// Streams a member's bytes.
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>>;

    fn contains(&self, name: &str) -> bool {
        self.size(name).is_some()
    }

    /// Reads a small member whole (JSON documents).
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let size = self.size(name).with_context(|| format!("{name} is missing"))?;
        if size > MAX_JSON {
            bail!(
                "{name} is {size} bytes, too large for a JSON document (the limit is {MAX_JSON} bytes, 16 MiB)"
            );
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(name)?.read_to_end(&mut buf).with_context(|| format!("cannot read {name}"))?;
        Ok(buf)
    }
}

/// `./a//b/../c` → `a/c`; `None` when the name climbs out of the root.
pub fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

enum Node {
    File {
        offset: u64,
        size: u64,
    },
    /// Target already resolved against the link's directory (docker save links duplicate layers).
    Symlink(String),
    HardLink(String),
    Other,
}

/// A tar file read once for its headers.
pub struct TarIndex {
    name: String,
    file: File,
    nodes: HashMap<String, Node>,
}

impl TarIndex {
    pub fn new(mut file: File, name: &str) -> Result<TarIndex> {
        // Whoever sniffed the compression (or spooled into the file) left the cursor elsewhere.
        file.seek(SeekFrom::Start(0)).with_context(|| format!("{name}: cannot seek"))?;
        let len = file.metadata().with_context(|| format!("{name}: cannot stat"))?.len();
        let mut nodes = HashMap::new();
        let mut archive = tar::Archive::new(HeaderGuard::new(&file));
        let entries = archive.entries_with_seek().with_context(|| format!("{name}: not a tar archive"))?;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if ExtensionTooLong::find(&e).is_some() => bail!("{name}: {e}"),
                Err(e) => return Err(e).with_context(|| format!("{name}: not a valid tar archive")),
            };
            let path = entry.path().with_context(|| format!("{name}: unreadable member name"))?;
            let raw = path.to_string_lossy().into_owned();
            let Some(key) = normalise(&raw) else {
                bail!("{name}: member {raw:?} points outside the archive");
            };
            let kind = entry.header().entry_type();
            let node = if kind.is_file() || kind.is_contiguous() {
                let (offset, size) = (entry.raw_file_position(), entry.size());
                if offset.saturating_add(size) > len {
                    bail!("{name}: truncated archive (member {key} runs past the end)");
                }
                Node::File { offset, size }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().map(|t| t.to_string_lossy().into_owned());
                let target = target.with_context(|| format!("{name}: link {key} has no target"))?;
                let base = if kind.is_symlink() && !target.starts_with('/') {
                    key.rsplit_once('/').map_or("", |(d, _)| d)
                } else {
                    ""
                };
                let resolved = normalise(&format!("{base}/{target}"))
                    .with_context(|| format!("{name}: link {key} points outside the archive"))?;
                if kind.is_symlink() { Node::Symlink(resolved) } else { Node::HardLink(resolved) }
            } else {
                Node::Other
            };
            nodes.insert(key, node);
        }
        if nodes.is_empty() {
            bail!("{name}: empty archive");
        }
        Ok(TarIndex { name: name.to_string(), file, nodes })
    }

    /// Follows links (a bounded number of hops) to a regular file.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut key = normalise(name)?;
        for _ in 0..16 {
            match self.nodes.get(&key)? {
                Node::File { offset, size } => return Some((*offset, *size)),
                Node::Symlink(t) | Node::HardLink(t) => key = t.clone(),
                Node::Other => return None,
            }
        }
        None
    }
}

impl Members for TarIndex {
    fn describe(&self) -> &str {
        &self.name
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.resolve(name).map(|(_, s)| s)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let (offset, size) = self.resolve(name).with_context(|| format!("{name} is missing"))?;
        // By position, so members can be read in any order.
        let section = FileRange::new(&self.file, offset, size);
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, section)))
    }
}

/// An OCI layout directory.
pub struct DirMembers {
    name: String,
    root: PathBuf,
}

impl DirMembers {
    pub fn new(root: &Path) -> DirMembers {
        DirMembers { name: root.display().to_string(), root: root.to_path_buf() }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        normalise(name).map(|n| self.root.join(n))
    }
}

impl Members for DirMembers {
    fn describe(&self) -> &str {
        &self.name
    }

    fn size(&self, name: &str) -> Option<u64> {
        let meta = std::fs::metadata(self.path(name)?).ok()?;
        meta.is_file().then_some(meta.len())
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let p = self.path(name).with_context(|| format!("{name} points outside the layout"))?;
        let f = File::open(&p).with_context(|| format!("{name} is missing"))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn normalise_strips_dots_and_refuses_escapes() {
        assert_eq!(normalise("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../x"), None);
        assert_eq!(normalise("/manifest.json").as_deref(), Some("manifest.json"));
    }
}
