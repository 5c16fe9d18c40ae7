//! Whiteout rules, both formats.
//!
//! OCI image-spec `layer.md`: `dir/.wh.NAME` hides NAME in every lower layer and
//! `dir/.wh..wh..opq` hides every lower child of `dir`. Neither hides anything in its own layer.
//! overlayfs: a character device 0/0 named NAME hides NAME below, and a directory with the
//! xattr `trusted.overlay.opaque` or `user.overlay.opaque` = `y` is opaque.
//!
//! Names beginning with `.wh.` never appear in a merged view and can't be created through it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::sys::stat::{FileStat, SFlag};

/// Prefix of every OCI whiteout name.
pub const WH_PREFIX: &[u8] = b".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// xattrs that mark an overlayfs-style opaque directory (value `y`).
pub const OVERLAY_OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// True for every name in the `.wh.` namespace (whiteouts, the opaque marker, aufs metadata).
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// True for the OCI opaque marker.
pub fn is_opaque_marker(name: &OsStr) -> bool {
    name.as_bytes() == OPAQUE_MARKER.as_bytes()
}

/// For `.wh.NAME` returns NAME; `None` for other names and for `.wh..wh.*` metadata names.
pub fn hidden_name(name: &OsStr) -> Option<&OsStr> {
    let rest = name.as_bytes().strip_prefix(WH_PREFIX)?;
    if rest.is_empty() || rest.starts_with(WH_PREFIX) {
        return None;
    }
    Some(OsStr::from_bytes(rest))
}

/// `.wh.` + name: the OCI whiteout that hides `name` in lower layers.
pub fn whiteout_for(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// An overlayfs whiteout: a character device with device number 0/0.
pub fn is_overlay_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && st.st_rdev == 0
}

/// True when an opaque xattr value means "opaque".
pub fn is_opaque_value(v: &[u8]) -> bool {
    v == b"y"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(hidden_name(OsStr::new(".wh.foo")), Some(OsStr::new("foo")));
        assert_eq!(hidden_name(OsStr::new(".wh..wh..opq")), None);
        assert_eq!(hidden_name(OsStr::new(".wh.")), None);
        assert_eq!(hidden_name(OsStr::new("foo")), None);
        assert!(is_reserved(OsStr::new(".wh..wh..opq")));
        assert!(is_opaque_marker(OsStr::new(OPAQUE_MARKER)));
        assert_eq!(whiteout_for(OsStr::new("a")), OsString::from(".wh.a"));
        let raw = OsStr::from_bytes(b".wh.\xff\xfe");
        assert_eq!(hidden_name(raw), Some(OsStr::from_bytes(b"\xff\xfe")));
    }
}
