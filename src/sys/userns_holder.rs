//! The user namespace a rootless user's commands share, kept alive by a small process between
//! them, as Podman's pause process: the first command that needs the namespace makes it (and
//! pays newuidmap + newgidmap once); later ones join it with setns(2), with no setuid helper and
//! no re-exec. `strata system migrate` ends it (Podman's verb); the next command makes a new one.
//!
//! The holder is found through `userns.pid` in `$XDG_RUNTIME_DIR/strata` (else
//! `/run/user/UID/strata`), a directory only the user can write: without one there is no holder
//! and every command makes a namespace of its own, as before. What the file says is checked
//! before anything is joined, so a stale file, a reused pid or a forged file never gets a
//! command into a namespace that is not the user's own with the user's mapping: the pid must
//! name a live process started at the recorded time in this boot, called `strata-userns`,
//! whose user namespace is the recorded one, is owned by the user and maps exactly what
//! /etc/subuid and /etc/subgid give now. A holder whose mapping no longer matches (the ranges
//! changed) is ended and replaced.
//!
//! The holder holds only the user namespace: `strata unshare` makes a mount namespace of its own
//! in it each time, and mounts stay where `strata mount` makes them, in the user's mount
//! namespace (fusermount3 mounts there).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::ForkResult;

use super::daemon::{self, ProcessHandle};
use super::userns::{IdMaps, UsernsError, map_ids, require_helpers};

/// The holder's name (`comm`), what `ps` shows and what a recorded pid must be called.
const HOLDER_NAME: &str = "strata-userns";
const PID_FILE: &str = "userns.pid";
const LOCK_FILE: &str = "userns.lock";

/// A user namespace held for this user, open as an fd (it stays valid whatever the holder does).
#[derive(Debug)]
pub struct HeldNamespace {
    pub pid: i32,
    ns: OwnedFd,
}

impl HeldNamespace {
    /// Moves this process, which must be single-threaded, into the namespace as its root.
    pub fn join(&self) -> Result<(), UsernsError> {
        nix::sched::setns(&self.ns, CloneFlags::CLONE_NEWUSER).map_err(UsernsError::Join)?;
        super::userns::become_root()
    }

    /// The namespace's inode number (what `readlink /proc/PID/ns/user` shows in brackets).
    pub fn inode(&self) -> std::io::Result<u64> {
        Ok(File::from(self.ns.try_clone()?).metadata()?.ino())
    }
}

/// What a holder's pid file records: enough to tell the process it names from any later one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    pid: i32,
    /// Clock ticks after boot (field 22 of /proc/PID/stat).
    start: u64,
    /// The user namespace's inode.
    ns_inode: u64,
    boot_id: String,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut f = text.split_whitespace();
        let r = Record {
            pid: f.next()?.parse().ok().filter(|p| *p > 0)?,
            start: f.next()?.parse().ok()?,
            ns_inode: f.next()?.parse().ok()?,
            boot_id: f.next()?.to_string(),
        };
        f.next().is_none().then_some(r)
    }

    fn line(&self) -> String {
        format!("{} {} {} {}\n", self.pid, self.start, self.ns_inode, self.boot_id)
    }
}

/// The directory of the holder's pid file: `$XDG_RUNTIME_DIR/strata`, else `/run/user/UID/strata`,
/// made 0700 if missing; `None` when neither base is a directory of ours that no one else can
/// write.
pub fn holder_dir() -> Option<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
    let fallback = PathBuf::from(format!("/run/user/{uid}"));
    for base in xdg.into_iter().chain([fallback]) {
        if !private_dir(&base, uid, 0o022) {
            continue;
        }
        let dir = base.join("strata");
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if private_dir(&dir, uid, 0o077) {
            return Some(dir);
        }
    }
    None
}

/// A real directory (not a symlink) owned by `uid` with none of the `forbidden` mode bits.
fn private_dir(p: &Path, uid: u32, forbidden: u32) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & forbidden == 0)
}

/// The namespace held for this user with `maps`: the recorded one when it checks out, else a
/// new one made now (the only time newuidmap and newgidmap run). `Ok(None)`: no private
/// directory for the pid file.
pub fn obtain(maps: &IdMaps) -> Result<Option<HeldNamespace>, UsernsError> {
    let Some(dir) = holder_dir() else {
        tracing::debug!("no private runtime directory: a user namespace of this command's own");
        return Ok(None);
    };
    if let Found::Ours(held) = check(&dir, maps) {
        return Ok(Some(held));
    }
    // One maker at a time; whoever waited finds the namespace the first one made.
    let _lock = lock(&dir)?;
    match check(&dir, maps) {
        Found::Ours(held) => return Ok(Some(held)),
        // Ended only if it runs strata's own executable: the pid file is the user's to write,
        // and a process of theirs that it names is not ours to kill.
        Found::Remapped(holder) if holder.runs_this_executable() => {
            tracing::info!("the subordinate ids changed: ending the user namespace holder {}", holder.pid);
            holder.end();
        }
        Found::Remapped(_) => {}
        Found::Nothing => {}
    }
    create(&dir, maps).map(Some)
}

