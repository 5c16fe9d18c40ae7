//! Running strata in a user namespace that maps 0 to the calling user and 1…N to the user's
//! subordinate ids (`/etc/subuid`, `/etc/subgid`), as `podman unshare` does, so an ordinary user
//! can chown while unpacking and see the owners an image really has.
//!
//! How: strata re-executes itself (`/proc/self/exe`, same arguments) with two pipes. The child
//! calls `unshare(CLONE_NEWUSER)` first thing, says so on one pipe and waits on the other; the
//! parent, still outside, runs the setuid helpers `newuidmap`/`newgidmap` on the child's pid
//! (only they may map ids other than our own), then lets it go and waits for it, passing its
//! exit status on. Re-executing rather than forking in place: `unshare(CLONE_NEWUSER)` needs a
//! single-threaded process and a fork of a running strata may hold locks or threads (logging,
//! the store lock) that a fresh process does not have; the child starts from `main` with
//! nothing to inherit but its arguments and environment.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};
use thiserror::Error;

/// Set in the re-executed child: `READY_FD,GO_FD,FLAGS`. Removed before anything else runs.
const CHILD_ENV: &str = "_STRATA_USERNS_CHILD";
/// Set inside the namespace (for strata and whatever `strata unshare` runs): no second re-exec.
pub const INSIDE_ENV: &str = "_STRATA_USERNS";

#[derive(Debug, Error)]
pub enum UsernsError {
    #[error(
        "no subordinate {kind} ids for user {user} in {file}: strata needs a range to map the image's \
         owners (add one as root, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)"
    )]
    NoSubIds { kind: &'static str, user: String, file: &'static str },
    #[error(
        "{0} not found: it maps your subordinate ids into the user namespace; install the package \
         uidmap (Debian/Ubuntu: apt-get install uidmap)"
    )]
    NoHelper(&'static str),
    #[error("{helper} {pid} failed: {why}")]
    MapFailed { helper: &'static str, pid: i32, why: String },
    #[error(
        "cannot enter a user namespace: {0} (is kernel.unprivileged_userns_clone or user.max_user_namespaces 0?)"
    )]
    Unshare(nix::Error),
    #[error("cannot join the user namespace strata keeps for you: {0} (strata system migrate ends it)")]
    Join(nix::Error),
    #[error("user namespace set-up: {0}")]
    Io(#[from] std::io::Error),
}

/// One line of /etc/subuid or /etc/subgid that applies to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u64,
    pub count: u64,
}

/// Whether we are root in the initial user namespace: only then do chown, mknod and `trusted.*`
/// xattrs work on every file. Root inside a user namespace is not.
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root() && !in_user_namespace()
}

/// Whether this process runs in a user namespace other than the initial one (whose uid_map is
/// the identity over all 2^32-1 ids).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// The ranges of `file` (`/etc/subuid` or `/etc/subgid`) for the user named `name` or with id
/// `id`, in file order. Lines are `NAME_OR_ID:START:COUNT`; malformed ones are skipped, as
/// shadow's own tools do.
pub fn sub_ranges(file: &Path, name: Option<&str>, id: u32) -> std::io::Result<Vec<SubRange>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(parse_sub_ranges(&text, name, id))
}

fn parse_sub_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<SubRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != id && Some(who) != name {
                return None;
            }
            let r = SubRange { start: start.parse().ok()?, count: count.parse().ok()? };
            (r.count > 0).then_some(r)
        })
        .collect()
}

/// The id maps for this user: 0 → our id, then every subordinate range from 1 on.
#[derive(Debug, Clone)]
pub struct IdMaps {
    pub uid: u32,
    pub gid: u32,
    pub uids: Vec<SubRange>,
    pub gids: Vec<SubRange>,
}

