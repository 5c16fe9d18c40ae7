//! `strata version` and `strata info`: what this binary is, and what the store and the kernel
//! give it (Docker's `version` and `info`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{Global, open_store};
use crate::store::{LockMode, Store};

#[derive(Args)]
pub struct VersionArgs {}

pub fn version(_g: &Global, _a: VersionArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Client: strata")?;
    writeln!(out, " Version:    {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, " OS/Arch:    linux/{}", crate::oci::image::Platform::host().architecture)?;
    writeln!(out, " Kernel:     {}", kernel_release())?;
    writeln!(out, " Daemon:     none (every command works on the store directly)")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct InfoArgs {}

pub fn info(g: &Global, _a: InfoArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let images = store.images()?;
    let containers = store.containers()?;
    let mounted = containers.iter().filter(|c| c.mount.is_some()).count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "Client: strata {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "Store:")?;
    writeln!(out, " Root Dir:            {}", store.root().display())?;
    writeln!(out, " Default Root:        {}", default_note(&store))?;
    writeln!(out, " Images:              {}", images.len())?;
    writeln!(out, " Containers:          {} (mounted: {mounted})", containers.len())?;
    writeln!(out, " Storage Driver:      fuse.strata (FUSE union mount of unpacked layers, OCI whiteouts)")?;
    writeln!(out, "Kernel:")?;
    writeln!(out, " Kernel Version:      {}", kernel_release())?;
    writeln!(out, " FUSE:                {}", fuse_device())?;
    writeln!(out, " fusermount3:         {}", fusermount_version())?;
    writeln!(out, " FUSE passthrough:    {}", passthrough())?;
    writeln!(out, " FUSE over io_uring:  {}", io_uring(Path::new(URING_PARAM)))?;
    Ok(ExitCode::SUCCESS)
}

const URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

fn default_note(store: &Store) -> String {
    let default = Store::default_root();
    if store.root() == default { "yes".into() } else { format!("no (the default is {})", default.display()) }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// `6.18.44-foo` → (6, 18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn fuse_device() -> String {
    if Path::new("/dev/fuse").exists() {
        "/dev/fuse present".into()
    } else {
        "no /dev/fuse: mounts will fail (modprobe fuse, or give the container the device)".into()
    }
}

fn fusermount_version() -> String {
    match std::process::Command::new("fusermount3").arg("--version").output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            text.trim().rsplit(' ').next().unwrap_or("unknown").to_string()
        }
        Err(_) => "not installed (rootless mounts need it: apt-get install fuse3)".into(),
    }
}

/// Whether mounts made by this user get FUSE passthrough (kernel ≥ 6.9, CAP_SYS_ADMIN).
fn passthrough() -> String {
    let release = kernel_release();
    let new_enough = kernel_version(&release).is_some_and(|v| v >= (6, 9));
    match (new_enough, nix::unistd::geteuid().is_root()) {
        (true, true) => "yes (file data bypasses the daemon)".into(),
        (true, false) => "no: needs root (CAP_SYS_ADMIN); data goes through the daemon".into(),
        (false, _) => format!("no: kernel {release} is older than 6.9"),
    }
}

/// Whether new mounts serve through FUSE over io_uring: the fuse module's `enable_uring`
/// parameter (the admin's choice), io_uring itself (`kernel.io_uring_disabled`), and strata's
/// own switch (`STRATA_IO_URING=0`, `strata-overlay -o noio_uring`).
fn io_uring(param: &Path) -> String {
    let off_by_sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|v| v.trim() == "2" || (v.trim() == "1" && !nix::unistd::geteuid().is_root()));
    let opted_out = matches!(std::env::var("STRATA_IO_URING").as_deref(), Ok("0" | "no" | "false" | "off"));
    match std::fs::read_to_string(param) {
        Ok(v) if v.trim() == "Y" || v.trim() == "1" => {
            if off_by_sysctl {
                "available, enabled, but io_uring is off for this user (kernel.io_uring_disabled): mounts use /dev/fuse".into()
            } else if opted_out {
                "available, enabled, not used (STRATA_IO_URING=0): mounts use /dev/fuse".into()
            } else {
                "available, enabled: new mounts serve through it, one queue per CPU (--log-level info shows it in the mount log)"
                    .into()
            }
        }
        Ok(_) => format!(
            "available, disabled: mounts use /dev/fuse (the admin enables it: echo Y > {})",
            param.display()
        ),
        Err(_) => {
            "not in this kernel (Linux 6.14+ built with CONFIG_FUSE_IO_URING): mounts use /dev/fuse".into()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_versions() {
        assert_eq!(super::kernel_version("6.18.44-cloud-amd64"), Some((6, 18)));
        assert_eq!(super::kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(super::kernel_version("x"), None);
    }
}
