//! What `strata mount` accepts before it mounts anything: its `-o` options and the mountpoint
//! (a directory; a warning when it is not empty or already a mount point).

use std::path::Path;

use anyhow::{Result, bail};

/// The `-o` options `strata mount` knows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CliMountOptions {
    pub read_only: bool,
    pub allow_other: bool,
}

/// Parses `-o ro,allow_other` (repeatable); unknown options are refused, all named at once.
pub fn parse_options<'a>(opts: impl IntoIterator<Item = &'a str>) -> Result<CliMountOptions> {
    let mut out = CliMountOptions::default();
    let mut unknown = Vec::new();
    for o in opts.into_iter().flat_map(|o| o.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "ro" => out.read_only = true,
            "rw" => out.read_only = false,
            "allow_other" => out.allow_other = true,
            other => unknown.push(format!("{other:?}")),
        }
    }
    if !unknown.is_empty() {
        bail!("unknown mount option {} (strata mount knows ro, rw, allow_other)", unknown.join(", "));
    }
    Ok(out)
}

/// Refuses a mountpoint that is not a directory (the kernel would mount a directory tree on a
/// file, and every access would fail); returns warnings for a directory that is not empty (its
/// files are hidden while mounted) or is already a mount point (the new mount stacks on it).
pub fn check(mountpoint: &Path) -> Result<Vec<String>> {
    let meta = match std::fs::metadata(mountpoint) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mountpoint {} does not exist", mountpoint.display())
        }
        Err(e) => bail!("mountpoint {}: {e}", mountpoint.display()),
    };
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", mountpoint.display());
    }
    let mut warnings = Vec::new();
    if crate::fs::mount::is_mounted(mountpoint).unwrap_or(false) {
        warnings.push(format!(
            "{} is already a mount point: the new mount hides it until unmounted",
            mountpoint.display()
        ));
    } else if std::fs::read_dir(mountpoint).map(|mut d| d.next().is_some()).unwrap_or(false) {
        warnings.push(format!(
            "{} is not empty: its files are hidden while the mount is there",
            mountpoint.display()
        ));
    }
    Ok(warnings)
}

/// [`check`], with its warnings on stderr.
pub fn check_and_warn(mountpoint: &Path) -> Result<()> {
    for w in check(mountpoint)? {
        eprintln!("strata: warning: {w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(parse_options(["ro"]).unwrap(), CliMountOptions { read_only: true, allow_other: false });
        assert_eq!(
            parse_options(["ro,allow_other", "rw"]).unwrap(),
            CliMountOptions { read_only: false, allow_other: true }
        );
        let err = parse_options(["ro,bogus,exec=1"]).unwrap_err().to_string();
        assert!(err.contains("\"bogus\", \"exec=1\""), "{err}");
    }
}