impl IdMaps {
    /// Reads /etc/subuid and /etc/subgid for the calling user. `Ok(None)` when the user has no
    /// range in one of them.
    pub fn for_current_user() -> Result<Option<IdMaps>, UsernsError> {
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name);
        let uids = sub_ranges(Path::new("/etc/subuid"), name.as_deref(), uid.as_raw())?;
        let gids = sub_ranges(Path::new("/etc/subgid"), name.as_deref(), uid.as_raw())?;
        if uids.is_empty() || gids.is_empty() {
            return Ok(None);
        }
        Ok(Some(IdMaps { uid: uid.as_raw(), gid: gid.as_raw(), uids, gids }))
    }

    /// Like [`IdMaps::for_current_user`], but a missing range is an error naming the file.
    pub fn require() -> Result<IdMaps, UsernsError> {
        if let Some(m) = IdMaps::for_current_user()? {
            return Ok(m);
        }
        let uid = nix::unistd::getuid();
        let user =
            nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name);
        let has_uids = !sub_ranges(Path::new("/etc/subuid"), Some(&user), uid.as_raw())?.is_empty();
        let (kind, file) = if has_uids { ("group", "/etc/subgid") } else { ("user", "/etc/subuid") };
        Err(UsernsError::NoSubIds { kind, user, file })
    }

    /// The id outside the namespace of the namespace's `uid` (0 is the user, 1… the ranges).
    pub fn uid_to_host(&self, uid: u32) -> Option<u32> {
        to_host(self.uid, &self.uids, uid)
    }

    /// The id outside the namespace of the namespace's `gid`.
    pub fn gid_to_host(&self, gid: u32) -> Option<u32> {
        to_host(self.gid, &self.gids, gid)
    }

    /// The namespace's uid for the outside `uid`, if the namespace maps it.
    pub fn uid_from_host(&self, uid: u32) -> Option<u32> {
        from_host(self.uid, &self.uids, uid)
    }

    /// The namespace's gid for the outside `gid`, if the namespace maps it.
    pub fn gid_from_host(&self, gid: u32) -> Option<u32> {
        from_host(self.gid, &self.gids, gid)
    }

    /// newuidmap/newgidmap arguments after the pid: `0 ID 1`, then `NEXT START COUNT` per range
    /// (also how /proc/PID/uid_map reads, as seen from outside).
    pub(super) fn args(own: u32, ranges: &[SubRange]) -> Vec<String> {
        let mut out = vec!["0".to_string(), own.to_string(), "1".to_string()];
        let mut next = 1u64;
        for r in ranges {
            out.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
            next += r.count;
        }
        out
    }
}

/// The mapping [`IdMaps::args`] sets up: 0 → `own`, then the ranges one after the other from 1.
fn to_host(own: u32, ranges: &[SubRange], id: u32) -> Option<u32> {
    if id == 0 {
        return Some(own);
    }
    let mut next = 1u64;
    for r in ranges {
        if (next..next + r.count).contains(&u64::from(id)) {
            return u32::try_from(r.start + (u64::from(id) - next)).ok();
        }
        next += r.count;
    }
    None
}

fn from_host(own: u32, ranges: &[SubRange], id: u32) -> Option<u32> {
    if id == own {
        return Some(0);
    }
    let mut next = 1u64;
    for r in ranges {
        if (r.start..r.start + r.count).contains(&u64::from(id)) {
            return u32::try_from(next + (u64::from(id) - r.start)).ok();
        }
        next += r.count;
    }
    None
}

/// The namespace a mount daemon's layers were written in, when it serves from outside it: an
/// unprivileged user with a subordinate range, not in a user namespace (`None` otherwise).
pub fn frame_for_mounts() -> Option<IdMaps> {
    // `privileged() || in_user_namespace()`, reading /proc/self/uid_map once.
    if nix::unistd::geteuid().is_root() || in_user_namespace() {
        return None;
    }
    IdMaps::for_current_user().ok().flatten()
}

/// Moves this process, which must be single-threaded, into the user namespace with `maps` (a
/// mount daemon, while fusermount3 mounts, so it reads files of subordinate owners as the
/// namespace's root): the one kept for the user (`userns_holder`), or where there is no private
/// runtime directory for it, a new one: a helper forked first stays outside and runs
/// newuidmap/newgidmap on it, as [`reexec`]'s parent does; it is gone when this returns.
pub fn enter_here(maps: &IdMaps) -> Result<(), UsernsError> {
    if let Some(held) = super::userns_holder::obtain(maps)? {
        return held.join();
    }
    require_helpers()?;
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let (go_r, go_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let me = std::process::id() as i32;
    let helper = match super::daemon::fork().map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            drop((ready_w, go_r));
            let mut byte = [0u8; 1];
            let unshared = File::from(ready_r).read(&mut byte).is_ok_and(|n| n == 1);
            let code = match unshared.then(|| map_ids(me, maps)) {
                Some(Ok(())) => File::from(go_w).write_all(b"1").map_or(1, |()| 0),
                Some(Err(e)) => {
                    tracing::error!("mapping the ids of the mount daemon: {e}");
                    1
                }
                None => 1,
            };
            super::daemon::exit_now(code)
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop((ready_r, go_w));
    let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
    if unshared.is_ok() {
        File::from(ready_w).write_all(b"1")?;
    } else {
        drop(ready_w);
    }
    let mut byte = [0u8; 1];
    let mapped = File::from(go_r).read(&mut byte).is_ok_and(|n| n == 1);
    let _ = waitpid(helper, None);
    unshared.map_err(UsernsError::Unshare)?;
    if !mapped {
        return Err(
            std::io::Error::other("newuidmap/newgidmap failed for the mount daemon (see its log)").into()
        );
    }
    become_root()
}

/// Root of the namespace just entered: files we create belong to the user outside.
pub(super) fn become_root() -> Result<(), UsernsError> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(std::io::Error::from)?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(std::io::Error::from)?;
    Ok(())
}