/// Ends this user's holder, if a pid file names one that checks out (whatever its mapping), and
/// removes the pid file. Namespaces in use (mount daemons, shells of `strata unshare`) live on
/// in the processes that joined them. Returns the pid ended.
pub fn end() -> std::io::Result<Option<i32>> {
    let Some(dir) = holder_dir() else { return Ok(None) };
    let _lock = lock(&dir).map_err(std::io::Error::other)?;
    let ended = match check_identity(&dir) {
        Some(holder) => {
            let pid = holder.pid;
            holder.end();
            Some(pid)
        }
        None => None,
    };
    match std::fs::remove_file(dir.join(PID_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(ended)
}

/// What the pid file leads to.
enum Found {
    Ours(HeldNamespace),
    /// Our holder, but its mapping is not what /etc/subuid and /etc/subgid say now.
    Remapped(Holder),
    Nothing,
}

/// A process the pid file names, checked to be our holder.
struct Holder {
    pid: i32,
    handle: ProcessHandle,
    ns: OwnedFd,
}

impl Holder {
    /// Whether the process runs the same executable file as this one.
    fn runs_this_executable(&self) -> bool {
        let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let theirs = id(&format!("/proc/{}/exe", self.pid));
        theirs.is_some() && theirs == id("/proc/self/exe") && alive(&self.handle)
    }

    /// SIGKILL through the pidfd: it reaches this process and never one that reused its pid.
    fn end(self) {
        // SAFETY: pidfd_send_signal takes an fd we own, a signal number and no info (null).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.handle.as_fd().as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r != 0 {
            tracing::debug!("ending holder {}: {}", self.pid, std::io::Error::last_os_error());
        }
    }
}

fn check(dir: &Path, maps: &IdMaps) -> Found {
    let Some(holder) = check_identity(dir) else { return Found::Nothing };
    let pid = holder.pid;
    let expected = |own, ranges| IdMaps::args(own, ranges).join(" ");
    let mapped =
        |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok().map(|m| normalise(&m));
    let same = mapped("uid_map") == Some(expected(maps.uid, &maps.uids))
        && mapped("gid_map") == Some(expected(maps.gid, &maps.gids));
    // The maps just read were the holder's only if it still exists (its pid not yet reused).
    if !alive(&holder.handle) {
        return Found::Nothing;
    }
    if same { Found::Ours(HeldNamespace { pid, ns: holder.ns }) } else { Found::Remapped(holder) }
}

/// A uid_map or gid_map as one line of numbers separated by single spaces.
fn normalise(map: &str) -> String {
    map.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The process the pid file names, if it is the holder recorded there: alive, started at the
/// recorded time in this boot, named `strata-userns`, in the recorded user namespace, which
/// this user owns.
fn check_identity(dir: &Path) -> Option<Holder> {
    let file = dir.join(PID_FILE);
    let text = read_private(&file)?;
    let Some(rec) = Record::parse(&text) else {
        tracing::debug!("{}: not a holder record", file.display());
        return None;
    };
    if rec.boot_id != boot_id()? {
        return None;
    }
    // Taken first: as long as it says the process lives, /proc/PID is that process.
    let handle = ProcessHandle::open(rec.pid).ok()??;
    let (name, start) = stat_of(rec.pid)?;
    if name != HOLDER_NAME || start != rec.start {
        tracing::debug!("{}: pid {} is not the recorded holder", file.display(), rec.pid);
        return None;
    }
    let ns: OwnedFd = File::open(format!("/proc/{}/ns/user", rec.pid)).ok()?.into();
    let meta = File::from(ns.try_clone().ok()?).metadata().ok()?;
    if meta.ino() != rec.ns_inode || owner_uid(&ns)? != nix::unistd::getuid().as_raw() || !alive(&handle) {
        return None;
    }
    Some(Holder { pid: rec.pid, handle, ns })
}

/// The contents of `file` if it is a regular file of ours (never through a symlink).
fn read_private(file: &Path) -> Option<String> {
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(file).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != nix::unistd::getuid().as_raw() || m.len() > 4096 {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `comm` and start time (clock ticks after boot) of process `pid`.
fn stat_of(pid: i32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // After the name: state is field 3, starttime field 22.
    let start = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((name, start))
}

fn boot_id() -> Option<String> {
    Some(std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string())
}

/// Whether the process behind `handle` has not been reaped (a zombie still holds its pid).
fn alive(handle: &ProcessHandle) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; the fd is ours, no info pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            handle.as_fd().as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// The uid that owns the user namespace `ns` (its creator's effective uid).
fn owner_uid(ns: &OwnedFd) -> Option<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which points at `uid`.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_OWNER_UID, &mut uid as *mut libc::uid_t) };
    (r == 0).then_some(uid)
}

fn lock(dir: &Path) -> Result<nix::fcntl::Flock<File>, UsernsError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LOCK_FILE))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| UsernsError::Io(std::io::Error::from(e)))
}

