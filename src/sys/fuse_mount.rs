//! Mounting a FUSE filesystem: `mount(2)` with a `/dev/fuse` fd as root, `fusermount3` (setuid)
//! handing the fd back over a socket otherwise, as libfuse does.
//!
//! strata mounts itself instead of letting fuser do it: fuser unmounts the mountpoint *path*
//! when its session ends, after a check that takes a dead connection for a live one, so a mount
//! made on the same path in the meantime (a remount right after `umount`) was unmounted by the
//! old daemon. Here the session never unmounts anything; `unmount_if_ours` asks the connection.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};

/// What to mount.
pub struct FuseMount<'a> {
    /// Source shown in /proc/mounts.
    pub fsname: &'a str,
    /// The type is `fuse.<subtype>`.
    pub subtype: &'a str,
    /// mount(8) flag names (`ro`, `nosuid`, `noatime`, ...), applied in order.
    pub flags: Vec<&'a str>,
    /// Let other users in (the kernel still checks permissions: `default_permissions` is always on).
    pub allow_other: bool,
}

/// The MS_ bit a mount(8) flag name sets (`true`) or clears (`false`).
pub fn flag(name: &str) -> Option<(MsFlags, bool)> {
    Some(match name {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        _ => return None,
    })
}

impl FuseMount<'_> {
    /// Mounts on `mountpoint` and returns the connection's `/dev/fuse` fd (the kernel's INIT
    /// request is waiting on it). Unprivileged, or where mount(2) says EPERM, goes through
    /// fusermount3.
    pub fn mount(&self, mountpoint: &Path) -> io::Result<OwnedFd> {
        self.start(mountpoint)?.finish()
    }

    /// Starts mounting on `mountpoint`: as root mount(2) is done when this returns; otherwise
    /// fusermount3 is running and [`PendingMount::finish`] collects the fd it sends, so the
    /// caller can do other set-up in the meantime (a rootless daemon enters its user
    /// namespace while fusermount3 mounts: two helper processes at once instead of in turn).
    pub fn start(&self, mountpoint: &Path) -> io::Result<PendingMount> {
        if nix::unistd::geteuid().is_root() {
            match self.mount_direct(mountpoint) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                r => return r.map(PendingMount::Done),
            }
        }
        self.spawn_fusermount(mountpoint)
    }

    fn mount_direct(&self, mountpoint: &Path) -> io::Result<OwnedFd> {
        let rootmode = std::fs::metadata(mountpoint)?.permissions().mode() & libc::S_IFMT;
        let dev: OwnedFd = File::options().read(true).write(true).open("/dev/fuse")?.into();
        let mut data = format!(
            "fd={},rootmode={rootmode:o},user_id={},group_id={},default_permissions",
            dev.as_raw_fd(),
            nix::unistd::getuid(),
            nix::unistd::getgid()
        );
        if self.allow_other {
            data.push_str(",allow_other");
        }
        let mut ms = MsFlags::empty();
        for (bit, on) in self.flags.iter().filter_map(|f| flag(f)) {
            ms.set(bit, on);
        }
        let fstype = format!("fuse.{}", self.subtype);
        nix::mount::mount(Some(self.fsname), mountpoint, Some(fstype.as_str()), ms, Some(data.as_str()))?;
        Ok(dev)
    }

    fn spawn_fusermount(&self, mountpoint: &Path) -> io::Result<PendingMount> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
        // fusermount3 finds its end in _FUSE_COMMFD: a copy without close-on-exec, closed here
        // once the child has it.
        let inherited = nix::unistd::dup(&theirs)?;
        let mut opts = vec![
            format!("fsname={}", self.fsname),
            format!("subtype={}", self.subtype),
            "default_permissions".to_string(),
        ];
        opts.extend(self.flags.iter().map(|f| f.to_string()));
        if self.allow_other {
            opts.push("allow_other".into());
        }
        let child = Command::new("fusermount3")
            .arg("-o")
            .arg(opts.join(","))
            .arg("--")
            .arg(mountpoint)
            .env("_FUSE_COMMFD", inherited.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running fusermount3: {e}")))?;
        // Only fusermount3 holds its end now: when it exits without sending, our read ends.
        drop((inherited, theirs));
        Ok(PendingMount::Fusermount { child, sock: ours })
    }
}

