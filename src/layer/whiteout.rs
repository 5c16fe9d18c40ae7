//! Whiteout rules, in one place: OCI `.wh.` names and overlayfs markers.
//!
//! Pure functions on names and metadata, free of tar types, so the union view,
//! inspect, unpack and pack all agree on what hides what.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{Result, bail};

/// Prefix of an OCI whiteout file: `.wh.NAME` hides `NAME` in lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque marker: `DIR/.wh..wh..opq` hides every lower child of `DIR`.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// overlayfs xattrs marking an opaque directory (the value is `y`).
pub const OVERLAY_OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// What a directory entry's name means for the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind<'a> {
    /// An ordinary name.
    Normal,
    /// `.wh.NAME`: hides `NAME` (the payload) below.
    Whiteout(&'a OsStr),
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
}

/// Classifies one path component. A bare `.wh.` hides nothing and is an error.
pub fn classify(name: &OsStr) -> Result<NameKind<'_>> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        return Ok(NameKind::Opaque);
    }
    match bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(NameKind::Normal),
        Some([]) => bail!("invalid whiteout name {:?}: nothing after .wh.", name),
        Some(hidden) => Ok(NameKind::Whiteout(OsStr::from_bytes(hidden))),
    }
}

/// True for any name in the `.wh.` namespace (never shown in a merged view).
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// The whiteout file name that hides `name`.
pub fn whiteout_name(name: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    s
}

/// For `.wh.NAME` returns NAME; `None` for other names and for `.wh..wh.*` metadata names
/// (the opaque marker, aufs bookkeeping), which hide nothing by name.
pub fn hidden_name(name: &OsStr) -> Option<&OsStr> {
    let rest = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    if rest.is_empty() || rest.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return None;
    }
    Some(OsStr::from_bytes(rest))
}

/// True for the OCI opaque marker.
pub fn is_opaque_marker(name: &OsStr) -> bool {
    name.as_bytes() == OPAQUE_MARKER.as_bytes()
}

/// overlayfs whiteout: a character device with device number 0/0.
pub fn is_overlay_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && is_whiteout_device(libc::S_IFCHR, meta.rdev())
}

/// The same rule on a raw `stat` (the union works on `*at` syscalls, not `Metadata`).
pub fn is_overlay_whiteout_stat(st: &nix::sys::stat::FileStat) -> bool {
    is_whiteout_device(st.st_mode, st.st_rdev)
}

/// The longest file name Linux filesystems take (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// How a directory on disk records that `name` is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhiteoutForm {
    /// The OCI file `.wh.NAME` (strata's own form: a rootless user can write it).
    File(std::ffi::OsString),
    /// An overlayfs whiteout (char device 0/0) named NAME: the only form left for a name of
    /// 252–255 bytes, whose `.wh.` file name would be over NAME_MAX. Tars still carry such a
    /// whiteout as a `.wh.NAME` entry (a PAX long name): this is only the on-disk form.
    Device,
}

/// The on-disk whiteout form for `name` (unpack, the mount's upper).
pub fn whiteout_form(name: &OsStr) -> WhiteoutForm {
    if WHITEOUT_PREFIX.len() + name.len() > NAME_MAX {
        WhiteoutForm::Device
    } else {
        WhiteoutForm::File(whiteout_name(name))
    }
}

/// For the tar entry name `.wh.NAME` whose file name would be over NAME_MAX, NAME: unpack
/// writes that whiteout in the device form ([`WhiteoutForm::Device`]).
pub fn device_whiteout_of(entry_name: &OsStr) -> Option<&OsStr> {
    hidden_name(entry_name).filter(|_| entry_name.len() > NAME_MAX)
}

/// A file type and device number that is an overlayfs whiteout: character device 0/0.
pub fn is_whiteout_device(mode: u32, rdev: u64) -> bool {
    mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0
}

/// The layer format strata takes in (import, load, pull) is OCI's: a layer deletes with `.wh.`
/// entries and marks an opaque directory with `.wh..wh..opq`, nothing else. A character device
/// 0/0 (an overlayfs whiteout once unpacked) is refused, or it would delete by accident.
pub fn check_layer_device(is_char: bool, major: u64, minor: u64) -> Result<()> {
    if is_char && major == 0 && minor == 0 {
        bail!(
            "a character device 0/0 is an overlayfs whiteout, which a layer can't carry \
             (OCI layers delete with .wh. entries)"
        );
    }
    Ok(())
}

/// The same rule for xattrs: overlayfs's and strata's private ones (an opaque marker, the
/// implicit-directory marker) are refused, or they would hide lower files by accident.
pub fn check_layer_xattr(name: &OsStr) -> Result<()> {
    if is_private_xattr(name) {
        bail!(
            "xattr {} is overlayfs/strata bookkeeping, which a layer can't carry \
             (OCI layers mark an opaque directory with a .wh..wh..opq entry)",
            name.to_string_lossy()
        );
    }
    Ok(())
}

/// True when an overlayfs opaque xattr's value means "opaque".
pub fn is_opaque_value(v: &[u8]) -> bool {
    v == b"y"
}

