//! Every filesystem operation through the kernel, with ordinary syscalls and tools.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use common::mount::*;

fn setup() -> Option<(Scratch, Mount)> {
    let s = Scratch::for_fuse(2)?;
    s.write("l2/lower.txt", "lower data\n");
    s.write("l2/dir/a", "a");
    s.write("l2/dir/b", "b");
    s.write("l1/top.txt", "top\n");
    let m = s.mount_rw(2);
    Some((s, m))
}

#[test]
fn create_read_write_flags() {
    let Some((s, m)) = setup() else { return };
    fs::write(m.path("new.txt"), "hello").unwrap();
    assert_eq!(fs::read_to_string(m.path("new.txt")).unwrap(), "hello");
    assert_eq!(fs::read_to_string(s.p("upper/new.txt")).unwrap(), "hello");
    // O_EXCL
    let e = OpenOptions::new().write(true).create_new(true).open(m.path("new.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    let e = OpenOptions::new().write(true).create_new(true).open(m.path("lower.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    // O_APPEND on a lower file copies it up and appends
    let mut f = OpenOptions::new().append(true).open(m.path("lower.txt")).unwrap();
    f.write_all(b"more\n").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(m.path("lower.txt")).unwrap(), "lower data\nmore\n");
    assert_eq!(fs::read_to_string(s.p("l2/lower.txt")).unwrap(), "lower data\n", "lower untouched");
    // O_TRUNC
    let mut f = OpenOptions::new().write(true).truncate(true).open(m.path("top.txt")).unwrap();
    f.write_all(b"T").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(m.path("top.txt")).unwrap(), "T");
    // read/write at offsets
    let mut f = OpenOptions::new().read(true).write(true).open(m.path("new.txt")).unwrap();
    f.seek(SeekFrom::Start(1)).unwrap();
    f.write_all(b"EL").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut out = String::new();
    f.read_to_string(&mut out).unwrap();
    assert_eq!(out, "hELlo");
}

