//! Names at the NAME_MAX edge (issue 12, item 2): 252–255-byte names work for every syscall,
//! in the upper and in a lower layer (their whiteouts are overlayfs char 0/0 devices, since
//! `.wh.` + name is over NAME_MAX); a 256-byte name answers ENAMETOOLONG, never ENOENT; and such
//! whiteouts survive commit (a `.wh.` tar entry with a PAX long name), save and load.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::mount::*;
use common::strata::{Strata, tar_dir};

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;
use tar_fixtures::RawTar;

fn name(c: char, n: usize) -> String {
    c.to_string().repeat(n)
}

/// The errno of a syscall's result (0 on success).
fn code<T>(r: nix::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

fn io_code<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Every syscall that takes a name, on `name` in `dir`, each expected to give `want` (0: works).
/// `file` and `sub` are an existing file and an existing directory of `dir` to link/rename from.
fn each_syscall(dir: &Path, name: &str, want: i32, file: &Path, sub: &Path) {
    use nix::fcntl::{AtFlags, OFlag, open, readlink, renameat};
    use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, lstat, mknod, utimensat};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{Gid, Uid, fchownat, linkat, mkdir, symlinkat, truncate, unlink, unlinkat};
    let p = dir.join(name);
    let p = p.as_path();
    let cwd = nix::fcntl::AT_FDCWD;
    let away = dir.join("away");
    let mut got: Vec<(&str, i32)> = Vec::new();
    let mode = Mode::from_bits_truncate(0o644);
    match open(p, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_EXCL, mode) {
        Ok(fd) => {
            got.push(("open(O_CREAT)", 0));
            got.push(("write", code(nix::unistd::write(&fd, b"data"))));
        }
        Err(e) => got.push(("open(O_CREAT)", e as i32)),
    }
    got.push(("open", code(open(p, OFlag::O_RDONLY, Mode::empty()))));
    got.push(("lstat", code(lstat(p))));
    got.push(("truncate", code(truncate(p, 2))));
    got.push((
        "chmod",
        code(fchmodat(cwd, p, Mode::from_bits_truncate(0o600), FchmodatFlags::FollowSymlink)),
    ));
    let (uid, gid) = (Some(Uid::from_raw(7)), Some(Gid::from_raw(8)));
    got.push(("chown", code(fchownat(cwd, p, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW))));
    got.push(("setxattr", io_code(xattr::set(p, "user.k", b"v"))));
    got.push(("getxattr", io_code(xattr::get(p, "user.k"))));
    got.push(("removexattr", io_code(xattr::remove(p, "user.k"))));
    let t = TimeSpec::new(5, 0);
    got.push(("utimensat", code(utimensat(cwd, p, &t, &t, UtimensatFlags::NoFollowSymlink))));
    got.push(("rename(from)", code(renameat(cwd, p, cwd, &away))));
    if want != 0 {
        fs::write(&away, "").unwrap(); // rename(from) failed: something to rename
    }
    got.push(("rename(to)", code(renameat(cwd, &away, cwd, p))));
    got.push(("unlink", code(unlink(p))));
    let _ = unlink(&away);
    got.push(("mkdir", code(mkdir(p, Mode::from_bits_truncate(0o755)))));
    got.push(("rmdir", code(unlinkat(cwd, p, nix::unistd::UnlinkatFlags::RemoveDir))));
    got.push(("mknod(fifo)", code(mknod(p, SFlag::S_IFIFO, mode, 0))));
    let _ = unlink(p);
    got.push(("symlink", code(symlinkat("target", cwd, p))));
    got.push(("readlink", code(readlink(p))));
    let _ = unlink(p);
    got.push(("link", code(linkat(cwd, file, cwd, p, AtFlags::empty()))));
    let _ = unlink(p);
    got.push(("rename(dir to)", code(renameat(cwd, sub, cwd, p))));
    if want == 0 {
        renameat(cwd, p, cwd, sub).unwrap();
    }
    let wrong: Vec<String> = got
        .iter()
        .filter(|(_, e)| *e != want)
        .map(|(op, e)| format!("{op}: {}", std::io::Error::from_raw_os_error(*e)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}-byte name in {}: want {}, got:\n{}",
        name.len(),
        dir.display(),
        if want == 0 { "success".to_string() } else { std::io::Error::from_raw_os_error(want).to_string() },
        wrong.join("\n")
    );
    // Nothing left behind.
    assert!(fs::symlink_metadata(p).is_err(), "{} left behind", p.display());
}

/// Lower layer: long names in a directory that exists only below (so every change copies up).
fn lower_tree(s: &Scratch) {
    s.write("l1/low/keep", "keep");
    s.write("l1/low/sub/x", "x");
    for n in [252, 255] {
        s.write(&format!("l1/low/{}", name('f', n)), "lower file");
        s.write(&format!("l1/low/{}/inner", name('d', n)), "inner");
    }
}