/// Marks a directory that unpack created only because the tar had entries below it and no entry
/// for it: its attributes are not the layer's, so the union takes them from the layer below
/// (as an overlay snapshotter, which unpacks onto the parent layers, would see them).
pub const IMPLICIT_DIR_XATTRS: [&str; 2] = ["trusted.strata.implicit", "user.strata.implicit"];

/// The implicit-dir marker we can write: `trusted.*` needs root.
pub fn implicit_dir_xattr(is_root: bool) -> &'static str {
    IMPLICIT_DIR_XATTRS[usize::from(!is_root)]
}

/// True if this xattr marks an overlayfs opaque directory.
pub fn is_opaque_xattr(name: &OsStr, value: &[u8]) -> bool {
    OVERLAY_OPAQUE_XATTRS.iter().any(|x| name.as_bytes() == x.as_bytes()) && is_opaque_value(value)
}

/// xattrs that are bookkeeping, not content: strata's own and overlayfs's.
/// They are never written into a layer tar.
pub fn is_private_xattr(name: &OsStr) -> bool {
    const PRIVATE: [&str; 4] = ["trusted.strata.", "user.strata.", "trusted.overlay.", "user.overlay."];
    PRIVATE.iter().any(|p| name.as_bytes().starts_with(p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_and_markers() {
        assert_eq!(hidden_name(OsStr::new(".wh.foo")), Some(OsStr::new("foo")));
        assert_eq!(hidden_name(OsStr::new(".wh..wh..opq")), None);
        assert_eq!(hidden_name(OsStr::new(".wh.")), None);
        assert_eq!(hidden_name(OsStr::new("foo")), None);
        assert!(is_reserved(OsStr::new(".wh..wh..opq")));
        assert!(is_opaque_marker(OsStr::new(OPAQUE_MARKER)));
        assert_eq!(whiteout_name(OsStr::new("a")), std::ffi::OsString::from(".wh.a"));
        let raw = OsStr::from_bytes(b".wh.\xff\xfe");
        assert_eq!(hidden_name(raw), Some(OsStr::from_bytes(b"\xff\xfe")));
    }

    #[test]
    fn classifies_names() {
        assert_eq!(classify(OsStr::new("etc")).unwrap(), NameKind::Normal);
        assert_eq!(classify(OsStr::new(".wh.foo")).unwrap(), NameKind::Whiteout(OsStr::new("foo")));
        assert_eq!(classify(OsStr::new(".wh..wh..opq")).unwrap(), NameKind::Opaque);
        assert_eq!(classify(OsStr::new(".wh..bashrc")).unwrap(), NameKind::Whiteout(OsStr::new(".bashrc")));
        assert!(classify(OsStr::new(".wh.")).is_err());
        assert!(is_reserved(OsStr::new(".wh.x")));
        assert!(!is_reserved(OsStr::new(".whx")));
        assert_eq!(whiteout_name(OsStr::new("a")), ".wh.a");
    }

    #[test]
    fn long_names_whiteout_as_devices() {
        let n251 = "x".repeat(251);
        assert_eq!(whiteout_form(OsStr::new(&n251)), WhiteoutForm::File(whiteout_name(OsStr::new(&n251))));
        assert_eq!(whiteout_form(OsStr::new(&"x".repeat(252))), WhiteoutForm::Device);
        assert_eq!(whiteout_form(OsStr::new(&"x".repeat(255))), WhiteoutForm::Device);
        let long = format!(".wh.{}", "x".repeat(252));
        assert_eq!(device_whiteout_of(OsStr::new(&long)), Some(OsStr::new(&long[4..])));
        assert_eq!(device_whiteout_of(OsStr::new(".wh.short")), None);
        assert!(is_whiteout_device(libc::S_IFCHR | 0o644, 0));
        assert!(!is_whiteout_device(libc::S_IFCHR, nix::sys::stat::makedev(1, 3)));
        assert!(!is_whiteout_device(libc::S_IFBLK, 0));
    }

    #[test]
    fn overlay_markers() {
        assert!(is_opaque_xattr(OsStr::new("trusted.overlay.opaque"), b"y"));
        assert!(is_opaque_xattr(OsStr::new("user.overlay.opaque"), b"y"));
        assert!(!is_opaque_xattr(OsStr::new("user.overlay.opaque"), b"n"));
        assert!(is_private_xattr(OsStr::new("user.strata.origin")));
        assert!(is_private_xattr(OsStr::new("trusted.overlay.opaque")));
        assert!(!is_private_xattr(OsStr::new("security.capability")));
    }

    #[test]
    fn layer_format_is_oci_only() {
        assert!(check_layer_device(true, 0, 0).is_err());
        assert!(check_layer_device(true, 1, 3).is_ok());
        assert!(check_layer_device(false, 0, 0).is_ok());
        assert!(check_layer_xattr(OsStr::new("trusted.overlay.opaque")).is_err());
        assert!(check_layer_xattr(OsStr::new("trusted.strata.implicit")).is_err());
        assert!(check_layer_xattr(OsStr::new("user.overlay.opaque")).is_err());
        assert!(check_layer_xattr(OsStr::new("user.mime_type")).is_ok());
        assert!(check_layer_xattr(OsStr::new("security.capability")).is_ok());
    }
}