/// A mount being made: done (mount(2)), or fusermount3 still running.
pub enum PendingMount {
    Done(OwnedFd),
    Fusermount { child: std::process::Child, sock: OwnedFd },
}

impl PendingMount {
    /// The connection's `/dev/fuse` fd once the mount exists (fusermount3's error otherwise).
    pub fn finish(self) -> io::Result<OwnedFd> {
        let (child, sock) = match self {
            PendingMount::Done(fd) => return Ok(fd),
            PendingMount::Fusermount { child, sock } => (child, sock),
        };
        let received = receive_fd(&sock);
        drop(sock);
        let out = child.wait_with_output()?;
        match received {
            Ok(fd) => Ok(fd),
            Err(e) => Err(fusermount_failed(&out.stderr, e)),
        }
    }

    /// [`PendingMount::finish`] without waiting for fusermount3 once it has sent the fd (it
    /// exits right after): the caller reaps it ([`Helper::reap`]) once the mount answers, so
    /// its exit is not on the way to the answer.
    pub fn finish_unreaped(self) -> io::Result<(OwnedFd, Helper)> {
        let (child, sock) = match self {
            PendingMount::Done(fd) => return Ok((fd, Helper(None))),
            PendingMount::Fusermount { child, sock } => (child, sock),
        };
        let received = receive_fd(&sock);
        drop(sock);
        match received {
            Ok(fd) => Ok((fd, Helper(Some(child)))),
            Err(e) => Err(fusermount_failed(&child.wait_with_output()?.stderr, e)),
        }
    }
}

/// fusermount3 after it sent the fd, still to be reaped.
pub struct Helper(Option<std::process::Child>);

impl Helper {
    /// Waits for fusermount3's exit (its output is read to the end, so it never blocks on it).
    pub fn reap(self) {
        if let Some(child) = self.0 {
            let _ = child.wait_with_output();
        }
    }
}

/// fusermount3's own message when it wrote one, else what went wrong receiving the fd.
fn fusermount_failed(stderr: &[u8], e: io::Error) -> io::Error {
    let why = String::from_utf8_lossy(stderr).trim().to_string();
    io::Error::other(if why.is_empty() { format!("fusermount3: {e}") } else { why })
}

/// The fd fusermount3 sends over `sock` (SCM_RIGHTS).
fn receive_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut cmsg = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(Errno::EINTR) => continue,
            r => break r?,
        }
    };
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                // SAFETY: SCM_RIGHTS just installed these fds in this process; nothing else owns them.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                for extra in fds {
                    // SAFETY: as above; an fd we did not ask for is closed at once.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                return Ok(owned);
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no /dev/fuse fd received"))
}

/// Whether the kernel has ended the connection behind `dev` (its mount is gone): /dev/fuse
/// polls POLLERR then.
fn connection_ended(dev: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(dev.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL)),
        Err(_) => false,
    }
}

/// Unmounts `mountpoint` lazily if the connection behind `dev` is still mounted, i.e. only a
/// mount that is still ours (a session that ended on an error leaves none behind).
pub fn unmount_if_ours(dev: &impl AsFd, mountpoint: &Path) -> io::Result<()> {
    if connection_ended(dev) { Ok(()) } else { detach(mountpoint) }
}

/// Unmounts `mountpoint` lazily: `umount2(MNT_DETACH)`, or `fusermount3 -u -z` unprivileged.
pub fn detach(mountpoint: &Path) -> io::Result<()> {
    match umount2(mountpoint, MntFlags::MNT_DETACH) {
        Err(Errno::EPERM) => fusermount_unmount(mountpoint),
        r => r.map_err(Into::into),
    }
}

/// `fusermount3 -u` (then lazily, `-z`): how an unprivileged user unmounts.
pub fn fusermount_unmount(mountpoint: &Path) -> io::Result<()> {
    for args in [&["-u", "-q"][..], &["-u", "-q", "-z"][..]] {
        let st = Command::new("fusermount3").args(args).arg(OsStr::new("--")).arg(mountpoint).status();
        if matches!(st, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    Err(io::Error::other(format!("fusermount3 -u {} failed", mountpoint.display())))
}
