//! A read-only `strata mount` of an image that is always unmounted (Drop), for comparing a tree
//! seen through the mount with other views. Without FUSE the mount is skipped, except under
//! `CI=true`, where a failed mount fails the test.

use std::path::{Path, PathBuf};

use super::strata::Strata;

pub struct Mounted<'a> {
    strata: &'a Strata,
    pub dir: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let out = self.strata.run(&["umount", self.dir.to_str().unwrap_or_default()]);
        if !out.status.success() {
            eprintln!("strata umount {}: {}", self.dir.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Mounts `image` at a fresh directory `name` in the test's temp dir; `None` (with a note on
/// stderr) when mounting is impossible here and `CI` is not `true`.
pub fn mount_image<'a>(s: &'a Strata, image: &str, name: &str) -> Option<Mounted<'a>> {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).expect("mountpoint");
    let out = s.run(&["mount", image, dir.to_str().expect("utf-8 temp path")]);
    if out.status.success() {
        return Some(Mounted { strata: s, dir });
    }
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(std::env::var("CI").as_deref() != Ok("true"), "strata mount failed under CI=true: {why}");
    eprintln!("skipping the mount comparison: strata mount failed: {why}");
    None
}

/// True when `dir` is a mountpoint now (for asserting the guard unmounted it).
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let d = dir.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&d))
}