#[test]
fn names_of_252_to_255_bytes_work_and_256_is_too_long() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    lower_tree(&s);
    let m = s.mount_rw(1);
    let low = m.path("low");
    fs::create_dir(m.path("up")).unwrap();
    fs::write(m.path("up/file"), "f").unwrap();
    fs::create_dir(m.path("up/sub")).unwrap();
    for dir in [m.path("up"), low.clone()] {
        let file = dir.join(if dir == low { "keep" } else { "file" });
        let sub = dir.join("sub");
        for n in [252, 253, 254, 255] {
            each_syscall(&dir, &name('n', n), 0, &file, &sub);
        }
        each_syscall(&dir, &name('n', 256), libc::ENAMETOOLONG, &file, &sub);
        each_syscall(&dir, &name('n', 300), libc::ENAMETOOLONG, &file, &sub);
    }
    // Lower entries with such names: deleted, recreated, renamed.
    for n in [252, 255] {
        let f = low.join(name('f', n));
        let d = low.join(name('d', n));
        assert_eq!(fs::read_to_string(&f).unwrap(), "lower file");
        fs::remove_file(&f).unwrap();
        assert_eq!(fs::symlink_metadata(&f).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        let wh = fs::symlink_metadata(s.p("upper/low").join(name('f', n))).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "the whiteout is a 0/0 device");
        fs::write(&f, "again").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "again");
        fs::remove_file(&f).unwrap();
        fs::remove_file(d.join("inner")).unwrap();
        fs::remove_dir(&d).unwrap();
        assert!(fs::symlink_metadata(&d).is_err());
        fs::create_dir(&d).unwrap();
        assert_eq!(names(&d), Vec::<String>::new(), "a recreated directory is opaque");
        fs::rename(&d, low.join("short")).unwrap();
        fs::rename(low.join("short"), &d).unwrap();
    }
    let listed = names(&low);
    assert_eq!(listed, [name('d', 252), name('d', 255), "keep".into(), "sub".into()]);
    let mut m = m;
    m.unmount();
    let m = s.mount_rw(1);
    assert_eq!(names(&m.path("low")), listed, "the same after a remount");
}

/// Undoes `chattr +i` on a path, also when the test panics (the scratch tree can't be removed
/// otherwise).
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A directory renamed onto a deleted lower name of 255 bytes (whose whiteout is a 0/0 device
/// at the name itself) never lets the lower name show: the directory and the whiteout swap
/// places in one step. Before, the whiteout was removed first, so a rename failing (or a crash)
/// right after brought the deleted file back; a rename of an immutable directory fails there.
#[test]
fn a_directory_renamed_onto_a_long_whiteout_never_uncovers_the_lower_name() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let long = name('w', 255);
    s.write(&format!("l1/p/{long}"), "deleted lower file");
    s.write("l1/p/keep", "k");
    let m = s.mount_rw(1);
    let p = m.path("p");
    fs::remove_file(p.join(&long)).unwrap();
    assert!(is_whiteout_device(&s.p("upper/p").join(&long)), "the whiteout is a 0/0 device at the name");
    fs::create_dir(p.join("src")).unwrap();
    fs::write(p.join("src/inside"), "i").unwrap();
    let up_src = s.p("upper/p/src");
    let chattr = std::process::Command::new("chattr").arg("+i").arg(&up_src).output().expect("run chattr");
    if !chattr.status.success() {
        missing(&format!("chattr +i on the upper's filesystem: {}", String::from_utf8_lossy(&chattr.stderr)));
        return;
    }
    let guard = Immutable(up_src);
    let r = fs::rename(p.join("src"), p.join(&long));
    assert_eq!(
        r.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EPERM)),
        "rename of an immutable dir"
    );
    assert_eq!(
        fs::symlink_metadata(p.join(&long)).map_err(|e| e.raw_os_error()).map(|_| ()),
        Err(Some(libc::ENOENT)),
        "the deleted lower file shows again after a failed rename onto its whiteout"
    );
    assert_eq!(names(&p), ["keep", "src"]);
    drop(guard);
    // Now it moves, and the old name leaves nothing behind (nothing below it to hide).
    fs::rename(p.join("src"), p.join(&long)).unwrap();
    assert_eq!(names(&p), vec!["keep".to_string(), long.clone()]);
    assert_eq!(names(&p.join(&long)), ["inside"]);
    assert_eq!(names(&s.p("upper/p")), vec![long.clone()]);
    let mut m = m;
    m.unmount();
    let m = s.mount_rw(1);
    assert_eq!(names(&m.path("p")), vec!["keep".to_string(), long.clone()], "the same after a remount");
    assert_eq!(fs::read_to_string(m.path("p").join(&long).join("inside")).unwrap(), "i");
}