/// Forks the holder, maps its namespace, and records it. The caller must be single-threaded.
fn create(dir: &Path, maps: &IdMaps) -> Result<HeldNamespace, UsernsError> {
    require_helpers()?;
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let (go_r, go_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    // Forked twice, so that init (or the subreaper) is its parent: no long-lived strata process
    // (a mount daemon, the shell `strata unshare` becomes) has a child it never waits for.
    match daemon::fork().map_err(std::io::Error::from)? {
        ForkResult::Child => {
            drop((ready_r, go_w));
            let _ = nix::unistd::setsid();
            match daemon::fork() {
                Ok(ForkResult::Child) => holder_main(ready_w, go_r),
                Ok(ForkResult::Parent { .. }) => daemon::exit_now(0),
                Err(_) => daemon::exit_now(1),
            }
        }
        ForkResult::Parent { child } => {
            let _ = nix::sys::wait::waitpid(child, None);
        }
    }
    drop((ready_w, go_r));
    // The holder says its pid once it has unshared.
    let mut said = [0u8; 4];
    let mut ready = File::from(ready_r);
    if ready.read_exact(&mut said).is_err() {
        return Err(std::io::Error::other("the user namespace holder could not unshare").into());
    }
    let pid = i32::from_ne_bytes(said);
    map_ids(pid, maps)?;
    let ns: OwnedFd = File::open(format!("/proc/{pid}/ns/user"))?.into();
    let ns_inode = File::from(ns.try_clone()?).metadata()?.ino();
    let (_, start) = stat_of(pid).ok_or_else(|| std::io::Error::other("the holder vanished"))?;
    let boot_id = boot_id().ok_or_else(|| std::io::Error::other("no /proc/sys/kernel/random/boot_id"))?;
    File::from(go_w).write_all(b"1")?;
    // It closes its end of `ready` last, once it holds nothing of ours (the other pipe ends
    // included): from here on a look at its fds finds only /dev/null.
    let _ = ready.read(&mut [0u8; 1]);
    let rec = Record { pid, start, ns_inode, boot_id };
    let tmp = dir.join(format!(".{PID_FILE}.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(rec.line().as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, dir.join(PID_FILE)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    tracing::debug!(pid, ns_inode, "made the user namespace holder");
    Ok(HeldNamespace { pid, ns })
}

/// The holder (in a session of its own already): named, in a new user namespace, then nothing
/// of the caller's (no terminal, no inherited fd: a pipe kept open would keep a `$(strata …)`
/// waiting forever; no working directory), asleep until killed.
fn holder_main(ready: OwnedFd, go: OwnedFd) -> ! {
    // Every inherited fd above 2 but the two pipe ends goes first (the caller's locks among them).
    let mut keep = [ready.as_raw_fd() as libc::c_uint, go.as_raw_fd() as libc::c_uint];
    keep.sort_unstable();
    let mut first: libc::c_uint = 3;
    for fd in keep.into_iter().chain([libc::c_uint::MAX]) {
        if fd > first {
            // SAFETY: close_range takes fd numbers and flags; the fds in [first, fd) are
            // inherited ones this process never uses (the two it needs are outside the span).
            unsafe { libc::close_range(first, fd - 1, 0) };
        }
        first = first.max(fd.saturating_add(1));
    }
    let _ = nix::sys::prctl::set_name(c"strata-userns");
    if nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_err() {
        daemon::exit_now(1);
    }
    let _ = std::env::set_current_dir("/");
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        let _ = nix::unistd::dup2_stderr(null.as_fd());
    }
    let me = (std::process::id() as i32).to_ne_bytes();
    let mut byte = [0u8; 1];
    let (mut ready, mut go) = (File::from(ready), File::from(go));
    let told = ready.write_all(&me).is_ok() && go.read(&mut byte).ok() == Some(1);
    // `ready` goes last: its end of file tells the parent this process is set up.
    drop(go);
    drop(ready);
    if !told {
        daemon::exit_now(1);
    }
    // A mount daemon blocks SIGTERM and friends; the holder starts clean, and a terminal's
    // signals never reach it (its own session).
    let _ = SigSet::empty().thread_set_mask();
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
    }
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let r = Record { pid: 42, start: 1234, ns_inode: 4026532000, boot_id: "b-1".into() };
        assert_eq!(Record::parse(&r.line()), Some(r));
        for junk in ["", "42", "42 1 2", "0 1 2 b", "-3 1 2 b", "x 1 2 b", "42 1 2 b extra", "42 1 y b"] {
            assert_eq!(Record::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn maps_compare_whatever_the_kernel_s_padding() {
        let kernel = "         0       1000          1\n         1     300000      65536\n";
        let m = IdMaps {
            uid: 1000,
            gid: 1000,
            uids: vec![super::super::userns::SubRange { start: 300000, count: 65536 }],
            gids: vec![],
        };
        assert_eq!(normalise(kernel), IdMaps::args(m.uid, &m.uids).join(" "));
        assert_ne!(normalise("0 1000 1\n"), IdMaps::args(m.uid, &m.uids).join(" "));
    }

    #[test]
    fn our_own_stat_reads() {
        let (name, start) = stat_of(std::process::id() as i32).unwrap();
        assert!(!name.is_empty());
        assert!(start > 0);
    }
}
