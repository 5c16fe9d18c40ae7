//! `A`/`C`/`D` change lines, as `docker diff` prints them.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "C")]
    Changed,
    #[serde(rename = "D")]
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// One changed path, absolute within the image (`/etc/passwd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub path: PathBuf,
}

impl Change {
    pub fn new(kind: Kind, rel: &std::path::Path) -> Change {
        let mut p = OsString::from("/");
        p.push(rel.as_os_str());
        Change { kind, path: PathBuf::from(p) }
    }
}

/// Docker's order: by path, bytewise.
pub fn sort(changes: &mut [Change]) {
    changes.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
}

/// `A /path` lines; names are written as their raw bytes (they need not be UTF-8).
pub fn print(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    for c in changes {
        write!(out, "{} ", c.kind.letter())?;
        out.write_all(c.path.as_os_str().as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One JSON object per change: `{"Kind":"A","Path":"/x"}` (non-UTF-8 bytes replaced).
pub fn print_json(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    for c in changes {
        let v = serde_json::json!({"Kind": c.kind, "Path": c.path.to_string_lossy()});
        writeln!(out, "{v}")?;
    }
    Ok(())
}