/// A rootfs with long names, imported as an image.
fn import_long_names(s: &Strata) {
    let rootfs = s.path("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc").join(name('a', 255)), "a").unwrap();
    fs::write(rootfs.join("etc").join(name('b', 252)), "b").unwrap();
    fs::create_dir(rootfs.join("etc").join(name('c', 255))).unwrap();
    fs::write(rootfs.join("etc").join(name('c', 255)).join("x"), "x").unwrap();
    fs::write(rootfs.join("etc/short"), "s").unwrap();
    let tar = s.path("rootfs.tar");
    tar_dir(&rootfs, &tar, "plain");
    s.ok(&["import", tar.to_str().unwrap(), "long:1"]);
}

fn is_whiteout_device(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// The unpacked layer dirs of a store.
fn layer_dirs(s: &Strata) -> Vec<PathBuf> {
    fs::read_dir(s.root().join("layers")).unwrap().map(|e| e.unwrap().path().join("fs")).collect()
}

/// The tar members of every layer of a docker-archive.
fn archive_members(archive: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut outer = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path_bytes().into_owned();
        if !p.ends_with(b".tar") && !p.starts_with(b"blobs/") {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if data.len() < 512 || &data[257..262] != b"ustar" {
            continue; // a config or manifest blob
        }
        let mut inner = tar::Archive::new(&data[..]);
        for m in inner.entries().unwrap() {
            out.push(m.unwrap().path_bytes().into_owned());
        }
    }
    out
}

#[test]
fn long_name_whiteouts_commit_save_and_load() {
    if !fuse_ready() {
        return;
    }
    let s = Strata::new();
    import_long_names(&s);
    s.ok(&["create", "--name", "c", "long:1"]);
    let mnt = s.path("mnt");
    fs::create_dir(&mnt).unwrap();
    s.ok(&["mount", "c", mnt.to_str().unwrap()]);
    let mut guard = Mount::adopt(&mnt);
    let etc = mnt.join("etc");
    fs::remove_file(etc.join(name('a', 255))).unwrap();
    fs::remove_file(etc.join(name('b', 252))).unwrap();
    fs::remove_dir_all(etc.join(name('c', 255))).unwrap();
    fs::write(etc.join(name('n', 255)), "new").unwrap();
    assert_eq!(names(&etc), [name('n', 255), "short".into()]);
    s.ok(&["umount", "c"]);
    guard.forget();
    let diff = s.ok(&["diff", "c"]);
    for want in [format!("D /etc/{}", name('a', 255)), format!("D /etc/{}", name('c', 255))] {
        assert!(diff.lines().any(|l| l == want), "diff lacks {want}:\n{diff}");
    }
    s.ok(&["commit", "c", "long:2"]);
    let archive = s.path("long.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "long:2"]);
    let members = archive_members(&archive);
    for hidden in [name('a', 255), name('b', 252), name('c', 255)] {
        let want = format!("etc/.wh.{hidden}");
        assert!(
            members.iter().any(|m| m.strip_prefix(b"./").unwrap_or(m) == want.as_bytes()),
            "the committed layer has no {want} entry"
        );
    }
    // Loaded into a fresh store: every layer is unpacked again, the long whiteouts as 0/0
    // devices, and the image shows what the container showed.
    let t = Strata::new();
    t.ok(&["load", "-i", archive.to_str().unwrap()]);
    let devices: Vec<PathBuf> = layer_dirs(&t)
        .into_iter()
        .flat_map(|l| [l.join("etc").join(name('a', 255)), l.join("etc").join(name('c', 255))])
        .filter(|p| is_whiteout_device(p))
        .collect();
    assert_eq!(devices.len(), 2, "both long whiteouts unpacked as 0/0 devices");
    let Some(view) = common::image_mount::mount_image(&t, "long:2", "view") else { return };
    assert_eq!(names(&view.dir.join("etc")), [name('n', 255), "short".into()]);
    assert_eq!(fs::read_to_string(view.dir.join("etc").join(name('n', 255))).unwrap(), "new");
    drop(view);
    // And a container of the loaded image commits the same layer again.
    t.ok(&["create", "--name", "again", "long:2"]);
    t.ok(&["commit", "again", "long:3"]);
}

#[test]
fn import_takes_a_long_whiteout_entry_as_a_device() {
    // A `.wh.` entry for a 255-byte name (a PAX path: 259 bytes, over NAME_MAX on disk).
    let s = Strata::new();
    let wh = format!("etc/.wh.{}", name('w', 255));
    let tar = RawTar::new()
        .dir("etc/")
        .file("etc/keep", b"k")
        .pax(&[("path", wh.as_bytes())])
        .file("etc/placeholder", b"")
        .end();
    let p = s.path("layer.tar");
    fs::write(&p, tar).unwrap();
    s.ok(&["import", p.to_str().unwrap(), "wh:1"]);
    let devices: Vec<PathBuf> = layer_dirs(&s)
        .into_iter()
        .map(|l| l.join("etc").join(name('w', 255)))
        .filter(|p| is_whiteout_device(p))
        .collect();
    assert_eq!(devices.len(), 1, "the long whiteout is unpacked as a 0/0 device");
}