pub(super) fn require_helpers() -> Result<(), UsernsError> {
    for helper in ["newuidmap", "newgidmap"] {
        if find_in_path(helper).is_none() {
            return Err(UsernsError::NoHelper(helper));
        }
    }
    Ok(())
}

/// Joins the namespace kept for this user (made now if there is none), as its root, in this
/// process, which must be single-threaded: what [`reexec`] does without a second process or the
/// setuid helpers. `root` becomes `STRATA_ROOT` and the process is marked as inside, for itself
/// and whatever it runs, as [`reexec`]'s child is. With `Scope::UserAndMounts` a new mount
/// namespace is made in it too. `Ok(false)`: there is no private runtime directory for a kept
/// namespace; nothing changed.
pub fn join_kept(maps: &IdMaps, scope: Scope, root: &Path) -> Result<bool, UsernsError> {
    let Some(held) = super::userns_holder::obtain(maps)? else { return Ok(false) };
    held.join()?;
    if scope == Scope::UserAndMounts {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(UsernsError::Unshare)?;
    }
    // SAFETY: setns above succeeded, and the kernel allows it only in a single-threaded
    // process: nothing reads the environment concurrently.
    unsafe {
        std::env::set_var(INSIDE_ENV, "1");
        std::env::set_var("STRATA_ROOT", root);
    }
    Ok(true)
}

/// Which namespaces the child creates besides the user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only a user namespace: mounts made inside stay visible to the user outside.
    User,
    /// A user and a mount namespace, as `podman unshare` gives: mounts made inside stay there.
    UserAndMounts,
}

/// Runs this same strata command again inside a user namespace with `maps`, with `env` added
/// to its environment, and returns its exit code once it ends.
pub fn reexec(maps: &IdMaps, scope: Scope, env: &[(&str, OsString)]) -> Result<ExitCode, UsernsError> {
    require_helpers()?;
    // Child ends without close-on-exec (the child inherits them); ours with.
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let (go_r, go_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    for fd in [&ready_r, &go_w] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    }
    let flags = match scope {
        Scope::User => "user",
        Scope::UserAndMounts => "user+mnt",
    };
    let mut args = std::env::args_os();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args)
        .env(CHILD_ENV, format!("{},{},{flags}", ready_w.as_raw_fd(), go_r.as_raw_fd()))
        .env(INSIDE_ENV, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    drop((ready_w, go_r));
    let pid = child.id() as i32;
    let mut ready = File::from(ready_r);
    let mut go = File::from(go_w);
    let mut byte = [0u8; 1];
    // EOF: the child failed before unsharing (its error is on stderr already).
    let unshared = ready.read(&mut byte)? == 1;
    if unshared {
        if let Err(e) = map_ids(pid, maps) {
            drop(go); // the child reads EOF and exits
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(e);
        }
        go.write_all(b"1")?;
    }
    drop(go);
    Ok(wait_forwarding_signals(Pid::from_raw(pid)))
}