#[test]
fn special_files_and_links() {
    let Some((s, m)) = setup() else { return };
    fs::create_dir(m.path("newdir")).unwrap();
    assert!(s.p("upper/newdir").is_dir());
    sh(&format!("mkfifo {}", m.path("fifo").display()));
    assert!(fs::symlink_metadata(m.path("fifo")).unwrap().file_type().is_fifo());
    sh(&format!("mknod {} c 1 3", m.path("null").display()));
    let md = fs::symlink_metadata(m.path("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
    std::os::unix::fs::symlink("lower.txt", m.path("sym")).unwrap();
    assert_eq!(fs::read_link(m.path("sym")).unwrap().to_str(), Some("lower.txt"));
    assert_eq!(fs::read_to_string(m.path("sym")).unwrap(), "lower data\n");
    fs::hard_link(m.path("lower.txt"), m.path("hard")).unwrap();
    let a = fs::metadata(m.path("lower.txt")).unwrap();
    let b = fs::metadata(m.path("hard")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    fs::write(m.path("hard"), "via hard").unwrap();
    assert_eq!(fs::read_to_string(m.path("lower.txt")).unwrap(), "via hard");
}

#[test]
fn unlink_rmdir_whiteouts_and_opaque() {
    let Some((s, m)) = setup() else { return };
    fs::remove_file(m.path("lower.txt")).unwrap();
    assert!(!m.path("lower.txt").exists());
    assert!(s.p("upper/.wh.lower.txt").exists(), "deleting a lower entry writes a whiteout");
    // rmdir judges emptiness on the merged view
    let e = fs::remove_dir(m.path("dir")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(m.path("dir/a")).unwrap();
    fs::remove_file(m.path("dir/b")).unwrap();
    fs::remove_dir(m.path("dir")).unwrap();
    assert!(s.p("upper/.wh.dir").exists());
    assert!(!s.p("upper/dir").exists());
    // recreate: opaque, whiteout gone
    fs::create_dir(m.path("dir")).unwrap();
    assert!(names(&m.path("dir")).is_empty());
    assert!(s.p("upper/dir/.wh..wh..opq").exists());
    assert!(!s.p("upper/.wh.dir").exists());
    // creating over a whiteout removes it
    fs::write(m.path("lower.txt"), "again").unwrap();
    assert!(!s.p("upper/.wh.lower.txt").exists());
    assert_eq!(fs::read_to_string(m.path("lower.txt")).unwrap(), "again");
    // an upper-only file leaves no whiteout
    fs::write(m.path("tmp"), "x").unwrap();
    fs::remove_file(m.path("tmp")).unwrap();
    assert!(!s.p("upper/.wh.tmp").exists());
    // a new directory over nothing is not opaque
    fs::create_dir(m.path("fresh")).unwrap();
    assert!(!s.p("upper/fresh/.wh..wh..opq").exists());
    // rm -rf of a lower tree
    s.write("l2/big/x/y/z", "z");
    drop(m);
    let m = s.mount_rw(2);
    sh(&format!("rm -rf {}", m.path("big").display()));
    assert!(!m.path("big").exists());
    assert!(s.p("upper/.wh.big").exists());
}

#[test]
fn whiteouts_share_one_inode() {
    let Some((s, m)) = setup() else { return };
    fs::remove_file(m.path("lower.txt")).unwrap();
    fs::remove_file(m.path("dir/a")).unwrap();
    // Like kernel overlayfs: whiteouts are hard links of one empty file, not an inode each.
    let one = fs::metadata(s.p("upper/.wh.lower.txt")).unwrap();
    let two = fs::metadata(s.p("upper/dir/.wh.a")).unwrap();
    assert_eq!((one.dev(), one.ino()), (two.dev(), two.ino()));
    assert!(one.is_file() && one.len() == 0 && one.nlink() >= 2, "{one:?}");
    // Removing one of them (a create over it) leaves the other in place.
    fs::write(m.path("lower.txt"), "new").unwrap();
    assert!(!s.p("upper/.wh.lower.txt").exists());
    assert!(!m.path("dir/a").exists());
    assert_eq!(fs::read_to_string(m.path("dir/b")).unwrap(), "b");
    // A remount starts a new shared file; old whiteouts keep working.
    drop(m);
    let m = s.mount_rw(2);
    assert!(!m.path("dir/a").exists());
    fs::remove_file(m.path("top.txt")).unwrap();
    let three = fs::metadata(s.p("upper/.wh.top.txt")).unwrap();
    assert_ne!(three.ino(), two.ino());
    assert!(!m.path("top.txt").exists());
}

#[test]
fn whiteout_names_refused() {
    let Some((_s, m)) = setup() else { return };
    for name in [".wh.foo", ".wh..wh..opq"] {
        let e = fs::write(m.path(name), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{name}");
        let e = fs::create_dir(m.path(name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{name}");
    }
    let e = fs::rename(m.path("top.txt"), m.path(".wh.top")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn setattr_ops() {
    let Some((s, m)) = setup() else { return };
    let p = m.path("lower.txt");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(s.p("l2/lower.txt")).unwrap().mode() & 0o7777, 0o644);
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(3).unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(&p).unwrap(), "low");
    sh(&format!("truncate -s 10 {}", p.display()));
    assert_eq!(fs::metadata(&p).unwrap().len(), 10);
    sh(&format!("touch -m -d @1000000000 {}", p.display()));
    assert_eq!(fs::metadata(&p).unwrap().mtime(), 1_000_000_000);
    sh(&format!("touch -h -d @1000000 {}", m.path("top.txt").display()));
    assert_eq!(fs::metadata(m.path("top.txt")).unwrap().mtime(), 1_000_000);
}

#[test]
fn xattrs_and_private_names() {
    let Some((s, m)) = setup() else { return };
    let p = m.path("lower.txt");
    sh(&format!("setfattr -n user.color -v blue {}", p.display()));
    assert_eq!(sh(&format!("getfattr --only-values -n user.color {}", p.display())), "blue");
    let list = sh(&format!("getfattr -d -m - {}", p.display()));
    assert!(list.contains("user.color"), "{list}");
    assert!(!list.contains("strata.origin"), "private xattrs never show: {list}");
    // the copy-up recorded its origin privately
    let raw = sh(&format!("getfattr -d -m - {}", s.p("upper/lower.txt").display()));
    assert!(raw.contains("trusted.strata.origin"), "{raw}");
    sh(&format!("setfattr -x user.color {}", p.display()));
    assert!(!sh(&format!("getfattr -d -m - {}", p.display())).contains("user.color"));
    let out = std::process::Command::new("setfattr")
        .args(["-n", "trusted.strata.origin", "-v", "x"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success(), "private xattrs can't be set through the mount");
    // XATTR_CREATE semantics
    xattr::set(&p, "user.once", b"1").unwrap();
    assert!(xattr::get(&p, "user.once").unwrap().is_some());
    // dir xattrs
    sh(&format!("setfattr -n user.d -v 1 {}", m.path("dir").display()));
    assert!(sh(&format!("getfattr -d {}", m.path("dir").display())).contains("user.d"));
}

#[test]
fn statfs_fsync_fallocate_seek() {
    let Some((_s, m)) = setup() else { return };
    let st = nix::sys::statvfs::statvfs(&m.mountpoint).unwrap();
    assert!(st.blocks() > 0);
    let mut f =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(m.path("sparse")).unwrap();
    f.write_all(b"x").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // a hole after 4 MiB of nothing, then data
    f.set_len(0).unwrap();
    f.seek(SeekFrom::Start(8 << 20)).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    let data = nix::unistd::lseek(&f, 0, nix::unistd::Whence::SeekData).unwrap();
    assert!(data >= 4 << 20, "SEEK_DATA skips the hole: {data}");
    let hole = nix::unistd::lseek(&f, 0, nix::unistd::Whence::SeekHole).unwrap();
    assert_eq!(hole, 0);
    let dir = File::open(&m.mountpoint).unwrap();
    dir.sync_all().unwrap();
    nix::unistd::access(&m.path("top.txt"), nix::unistd::AccessFlags::R_OK).unwrap();
}

#[test]
fn locks_and_shared_mmap() {
    let Some((_s, m)) = setup() else { return };
    let p = m.path("lower.txt");
    // flock held by one process blocks a non-blocking flock of another
    let mut child = std::process::Command::new("flock").arg(&p).args(["sleep", "2"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let busy = std::process::Command::new("flock").args(["-n"]).arg(&p).arg("true").status().unwrap();
    assert!(!busy.success(), "flock must conflict");
    child.wait().unwrap();
    // fcntl locks
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let fl = libc::flock { l_type: libc::F_WRLCK as i16, l_whence: 0, l_start: 0, l_len: 0, l_pid: 0 };
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETLK(&fl)).unwrap();
    drop(f);
    // shared writable mmap, via python3
    let py = format!(
        "import mmap,os\nf=open('{p}','r+b')\nm=mmap.mmap(f.fileno(),0)\nm[0:5]=b'MMAPD'\nm.flush()\nm.close()\nf.close()\n",
        p = p.display()
    );
    sh(&format!("python3 -c \"{}\"", py.replace('"', "\\\"")));
    assert!(fs::read_to_string(&p).unwrap().starts_with("MMAPD"));
}

/// File data through the kernel at odd offsets and sizes, across and past the end of the file,
/// with and without passthrough. Without it every READ reaches the daemon (O_DIRECT: as the
/// reader asked, not in readahead's page-aligned pieces), whose replies are spliced from the
/// layer file or read into a reused buffer; a handle opened before a copy-up keeps reading
/// whole, consistent data while another writes the file.
#[test]
fn reads_at_odd_offsets_and_sizes_and_the_end() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let data = common::registry::noise((3 << 20) + 12345, 7);
    fs::write(s.p("l1/big"), &data).unwrap();
    fs::write(s.p("l1/small"), b"0123456789").unwrap();
    for extra in ["nopassthrough", "passthrough"] {
        fs::remove_dir_all(s.p("upper")).unwrap();
        fs::create_dir(s.p("upper")).unwrap();
        let opts = if extra == "passthrough" { s.rw_opts(1) } else { format!("{},{extra}", s.rw_opts(1)) };
        let mut m = Mount::overlay(&opts, &s.p("mnt"));
        reads_through(&m, &s, &data, extra);
        m.unmount();
    }
}

fn reads_through(m: &Mount, s: &Scratch, data: &[u8], extra: &str) {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let big = File::open(m.path("big")).unwrap();
    check_reads(&big, data, &format!("{extra}, buffered"));
    let small = fs::read(m.path("small")).unwrap();
    assert_eq!(small, b"0123456789", "{extra}");
    // With passthrough, O_DIRECT reaches the layer file's filesystem, which wants aligned
    // offsets (kernel overlayfs answers EINVAL alike).
    if extra == "nopassthrough" {
        let direct = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(m.path("big")).unwrap();
        check_reads(&direct, data, &format!("{extra}, O_DIRECT"));
        // Copy-up while `direct` is open, then a write at an odd offset.
        let w = OpenOptions::new().write(true).open(m.path("big")).unwrap();
        w.write_all_at(b"NEW DATA", 100_003).unwrap();
        drop(w);
        let mut new = data.to_vec();
        new[100_003..100_011].copy_from_slice(b"NEW DATA");
        let mut buf = vec![0u8; 200_000];
        let n = direct.read_at(&mut buf, 50_000).unwrap();
        assert_eq!(n, 200_000, "{extra}: read after copy-up");
        assert!(
            buf == data[50_000..250_000] || buf == new[50_000..250_000],
            "{extra}: a handle opened before the copy-up read neither the old nor the new data"
        );
        let fresh = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(m.path("big")).unwrap();
        check_reads(&fresh, &new, &format!("{extra}, O_DIRECT after copy-up"));
        assert!(fs::read(s.p("upper/big")).unwrap() == new, "{extra}: the upper copy");
    }
}

/// A lower file's READ replies take its length from the size seen at open (a layer never
/// changes, so no `fstat` per READ). A lower directory changed under the mount anyway (as
/// `strata-overlay`'s lowerdir can be) must still get whole, true replies: a lower file cut
/// short while a handle is open is answered with what it holds (the splice comes up short and
/// the reply goes through a buffer), never a failed read or bytes from a previous reply.
#[test]
fn reads_of_a_lower_file_cut_short_under_the_mount() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let Some(s) = Scratch::for_fuse(1) else { return };
    let data = common::registry::noise((2 << 20) + 777, 11);
    fs::write(s.p("l1/big"), &data).unwrap();
    let m = Mount::overlay(&format!("{},nopassthrough", s.rw_opts(1)), &s.p("mnt"));
    let f = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(m.path("big")).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    assert_eq!(f.read_at(&mut buf, 1 << 20).unwrap(), buf.len());
    assert!(buf == data[1 << 20..(1 << 20) + (256 << 10)], "before the cut");
    let cut = (1 << 20) + 100_000;
    OpenOptions::new().write(true).open(s.p("l1/big")).unwrap().set_len(cut as u64).unwrap();
    // Across the new end, past it, and wholly before it (spliced: 32 KiB and more).
    for (off, want) in [(1 << 20, 100_000), (cut + 4096, 0), (512 << 10, 256 << 10)] {
        let n = f.read_at(&mut buf, off as u64).unwrap_or_else(|e| panic!("read at {off}: {e}"));
        assert_eq!(n, want, "read at {off}: length");
        assert!(buf[..n] == data[off..off + n], "read at {off}: wrong bytes");
    }
    drop(f);
}

/// Reads racing a writer that truncates and rewrites the file: a READ whose file shrinks
/// between the daemon's size check and its splice is answered through a buffer after the pipe
/// is emptied, and nothing left in a pipe reaches a later reply (which the kernel would refuse,
/// failing the read). Every page a read returns holds the file's bytes (each rewrite writes the
/// same ones), or zeros now and then: the kernel's own race, which no FUSE server without the
/// writeback cache can close. A READ answered after the daemon truncated the file but before
/// the kernel applied the SETATTR reply (the truncating task has not run again yet) comes back
/// short; the kernel zero-fills the rest of its pages and marks them up to date, and
/// FUSE_I_SIZE_UNSTABLE stops `fuse_short_read` from shrinking i_size, so a reader copies those
/// zeros within the old size until the truncation drops the pages. Traced with the `fuse` and
/// `filemap` tracepoints: the READ answered with 0 bytes 7 µs before the SETATTR reply, the
/// reader copied 256 KiB of zeros. So whole zero pages are allowed, in a minority of reads, and
/// any other wrong byte fails. `STRATA_TEST_READ_RACE_SECS` runs it longer (default 1 s).
#[test]
fn reads_racing_truncation_return_whole_data() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let Some(s) = Scratch::for_fuse(1) else { return };
    let m = Mount::overlay(&format!("{},nopassthrough", s.rw_opts(1)), &s.p("mnt"));
    let data = common::registry::noise(1 << 20, 13);
    fs::write(m.path("racy"), &data).unwrap();
    let secs = std::env::var("STRATA_TEST_READ_RACE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let (path, wdata) = (m.path("racy"), data.clone());
    let writer = std::thread::spawn(move || {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        while std::time::Instant::now() < until {
            f.set_len(0).unwrap();
            f.write_all_at(&wdata, 0).unwrap();
        }
    });
    let f = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(m.path("racy")).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let (mut reads, mut zeroed) = (0, 0);
    while std::time::Instant::now() < until {
        for off in [0u64, 4096, 300_001] {
            let n = f.read_at(&mut buf, off).unwrap_or_else(|e| panic!("read at {off}: {e}"));
            let o = off as usize;
            // Page by page of the file: its bytes, or (the kernel's race) all zeros.
            let mut at = o;
            while at < o + n {
                let end = ((at / 4096 + 1) * 4096).min(o + n);
                let got = &buf[at - o..end - o];
                if got != &data[at..end] {
                    assert!(got.iter().all(|&b| b == 0), "read {n} at {off}: wrong bytes in [{at}, {end})");
                    zeroed += 1;
                }
                at = end;
            }
            reads += 1;
        }
    }
    writer.join().unwrap();
    assert!(reads > 10, "only {reads} reads");
    assert!(zeroed * 10 < reads, "{zeroed} zeroed pages in {reads} reads");
    drop(f);
    assert!(fs::read(m.path("racy")).unwrap() == data);
}

/// A write drops a file's capability (the kernel asks for `security.capability` before every
/// write(2) and removes it): the daemon remembers files that have none, and that memory must not
/// outlive a capability set since — on a file made through the mount, and on a lower file whose
/// copy-up carried one.
#[test]
fn a_write_drops_a_capability_set_since_the_file_was_made() {
    let Some((s, m)) = setup() else { return };
    // cap_net_raw+ep, VFS_CAP_REVISION_2
    let cap: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let made = m.path("made");
    fs::write(&made, "x").unwrap();
    xattr::set(&made, "security.capability", cap).unwrap();
    assert_eq!(xattr::get(&made, "security.capability").unwrap().as_deref(), Some(cap));
    OpenOptions::new().append(true).open(&made).unwrap().write_all(b"y").unwrap();
    assert_eq!(xattr::get(&made, "security.capability").unwrap(), None, "the write dropped it");
    assert_eq!(xattr::get(s.p("upper/made"), "security.capability").unwrap(), None);
    assert_eq!(fs::read_to_string(&made).unwrap(), "xy");

    s.write("l2/capped", "lower");
    xattr::set(s.p("l2/capped"), "security.capability", cap).unwrap();
    let capped = m.path("capped");
    OpenOptions::new().append(true).open(&capped).unwrap().write_all(b"!").unwrap();
    assert_eq!(xattr::get(&capped, "security.capability").unwrap(), None, "the write dropped it");
    assert_eq!(xattr::get(s.p("upper/capped"), "security.capability").unwrap(), None);
    assert_eq!(
        xattr::get(s.p("l2/capped"), "security.capability").unwrap().as_deref(),
        Some(cap),
        "lower untouched"
    );
    // Made, written (remembered as capability-free), then given one: the next write drops it.
    fs::write(&made, "again").unwrap();
    xattr::set(&made, "security.capability", cap).unwrap();
    OpenOptions::new().append(true).open(&made).unwrap().write_all(b"!").unwrap();
    assert_eq!(xattr::get(&made, "security.capability").unwrap(), None);
}

/// Writes through the daemon (no passthrough; the daemon then clears suid/sgid itself, the
/// kernel's `FUSE_HANDLE_KILLPRIV_V2`) and through passthrough give the same files: data at odd
/// offsets and sizes, appends, O_DIRECT; suid, and sgid on a group-executable file, cleared by a
/// write or a truncate from a caller without CAP_FSETID and by any chown, kept for a root
/// writer; a capability dropped by the next write.
#[test]
fn writes_and_the_suid_bits_they_clear_with_and_without_passthrough() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let Some(s) = Scratch::for_fuse(1) else { return };
    let data = common::registry::noise((2 << 20) + 4321, 11);
    for extra in ["nopassthrough", "passthrough"] {
        fs::remove_dir_all(s.p("upper")).unwrap();
        fs::create_dir(s.p("upper")).unwrap();
        let opts = if extra == "passthrough" { s.rw_opts(1) } else { format!("{},{extra}", s.rw_opts(1)) };
        let mut m = Mount::overlay(&opts, &s.p("mnt"));

        // Data: pieces of odd sizes at odd offsets, out of order, then appends and O_DIRECT.
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(m.path("data")).unwrap();
        let mut expect = vec![0u8; data.len()];
        let cuts = [0usize, 1, 4095, 4097, 70_001, 1 << 20, (1 << 20) + 3, (2 << 20) + 1, data.len()];
        for w in cuts.windows(2).rev() {
            f.write_all_at(&data[w[0]..w[1]], w[0] as u64).unwrap();
            expect[w[0]..w[1]].copy_from_slice(&data[w[0]..w[1]]);
        }
        drop(f);
        let mut a = OpenOptions::new().append(true).open(m.path("data")).unwrap();
        for piece in [&b"x"[..], &data[..12_345], &data[..1 << 20]] {
            a.write_all(piece).unwrap();
            expect.extend_from_slice(piece);
        }
        drop(a);
        if extra == "nopassthrough" {
            // O_DIRECT: as the writer asked (passthrough hands it to the upper's filesystem,
            // which wants aligned offsets).
            let d = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(m.path("data")).unwrap();
            d.write_all_at(&data[..777_777], 5).unwrap();
            expect[5..777_782].copy_from_slice(&data[..777_777]);
        }
        assert!(fs::read(m.path("data")).unwrap() == expect, "{extra}: data through the mount");
        assert!(fs::read(s.p("upper/data")).unwrap() == expect, "{extra}: data in the upper");

        // suid/sgid. `nofsetid` runs a shell as root without CAP_FSETID.
        let nofsetid = |script: &str| {
            let st = std::process::Command::new("setpriv")
                .args(["--bounding-set", "-fsetid", "--inh-caps", "-fsetid", "--", "sh", "-euc", script])
                .status()
                .unwrap();
            assert!(st.success(), "{extra}: {script}");
        };
        // stat(1) asks for the mode alone, which the kernel answers from its cache while the
        // attributes are valid: a write must not leave the old mode there.
        let mode = |name: &str| {
            let out =
                std::process::Command::new("stat").args(["-c", "%a"]).arg(m.path(name)).output().unwrap();
            u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).unwrap()
        };
        let make = |name: &str, mode: u32| {
            fs::write(m.path(name), "12345").unwrap();
            fs::set_permissions(m.path(name), fs::Permissions::from_mode(mode)).unwrap();
        };
        for (name, before, after) in [("su", 0o6755, 0o0755), ("sgid-noexec", 0o6745, 0o2745)] {
            make(name, before);
            nofsetid(&format!("printf x >> {}", m.path(name).display()));
            assert_eq!(mode(name), after, "{extra}: {name} after a write without CAP_FSETID");
            assert_eq!(fs::metadata(s.p(&format!("upper/{name}"))).unwrap().mode() & 0o7777, after);
            assert_eq!(fs::read_to_string(m.path(name)).unwrap(), "12345x");
        }
        make("root-writes", 0o6755);
        OpenOptions::new().append(true).open(m.path("root-writes")).unwrap().write_all(b"y").unwrap();
        assert_eq!(mode("root-writes"), 0o6755, "{extra}: root (CAP_FSETID) keeps the bits");
        make("truncated", 0o6755);
        nofsetid(&format!("truncate -s 2 {}", m.path("truncated").display()));
        assert_eq!(mode("truncated"), 0o0755, "{extra}: truncate without CAP_FSETID");
        assert_eq!(fs::read_to_string(m.path("truncated")).unwrap(), "12");
        make("opened-trunc", 0o6755);
        nofsetid(&format!("printf z > {}", m.path("opened-trunc").display()));
        assert_eq!(mode("opened-trunc"), 0o0755, "{extra}: O_TRUNC open without CAP_FSETID");
        assert_eq!(fs::read_to_string(m.path("opened-trunc")).unwrap(), "z");
        make("chowned", 0o6755);
        std::os::unix::fs::chown(m.path("chowned"), Some(1), Some(1)).unwrap();
        assert_eq!(mode("chowned"), 0o0755, "{extra}: chown");
        assert_eq!(fs::metadata(m.path("chowned")).unwrap().uid(), 1);

        // cap_net_raw+ep, VFS_CAP_REVISION_2: dropped by the next write, also after earlier
        // writes found none (the kernel's SB_NOSEC memory of the inode is cleared by the set).
        let cap: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let capped = m.path("capped");
        let mut c = OpenOptions::new().create(true).append(true).open(&capped).unwrap();
        c.write_all(b"a").unwrap();
        c.write_all(b"b").unwrap();
        xattr::set(&capped, "security.capability", cap).unwrap();
        c.write_all(b"c").unwrap();
        assert_eq!(
            xattr::get(&capped, "security.capability").unwrap(),
            None,
            "{extra}: the write dropped it"
        );
        assert_eq!(xattr::get(s.p("upper/capped"), "security.capability").unwrap(), None, "{extra}");
        drop(c);
        assert_eq!(fs::read_to_string(&capped).unwrap(), "abc");
        m.unmount();
    }
}

/// Replies the daemon serving `m` writes while `work` runs (its `writev`/`write` calls on
/// /dev/fuse, every thread traced), counted by strace; `None` when strace is missing (a
/// failure under CI=true).
fn daemon_replies(m: &Mount, work: impl FnOnce()) -> Option<u64> {
    common::mount::daemon_calls(m, "writev,write", work)
}

/// With passthrough, write(2) reaches the upper file without the daemon, and no longer costs a
/// GETXATTR `security.capability` round trip each (the kernel asked before every write:
/// `FUSE_HANDLE_KILLPRIV_V2` lets it remember a file has none, `SB_NOSEC`): 64 writes to a new
/// file and 64 to a copied-up one are answered by a handful of replies, not 128.
#[test]
fn passthrough_writes_cost_the_daemon_nothing_each() {
    use std::os::unix::fs::FileExt;
    let Some((s, m)) = setup() else { return };
    let block = vec![7u8; 4096];
    let Some(replies) = daemon_replies(&m, || {
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(m.path("new.bin")).unwrap();
        let g = OpenOptions::new().write(true).open(m.path("lower.txt")).unwrap();
        for i in 0..64u64 {
            f.write_all_at(&block, i * 4096).unwrap();
            g.write_all_at(&block, i * 4096).unwrap();
        }
    }) else {
        return;
    };
    assert!(replies < 24, "{replies} replies for 128 writes and 2 opens");
    assert_eq!(fs::metadata(s.p("upper/new.bin")).unwrap().len(), 64 * 4096);
    assert_eq!(fs::read(s.p("upper/lower.txt")).unwrap(), vec![7u8; 64 * 4096]);
}

/// A setuid file opened for writing while a reader holds it through passthrough: the writer's
/// open (written through the daemon, so its writes can clear the bits) coexists with the
/// reader's, a write without CAP_FSETID clears suid and sgid, and the reader sees the data.
#[test]
fn a_setuid_file_written_while_a_reader_holds_it() {
    use std::os::unix::fs::FileExt;
    let Some((s, m)) = setup() else { return };
    fs::write(m.path("su"), "12345").unwrap();
    fs::set_permissions(m.path("su"), fs::Permissions::from_mode(0o6755)).unwrap();
    let reader = File::open(m.path("su")).unwrap();
    let mut buf = [0u8; 5];
    reader.read_exact_at(&mut buf, 0).unwrap();
    let st = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-fsetid", "--inh-caps", "-fsetid", "--", "sh", "-euc"])
        .arg(format!("printf 6789 >> {}", m.path("su").display()))
        .status()
        .unwrap();
    assert!(st.success(), "append without CAP_FSETID");
    let out = std::process::Command::new("stat").args(["-c", "%a"]).arg(m.path("su")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "755", "the write cleared suid and sgid");
    assert_eq!(fs::metadata(s.p("upper/su")).unwrap().mode() & 0o7777, 0o755);
    let mut all = [0u8; 9];
    reader.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(&all, b"123456789", "the reader sees the write");
    // Root (CAP_FSETID) keeps the bits, written through the daemon as well; a reader opening
    // while that writer holds the file is served.
    fs::set_permissions(m.path("su"), fs::Permissions::from_mode(0o4755)).unwrap();
    let mut w = OpenOptions::new().append(true).open(m.path("su")).unwrap();
    w.write_all(b"0").unwrap();
    assert_eq!(fs::read_to_string(m.path("su")).unwrap(), "1234567890");
    w.write_all(b"!").unwrap();
    drop(w);
    assert_eq!(fs::metadata(m.path("su")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::read_to_string(m.path("su")).unwrap(), "1234567890!");
    drop(reader);
}

/// fsync(2) of a directory through the mount makes the upper directory durable (dpkg and apt
/// sync a directory after renaming into it): the daemon syncs its upper copy. It answered
/// FSYNCDIR without syncing anything before.
#[test]
fn fsync_of_a_directory_syncs_its_upper_copy() {
    let Some((s, m)) = setup() else { return };
    let Some(syncs) = common::mount::daemon_calls(&m, "fsync,fdatasync", || {
        // A directory of the lower layers alone: nothing of this mount's to sync, no error.
        File::open(m.path("dir")).unwrap().sync_all().unwrap();
        fs::write(m.path("dir/new"), "n").unwrap();
        fs::rename(m.path("dir/new"), m.path("dir/renamed")).unwrap();
        File::open(m.path("dir")).unwrap().sync_all().unwrap();
        File::open(m.path("dir")).unwrap().sync_data().unwrap();
    }) else {
        return;
    };
    assert_eq!(syncs, 2, "one sync of the upper directory per fsync(2) of it once it has one");
    assert_eq!(fs::read_to_string(s.p("upper/dir/renamed")).unwrap(), "n");
    File::open(m.path("")).unwrap().sync_all().unwrap();
}

/// A chmod or utimes of an upper file is answered without reading the file's origin xattr
/// again (the change moved its ctime, which keys the daemon's memory of it): 60 of them read
/// no xattr (they read one each before).
#[test]
fn setattr_of_an_upper_file_reads_no_xattr() {
    use std::os::unix::fs::PermissionsExt;
    let Some((s, m)) = setup() else { return };
    fs::write(m.path("made"), "m").unwrap();
    let made = m.path("made");
    let Some(reads) = common::mount::daemon_calls(&m, "lgetxattr,getxattr,fgetxattr", || {
        for i in 0..30u32 {
            fs::set_permissions(&made, fs::Permissions::from_mode(0o600 + (i % 2) * 0o44)).unwrap();
            let t = nix::sys::time::TimeSpec::new(i64::from(i), 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &made,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }) else {
        return;
    };
    assert!(reads < 6, "{reads} xattr reads for 60 setattrs");
    let md = fs::metadata(s.p("upper/made")).unwrap();
    assert_eq!((md.mode() & 0o777, md.mtime()), (0o644, 29));
    assert_eq!(fs::metadata(&made).unwrap().ino(), md.ino(), "st_ino of an upper file");
}

/// Entries and attributes of the upper stay in the kernel's cache as long as the lower ones (the
/// upper changes only through the mount): a package manager coming back to the names it made a
/// second later asks the daemon nothing (with the upper's old one-second TTL every name cost a
/// LOOKUP and a GETATTR again), and what changes through the mount is still seen at once.
#[test]
fn upper_names_stay_cached_past_a_second() {
    use std::os::unix::fs::PermissionsExt;
    let Some((s, m)) = setup() else { return };
    fs::create_dir(m.path("newdir")).unwrap();
    fs::write(m.path("newdir/made"), "made").unwrap();
    fs::set_permissions(m.path("lower.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.path("dir/a"), "changed").unwrap();
    let names = ["newdir", "newdir/made", "lower.txt", "dir", "dir/a", "newdir/missing"];
    // Every parent's attributes read once more (each change invalidated them).
    for n in names {
        let _ = fs::symlink_metadata(m.path(n));
    }
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let Some(replies) = daemon_replies(&m, || {
        for n in names {
            let _ = fs::symlink_metadata(m.path(n));
        }
    }) else {
        return;
    };
    assert_eq!(replies, 0, "a second later the names and attributes were asked for again");
    // Changes through the mount are seen at once.
    fs::set_permissions(m.path("lower.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(m.path("lower.txt")).unwrap().permissions().mode() & 0o777, 0o640);
    fs::write(m.path("newdir/missing"), "now").unwrap();
    assert_eq!(fs::read_to_string(m.path("newdir/missing")).unwrap(), "now");
    fs::rename(m.path("newdir/made"), m.path("dir/moved")).unwrap();
    assert!(fs::symlink_metadata(m.path("newdir/made")).is_err());
    assert_eq!(fs::read_to_string(m.path("dir/moved")).unwrap(), "made");
    fs::write(m.path("dir/a"), "longer content").unwrap();
    assert_eq!(fs::metadata(m.path("dir/a")).unwrap().len(), 14);
    assert_eq!(fs::read_to_string(s.p("upper/dir/moved")).unwrap(), "made");
}
