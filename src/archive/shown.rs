//! Progress of `load` and `save`, per layer: archive members read and files written are shown
//! with bytes and rate when they are big enough to take a while (layers, not JSON documents).

use std::io::Read;

use anyhow::Result;

use super::members::Members;
use super::sink::Sink;
use crate::progress::Progress;

/// Members and files below this size are not shown.
const SHOWN_FROM: u64 = 64 << 10;

/// `blobs/sha256/<hex>` or `<hex>/layer.tar` → the short hex Docker shows; other names as they are.
fn label(name: &str) -> String {
    let hex = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix("/layer.tar")).unwrap_or(name);
    if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex[..12].to_string()
    } else {
        hex.to_string()
    }
}

/// Members whose big readers advance a progress item.
pub struct ShownMembers<'a> {
    pub inner: &'a dyn Members,
    pub progress: &'a Progress,
}

impl Members for ShownMembers<'_> {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.inner.size(name)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let reader = self.inner.open(name)?;
        match self.inner.size(name) {
            Some(n) if n >= SHOWN_FROM => {
                let item = self.progress.item(&label(name), "Waiting");
                Ok(Box::new(item.reader("Loading", Some(n), reader, "Loaded")))
            }
            _ => Ok(reader),
        }
    }
}

/// A sink whose big files advance a progress item.
pub struct ShownSink<'a> {
    pub inner: &'a mut dyn Sink,
    pub progress: &'a Progress,
}

impl Sink for ShownSink<'_> {
    fn dir(&mut self, path: &str) -> Result<()> {
        self.inner.dir(path)
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        if size < SHOWN_FROM {
            return self.inner.file(path, size, data);
        }
        let item = self.progress.item(&label(path), "Waiting");
        let mut shown = item.reader("Saving", Some(size), data, "Saved");
        self.inner.file(path, size, &mut shown)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.inner.symlink(path, target)
    }

    fn has(&self, path: &str) -> bool {
        self.inner.has(path)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(super::label(&format!("blobs/sha256/{hex}")), "0123456789ab");
        assert_eq!(super::label(&format!("{hex}/layer.tar")), "0123456789ab");
        assert_eq!(super::label("manifest.json"), "manifest.json");
    }
}