/// Runs newuidmap and newgidmap on `pid`, both at once: they write different files, and each
/// is a setuid start that reads the shadow configuration (about as long as strata's own start).
pub(super) fn map_ids(pid: i32, maps: &IdMaps) -> Result<(), UsernsError> {
    let mut running = Vec::with_capacity(2);
    for (helper, own, ranges) in [("newuidmap", maps.uid, &maps.uids), ("newgidmap", maps.gid, &maps.gids)] {
        let child = Command::new(find_in_path(helper).ok_or(UsernsError::NoHelper(helper))?)
            .arg(pid.to_string())
            .args(IdMaps::args(own, ranges))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => UsernsError::NoHelper(helper),
                _ => UsernsError::Io(e),
            });
        running.push((helper, child));
    }
    // Every helper started is waited for, whatever the other did.
    let mut first_error = None;
    for (helper, child) in running {
        let result = child.and_then(|c| c.wait_with_output().map_err(UsernsError::Io)).and_then(|out| {
            if out.status.success() {
                return Ok(());
            }
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(UsernsError::MapFailed { helper, pid, why })
        });
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits for the child; SIGTERM and SIGHUP sent to us go on to it (SIGINT and SIGQUIT from a
/// terminal reach the whole process group, the child included, so they are only not fatal here).
fn wait_forwarding_signals(pid: Pid) -> ExitCode {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGCHLD] {
        set.add(s);
    }
    let blocked = set.thread_block().is_ok();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return ExitCode::from(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return ExitCode::from(128 + sig as u8),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return ExitCode::FAILURE,
        }
        if !blocked {
            // Without a signal mask: a plain blocking wait.
            return match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => ExitCode::from(code as u8),
                Ok(WaitStatus::Signaled(_, sig, _)) => ExitCode::from(128 + sig as u8),
                _ => ExitCode::FAILURE,
            };
        }
        if let Ok(sig @ (Signal::SIGTERM | Signal::SIGHUP)) = set.wait() {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// In the re-executed child: enters the user namespace and waits until the parent has mapped
/// the ids, then becomes root in it. A no-op in any other process. Must run before any thread
/// starts (`unshare(CLONE_NEWUSER)` refuses a multi-threaded caller).
pub fn enter_if_reexecuted() -> Result<(), UsernsError> {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    // SAFETY: called at the start of `cli::run`, before strata starts any thread (logging set-up
    // starts none), so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(CHILD_ENV) };
    let spec = spec.to_string_lossy().into_owned();
    let mut parts = spec.split(',');
    let mut fd = || -> Result<OwnedFd, UsernsError> {
        let raw: i32 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("malformed {CHILD_ENV}={spec:?}")))?;
        // SAFETY: F_GETFD only queries the descriptor table; a number not open gives EBADF.
        let open = fcntl(unsafe { BorrowedFd::borrow_raw(raw) }, FcntlArg::F_GETFD).is_ok();
        if !open {
            return Err(std::io::Error::other(format!("{CHILD_ENV}: fd {raw} is not open")).into());
        }
        // SAFETY: the parent passed us this fd number for a pipe end it gave to no one else; it
        // was just checked to be open, and nothing in this fresh process owns it yet.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    };
    let (ready, go) = (fd()?, fd()?);
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if spec.ends_with("user+mnt") {
        flags |= CloneFlags::CLONE_NEWNS;
    }
    // Close-on-exec for both ends, so whatever runs inside does not inherit them.
    for f in [&ready, &go] {
        fcntl(f, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    }
    nix::sched::unshare(flags).map_err(UsernsError::Unshare)?;
    File::from(ready).write_all(b"1")?;
    let mut byte = [0u8; 1];
    if File::from(go).read(&mut byte)? != 1 {
        return Err(std::io::Error::other("the parent could not map the ids (see its error)").into());
    }
    become_root()
}

/// The first `name` on `$PATH` (plus the sbin directories, where Debian puts nothing of this
/// but others might).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_match_by_name_or_id_and_skip_junk() {
        let text = "alice:100000:65536\n1001:300000:1000\nbob:200000:65536\nalice:500000:10\n\
                    alice:bad:1\nalice:1:0\n# comment\n";
        assert_eq!(
            parse_sub_ranges(text, Some("alice"), 1000),
            vec![SubRange { start: 100000, count: 65536 }, SubRange { start: 500000, count: 10 }]
        );
        assert_eq!(
            parse_sub_ranges(text, Some("carol"), 1001),
            vec![SubRange { start: 300000, count: 1000 }]
        );
        assert_eq!(parse_sub_ranges(text, None, 7), vec![]);
    }

    #[test]
    fn map_arguments_put_the_user_at_0_and_ranges_after() {
        let ranges = [SubRange { start: 100000, count: 65536 }, SubRange { start: 500000, count: 10 }];
        assert_eq!(
            IdMaps::args(1000, &ranges),
            ["0", "1000", "1", "1", "100000", "65536", "65537", "500000", "10"]
        );
    }

    #[test]
    fn ids_map_both_ways_as_the_namespace_does() {
        let ranges = vec![SubRange { start: 100000, count: 65536 }, SubRange { start: 500000, count: 10 }];
        let m = IdMaps { uid: 1000, gid: 1001, uids: ranges.clone(), gids: ranges };
        assert_eq!(m.uid_to_host(0), Some(1000));
        assert_eq!(m.gid_to_host(0), Some(1001));
        assert_eq!(m.uid_to_host(1), Some(100000));
        assert_eq!(m.uid_to_host(65536), Some(165535));
        assert_eq!(m.uid_to_host(65537), Some(500000));
        assert_eq!(m.uid_to_host(65547), None);
        for id in [0, 1, 42, 65536, 65537, 65546] {
            assert_eq!(m.uid_from_host(m.uid_to_host(id).unwrap()), Some(id));
        }
        assert_eq!(m.uid_from_host(7), None);
    }
}
