//! Tar member names → clean relative paths inside the layer root.
//!
//! Leading `/` and `./` are dropped (as GNU tar does); `..` that would climb
//! above the root is an error, never clamped silently: an archive that tries
//! it is hostile or broken.

use anyhow::{Result, bail};

use super::whiteout;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Returns the path as `a/b/c` (empty for the root itself).
pub fn normalize(name: &[u8]) -> Result<Vec<u8>> {
    if name.contains(&0) {
        bail!("name contains a NUL byte");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    bail!("path escapes the layer root");
                }
            }
            c => {
                whiteout::classify(OsStr::from_bytes(c))?;
                parts.push(c);
            }
        }
    }
    Ok(parts.join(&b'/'))
}

/// Splits `a/b/c` into (`a/b`, `c`); the parent of a top-level name is empty.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// For messages: the path as the user would write it.
pub fn show(path: &[u8]) -> String {
    if path.is_empty() { "/".to_string() } else { format!("/{}", String::from_utf8_lossy(path)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"a/../b").unwrap(), b"b");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a/.wh./b").is_err());
        assert!(normalize(b"a/.wh..").is_err());
        assert!(normalize(b".wh...").is_err());
        assert!(normalize(b"a/.wh....").is_ok()); // hides "..." , an ordinary name
        assert!(normalize(b"a\0b").is_err());
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
    }
}
