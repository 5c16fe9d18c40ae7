//! The FUSE entry points: each decodes its request, calls one `do_*` method and replies.
//! Nothing here panics out: a panic inside an operation becomes EIO and a log line.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, FileHandle as Fh, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use nix::errno::Errno;

use super::attr::id_only_attr;
use super::filesystem::{R, StrataFs, TTL, lock};
use super::handles::FileHandle;
use super::io::{Opened, SetAttr};
use super::upper::Caller;

/// Runs an operation, turning errors and panics into an errno (and a log line).
fn run<T>(op: &str, f: impl FnOnce() -> R<T>) -> Result<T, fuser::Errno> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            match e {
                Errno::ENOENT
                | Errno::EEXIST
                | Errno::ENODATA
                | Errno::ENOTEMPTY
                | Errno::ENOTDIR
                | Errno::EISDIR
                | Errno::ESTALE => {
                    tracing::debug!("{op}: {e}")
                }
                _ => tracing::warn!("{op}: {e}"),
            }
            Err(fuser::Errno::from_i32(e as i32))
        }
        Err(_) => {
            tracing::error!("{op}: internal error (panic caught), answering EIO");
            Err(fuser::Errno::EIO)
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, fuser::Errno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(fuser::Errno::from_i32(libc::ERANGE)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

impl StrataFs {
    fn reply_entry(&self, reply: ReplyEntry, r: Result<crate::union::Entry, fuser::Errno>) {
        match r {
            Ok(e) => {
                let (attr, generation) = self.remember(&e);
                reply.entry(&TTL, &attr, Generation(generation));
            }
            Err(err) => reply.error(err),
        }
    }

    /// Registers an open file, with a passthrough backing id when the kernel allows it.
    /// Returns (fh, open flags, backing).
    ///
    /// The kernel serves every open of a node through one backing file, and refuses (EIO) any
    /// other open while it is in use. A node whose live backing can't serve this open (the
    /// file's lower copy, which a reader holds, now that the file is copied up; a read-only fd
    /// for a writer) gives its names up instead: ESTALE makes the kernel look the name up again
    /// and open a new node, while the old one keeps serving the files open on it.
    fn register_open(
        &self,
        o: Opened,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> Result<(u64, FopenFlags, Option<Arc<fuser::BackingId>>), fuser::Errno> {
        let ino = self.st_ino(&o.entry);
        let mut flags = FopenFlags::empty();
        let mut backing = None;
        // A writer of a file whose suid/sgid a write clears gets no backing but direct I/O: its
        // WRITEs reach the daemon, flagged when the caller lacks CAP_FSETID (see `init`). The
        // kernel refuses any open but a passthrough one of a node with a live backing: such a
        // node gives its names up, as below, and the writer opens a new one.
        if o.write && self.write_skips_passthrough(o.entry.stat.st_mode) {
            if self.handles.backing(ino).is_some() {
                lock(&self.nodes).detach(ino);
                return Err(fuser::Errno::ESTALE);
            }
            flags |= FopenFlags::FOPEN_DIRECT_IO;
        } else if self.passthrough() {
            // A writer needs a writable backing; the one made here is writable when read-write.
            let needs_write = o.upper && o.write;
            let writable = o.upper && (o.write || o.rdwr);
            match self.handles.backing(ino) {
                Some((b, up, w)) if up == o.upper && (w || !needs_write) => backing = Some(b),
                Some(_) => {
                    lock(&self.nodes).detach(ino);
                    return Err(fuser::Errno::ESTALE);
                }
                None => match if !o.write || o.rdwr {
                    open_backing(&o.file)
                } else {
                    self.backing_file(&o).map_err(io::Error::from).and_then(|f| open_backing(&f))
                } {
                    Ok(b) => {
                        let b = Arc::new(b);
                        self.handles.set_backing(ino, &b, o.upper, writable);
                        backing = Some(b);
                    }
                    Err(e) => self.backing_refused(&e),
                },
            }
        }
        if backing.is_none() && !o.upper {
            flags |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        let fh = self.handles.add_file(FileHandle {
            file: Arc::new(o.file),
            ino,
            lower_size: (!o.upper).then(|| u64::try_from(o.entry.stat.st_size).unwrap_or(0)),
            backing: backing.clone(),
        });
        Ok((fh, flags, backing))
    }

    /// Clears suid/sgid of the file a WRITE or FALLOCATE changes (FUSE_HANDLE_KILLPRIV_V2) and
    /// drops the kernel's cached attributes: that reply carries none, and the kernel would keep
    /// the old mode (and exec the file setuid) until they time out. Attributes only (offset
    /// -1): the writer holds the file's pages.
    fn kill_suidgid(&self, ino: INodeNo, fh: u64) -> R<()> {
        if let Some(mode) = self.killed_suidgid(ino.0, Some(fh))? {
            self.do_setattr(ino.0, &SetAttr { mode: Some(mode), fh: Some(fh), ..SetAttr::default() })?;
            if let Some(n) = self.notifier.get() {
                let _ = n.inval_inode(ino, -1, 0);
            }
        }
        Ok(())
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Always readdirplus (not "auto"): a listing then answers the stats that follow it.
        for f in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            InitFlags::FUSE_ASYNC_DIO,
        ] {
            let _ = config.add_capabilities(f);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        // The kernel opens a passthrough backing only for CAP_SYS_ADMIN in the initial user
        // namespace: a rootless daemon would be refused at its first open.
        if self.passthrough() && !crate::sys::userns::privileged() {
            *self.passthrough.get_mut() = false;
        }
        if self.passthrough() {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            *self.passthrough.get_mut() = ok;
        }
        // The daemon clears suid/sgid itself (the WRITE and SETATTR kill flags): with
        // FUSE_HANDLE_KILLPRIV_V2 the kernel sets SB_NOSEC, so a write(2) no longer asks for
        // `security.capability` (a GETXATTR round trip before every write, passthrough or not)
        // once a file is known to have none. The daemon never sees a passthrough write: a file
        // such a write would clear bits of is opened for writing without passthrough
        // (`register_open`).
        let killpriv = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2).is_ok();
        *self.killpriv.get_mut() = killpriv;
        tracing::info!(passthrough = self.passthrough(), killpriv, "FUSE session initialised");
        Ok(())
    }

    fn destroy(&mut self) {
        tracing::info!("FUSE session ends");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = run("lookup", || {
            let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
            let pe = self.entry(parent.0)?;
            if !pe.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            let Some(e) = self.child(&pe, name)? else { return Ok(None) };
            let (attr, generation) = self.remember(&e);
            if e.is_dir() {
                // Requests below a directory start from its entry: without it cached they would
                // resolve it again, probing every layer of its merge once more. Cached under the
                // namespace lock, so a change made meanwhile can't leave it stale.
                lock(&self.nodes).cache(&e);
                self.stack.offer_dir_fds(&e.path, &e.layers);
            }
            Ok(Some((attr, TTL, generation)))
        });
        match r {
            Ok(Some((attr, ttl, generation))) => reply.entry(&ttl, &attr, Generation(generation)),
            // A name in no layer: node id 0 with a timeout is the protocol's cached ENOENT, so
            // asking again for a missing name (what package managers do a lot) stays in the
            // kernel. A name can only appear through this mount (the layers below never change),
            // and the kernel drops the negative entry itself when it makes one there.
            Ok(None) => reply.entry(&TTL, &id_only_attr(0), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.nodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<Fh>, reply: ReplyAttr) {
        match run("getattr", || self.do_getattr(ino.0, fh.map(|f| f.0))) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(err) => reply.error(err),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<Fh>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        let _unfrozen = self.freeze.enter();
        let mut a = SetAttr { mode, uid, gid, size, atime, mtime, fh: fh.map(|f| f.0) };
        match run("setattr", || {
            if kill_suidgid && a.mode.is_none() {
                a.mode = self.killed_suidgid(ino.0, a.fh)?;
            }
            self.do_setattr(ino.0, &a)
        }) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(err) => reply.error(err),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match run("readlink", || self.do_readlink(ino.0)) {
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _unfrozen = self.freeze.enter();
        let r = run("mknod", || self.do_mknod(caller(req), parent.0, name, mode, umask, rdev));
        self.reply_entry(reply, r);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _unfrozen = self.freeze.enter();
        let r = run("mkdir", || self.do_mkdir(caller(req), parent.0, name, mode, umask));
        self.reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _unfrozen = self.freeze.enter();
        match run("unlink", || self.do_unlink(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _unfrozen = self.freeze.enter();
        match run("rmdir", || self.do_rmdir(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let _unfrozen = self.freeze.enter();
        let r = run("symlink", || self.do_symlink(caller(req), parent.0, link_name, target));
        self.reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _unfrozen = self.freeze.enter();
        match run("rename", || {
            // What moves is copied up first without holding the namespace lock (copyup.rs).
            self.prepare_rename(parent.0, name, newparent.0, newname, flags.bits())?;
            self.do_rename(parent.0, name, newparent.0, newname, flags.bits())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _unfrozen = self.freeze.enter();
        // A node with no name (an O_TMPFILE file) gets its first one (tmpfile.rs).
        if lock(&self.nodes).path(ino.0).is_none() {
            match run("link", || self.do_link_nameless(ino.0, newparent.0, newname)) {
                Ok((attr, ttl, generation)) => reply.entry(&ttl, &attr, Generation(generation)),
                Err(e) => reply.error(e),
            }
            return;
        }
        let r = run("link", || self.do_link(ino.0, newparent.0, newname));
        self.reply_entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // Opening for writing copies up (or truncates): a change to the upper.
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        let _unfrozen = writes.then(|| self.freeze.enter());
        match run("open", || self.do_open(ino.0, flags.0)) {
            Ok(o) => match self.register_open(o, |f| reply.open_backing(f)) {
                Ok((fh, fl, Some(b))) => reply.opened_passthrough(Fh(fh), fl, &b),
                Ok((fh, fl, None)) => reply.opened(Fh(fh), fl),
                Err(e) => reply.error(e),
            },
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // fuser reads the file straight into where the reply leaves from (a splice through
        // /dev/fuse, the io_uring entry's payload): no buffer of ours, one copy.
        let Some(h) = self.handles.file(fh.0) else {
            return reply.error(fuser::Errno::EBADF);
        };
        let sent = match h.lower_size {
            Some(file_size) => reply.data_from_sized_file(h.file.as_fd(), offset, size as usize, file_size),
            None => reply.data_from_file(h.file.as_fd(), offset, size as usize),
        };
        if let Err(e) = sent {
            tracing::warn!("read: {}", Errno::from_raw(e.code()));
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: Fh,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _unfrozen = self.freeze.enter();
        match run("write", || {
            // Before the data goes in, as the kernel would (only with FUSE_HANDLE_KILLPRIV_V2).
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                self.kill_suidgid(ino, fh.0)?;
            }
            self.do_write(fh.0, offset, data)
        }) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: Fh, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to do on close (locks are the kernel's, data goes straight to the layer
        // file): ENOSYS makes the kernel stop sending FLUSH, a round trip on every close.
        reply.error(fuser::Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove_file(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: Fh, datasync: bool, reply: ReplyEmpty) {
        match run("fsync", || self.do_fsync(fh.0, datasync)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS: from now on the kernel opens directories itself and caches their listings
        // (see dir.rs). Permissions are the kernel's (default_permissions).
        reply.error(fuser::Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: Fh, offset: u64, mut reply: ReplyDirectory) {
        let r = run("readdir", || {
            self.walk_dir(ino.0, offset, |dir, _, d| {
                let ino = d.listed.map(|le| self.dirent_ino(dir, le)).unwrap_or(d.ino);
                reply.add(INodeNo(ino), d.next, d.kind, d.name)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: Fh, offset: u64, mut reply: ReplyDirectoryPlus) {
        let r = run("readdirplus", || {
            self.walk_dir(ino.0, offset, |dir, current, d| match d.listed {
                None => reply.add(
                    INodeNo(d.ino),
                    d.next,
                    d.name,
                    &Duration::ZERO,
                    &id_only_attr(d.ino),
                    Generation(0),
                ),
                // A name gone since the listing was taken is skipped (not full).
                // One lock for the node's generation and, once the entry is in, its reference.
                Some(le) => self.plus_entry(dir, current, le).is_some_and(|(e, attr)| {
                    let mut nodes = lock(&self.nodes);
                    let generation = nodes.generation(attr.ino.0);
                    let full = reply.add(attr.ino, d.next, d.name, &TTL, &attr, Generation(generation));
                    if !full {
                        nodes.remember(attr.ino.0, &e.path, 1);
                    }
                    full
                }),
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: Fh, datasync: bool, reply: ReplyEmpty) {
        match run("fsyncdir", || self.do_fsyncdir(ino.0, datasync)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match run("statfs", || self.do_statfs()) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _unfrozen = self.freeze.enter();
        match run("setxattr", || self.do_setxattr(ino.0, name, value, flags)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(reply, size, run("getxattr", || self.do_getxattr(ino.0, name)));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(reply, size, run("listxattr", || self.do_listxattr(ino.0)));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _unfrozen = self.freeze.enter();
        match run("removexattr", || self.do_removexattr(ino.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match run("access", || {
            let e = self.entry(ino.0)?;
            if mask.bits() & libc::W_OK != 0 && self.read_only {
                return Err(Errno::EROFS);
            }
            let _ = e;
            Ok(())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _unfrozen = self.freeze.enter();
        // A passthrough backing serves every later open of the file, readers too: a write-only
        // create is opened read-write here so that its own fd can be that backing (no reopen).
        // The kernel still keeps the caller's file write-only.
        let flags =
            if self.passthrough() && flags & libc::O_ACCMODE == libc::O_WRONLY && flags & libc::O_APPEND == 0
            {
                (flags & !libc::O_ACCMODE) | libc::O_RDWR
            } else {
                flags
            };
        match run("create", || {
            let (e, file) = self.do_create(caller(req), parent.0, name, mode, umask, flags)?;
            let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
            Ok(Opened { file, entry: e, upper: true, write, rdwr: flags & libc::O_ACCMODE == libc::O_RDWR })
        }) {
            Ok(o) => {
                let e = o.entry.clone();
                let (fh, fl, backing) = match self.register_open(o, |f| reply.open_backing(f)) {
                    Ok(r) => r,
                    Err(err) => return reply.error(err),
                };
                let (attr, generation) = self.remember(&e);
                // A new file is used at once (its first write's GETXATTR, a getattr): its entry
                // is kept, so those don't look it up again (under the namespace lock, as every
                // entry cached; an upper entry is checked against the disk at each use anyway).
                {
                    let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
                    lock(&self.nodes).cache(&e);
                }
                match backing {
                    Some(b) => reply.created_passthrough(&TTL, &attr, Generation(generation), Fh(fh), fl, &b),
                    None => reply.created(&TTL, &attr, Generation(generation), Fh(fh), fl),
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _unfrozen = self.freeze.enter();
        match run("tmpfile", || self.do_tmpfile(caller(req), parent.0, mode, umask)) {
            Ok(t) => {
                let (generation, attr) = (t.generation, t.attr);
                let (fh, fl, backing) = self.register_tmpfile(t, |f| reply.open_backing(f));
                // No name to cache: TTL zero, its attributes come from the open file.
                match backing {
                    Some(b) => reply.created_passthrough(
                        &Duration::ZERO,
                        &attr,
                        Generation(generation),
                        Fh(fh),
                        fl,
                        &b,
                    ),
                    None => reply.created(&Duration::ZERO, &attr, Generation(generation), Fh(fh), fl),
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: Fh,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _unfrozen = self.freeze.enter();
        match run("fallocate", || {
            // The kernel sends no kill flag with FALLOCATE: a caller other than root is taken
            // to lack CAP_FSETID, as the kernel's own rule would find for almost every one.
            if self.killpriv.load(std::sync::atomic::Ordering::Relaxed) && req.uid() != 0 {
                self.kill_suidgid(ino, fh.0)?;
            }
            self.do_fallocate(fh.0, offset, length, mode)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: Fh, offset: i64, whence: i32, reply: ReplyLseek) {
        match run("lseek", || self.do_lseek(fh.0, offset, whence)) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}
