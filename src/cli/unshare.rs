//! Rootless plumbing for the command line: `strata unshare`, the user namespace the commands that
//! write or read layer files run in, and the checks that turn a rootless set-up problem into a
//! message that says what to do.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::store::Store;
use crate::sys::userns::{self, IdMaps, Scope};

#[derive(Args)]
pub struct UnshareArgs {
    /// The command to run and its arguments (default: $SHELL, else /bin/sh).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `strata unshare [CMD…]`: runs CMD (or a shell) in a user and mount namespace where the user is
/// root and the subordinate ids are mapped from 1, with STRATA_ROOT set to the user's store, as
/// `podman unshare` does.
pub fn unshare(g: &Global, a: UnshareArgs) -> Result<ExitCode> {
    if !inside() {
        if userns::privileged() {
            bail!("strata unshare is for rootless users: root needs no user namespace");
        }
        let root = store_root(g);
        check_store_owner(&root)?;
        let maps = IdMaps::require()?;
        // The user namespace kept for the user, joined here (with a mount namespace of this
        // command's own); without a private runtime directory, a fresh one in a re-executed child.
        if !userns::join_kept(&maps, Scope::UserAndMounts, &root)? {
            return Ok(userns::reexec(
                &maps,
                Scope::UserAndMounts,
                &[("STRATA_ROOT", root.into_os_string())],
            )?);
        }
    }
    let mut command = a.command;
    if command.is_empty() {
        command.push(std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into()));
    }
    let err = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    eprintln!("strata: error: cannot run {}: {err}", Path::new(&command[0]).display());
    // The shell's and podman's convention: 127 not found, 126 found but not runnable.
    Ok(ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }))
}

/// Moves the current command into the user namespace when we are an ordinary user with a
/// subordinate range, so unpacking can chown and layer files show the owners the image has: it
/// joins the namespace kept for the user (`g.root` then names the user's store explicitly, as
/// the default would be root's inside), or, without a private runtime directory to find one by,
/// runs again in a new one (`Some`: that run's exit code). `None`: carry on here (root, already
/// inside, joined now, or no range: then owners that can't be set are recorded in the override
/// xattr, see `layer::override_stat`).
pub(crate) fn in_user_namespace(g: &mut Global) -> Result<Option<ExitCode>> {
    if userns::privileged() || inside() {
        return Ok(None);
    }
    let root = store_root(g);
    check_store_owner(&root)?;
    let Some(maps) = IdMaps::for_current_user()? else {
        tracing::debug!("no subordinate ids: owners other than ours go to the override xattr");
        return Ok(None);
    };
    if userns::join_kept(&maps, Scope::User, &root)? {
        g.root = Some(root);
        return Ok(None);
    }
    Ok(Some(userns::reexec(&maps, Scope::User, &[("STRATA_ROOT", root.into_os_string())])?))
}

#[derive(Args)]
pub struct MigrateArgs {}

/// `strata system migrate`, Podman's verb: ends the process that keeps the user's namespace, so
/// the next command makes a new one (reading /etc/subuid and /etc/subgid again). Mounts and
/// containers running keep the namespace they joined until they end. Nothing to do as root.
pub fn migrate(_g: &Global, _a: MigrateArgs) -> Result<ExitCode> {
    if userns::privileged() {
        return Ok(ExitCode::SUCCESS);
    }
    if inside() {
        bail!("strata system migrate ends the namespace it runs in: run it outside strata unshare");
    }
    match crate::sys::userns_holder::end()? {
        Some(pid) => tracing::info!("ended the user namespace holder {pid}"),
        None => tracing::info!("no user namespace holder"),
    }
    Ok(ExitCode::SUCCESS)
}

fn inside() -> bool {
    std::env::var_os(userns::INSIDE_ENV).is_some() && userns::in_user_namespace()
}

fn store_root(g: &Global) -> std::path::PathBuf {
    g.root.clone().unwrap_or_else(Store::default_root)
}

/// An ordinary user can't use a store another user created (its directories are closed to
/// others): say so instead of failing on the first file with EACCES.
pub(crate) fn check_store_owner(root: &Path) -> Result<()> {
    if userns::privileged() {
        return Ok(());
    }
    let me = nix::unistd::geteuid().as_raw();
    match std::fs::metadata(root) {
        Ok(m) if m.uid() != me => bail!(
            "the store {} belongs to uid {}, not to you (uid {me}): each user has a store of their \
             own; use yours (--root DIR or STRATA_ROOT, default $XDG_DATA_HOME/strata) or run as its owner",
            root.display(),
            m.uid()
        ),
        _ => Ok(()),
    }
}

/// What an ordinary user's mount needs: read-write access to /dev/fuse and the setuid
/// fusermount3 that mounts for us.
pub(crate) fn check_rootless_mount() -> Result<()> {
    if userns::privileged() {
        return Ok(());
    }
    if let Err(e) =
        nix::unistd::access("/dev/fuse", nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK)
    {
        bail!(
            "cannot open /dev/fuse read-write ({}): mounting as an ordinary user needs it; Debian ships it \
             mode 0666 (as root: chmod 0666 /dev/fuse; modprobe fuse if it is missing)",
            std::io::Error::from(e)
        );
    }
    if userns::find_in_path("fusermount3").is_none() {
        bail!(
            "fusermount3 not found: ordinary users mount FUSE filesystems through it; install the package fuse3"
        );
    }
    Ok(())
}
