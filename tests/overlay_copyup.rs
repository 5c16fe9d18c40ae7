//! Copy-up: content, mode, owner, times, xattrs preserved; parents first; st_ino stable across
//! copy-up and remount; hard links stay one file (fuse-overlayfs issues 108 and 192).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::mount::*;

#[test]
fn copy_up_preserves_metadata() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/a/b/c/file", "content");
    let f = s.p("l1/a/b/c/file");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::chown(&f, Some(1001), Some(1002)).unwrap();
    std::os::unix::fs::chown(s.p("l1/a/b"), Some(7), Some(8)).unwrap();
    sh(&format!("setfattr -n user.k -v v {}", f.display()));
    sh(&format!("touch -d @1500000000 {} {}", f.display(), s.p("l1/a/b").display()));
    let m = s.mount_rw(1);
    let p = m.path("a/b/c/file");
    let before = fs::metadata(&p).unwrap();
    let mut w = OpenOptions::new().append(true).open(&p).unwrap();
    w.write_all(b"!").unwrap();
    drop(w);
    let up = s.p("upper/a/b/c/file");
    let md = fs::metadata(&up).unwrap();
    assert_eq!(fs::read_to_string(&up).unwrap(), "content!");
    assert_eq!((md.uid(), md.gid()), (1001, 1002));
    assert_eq!(md.mode() & 0o7777, 0o4751 & md.mode() & 0o7777);
    assert!(md.mode() & 0o777 == 0o751);
    assert!(sh(&format!("getfattr -d {}", up.display())).contains("user.k"));
    // parents copied first, with their metadata
    let pb = fs::metadata(s.p("upper/a/b")).unwrap();
    assert_eq!((pb.uid(), pb.gid(), pb.mtime()), (7, 8, 1_500_000_000));
    // st_ino survives copy-up, and a remount
    let after = fs::metadata(&p).unwrap();
    assert_eq!(before.ino(), after.ino());
    let dir_ino = fs::metadata(m.path("a/b")).unwrap().ino();
    drop(m);
    let m = s.mount_rw(1);
    assert_eq!(fs::metadata(m.path("a/b/c/file")).unwrap().ino(), before.ino());
    assert_eq!(fs::metadata(m.path("a/b")).unwrap().ino(), dir_ino);
    // a file created in the mount keeps its st_ino across remounts too
    fs::write(m.path("new"), "n").unwrap();
    let ino = fs::metadata(m.path("new")).unwrap().ino();
    drop(m);
    let m = s.mount_rw(1);
    assert_eq!(fs::metadata(m.path("new")).unwrap().ino(), ino);
}

#[test]
fn hard_links_stay_one_file() {
    let Some(s) = Scratch::for_fuse(2) else { return };
    s.write("l2/x/one", "shared");
    fs::create_dir_all(s.p("l2/y")).unwrap();
    fs::hard_link(s.p("l2/x/one"), s.p("l2/y/two")).unwrap();
    fs::hard_link(s.p("l2/x/one"), s.p("l2/three")).unwrap();
    s.write("l1/unrelated", "u");
    let m = s.mount_rw(2);
    let names = [m.path("x/one"), m.path("y/two"), m.path("three")];
    let inos: Vec<u64> = names.iter().map(|p| fs::metadata(p).unwrap().ino()).collect();
    assert!(inos.iter().all(|i| *i == inos[0]), "hard links share st_ino before copy-up: {inos:?}");
    assert!(names.iter().all(|p| fs::metadata(p).unwrap().nlink() == 3));
    // write through one name (issue 108): every name sees it
    let mut f = OpenOptions::new().append(true).open(&names[1]).unwrap();
    f.write_all(b"+more").unwrap();
    drop(f);
    for p in &names {
        assert_eq!(fs::read_to_string(p).unwrap(), "shared+more", "{}", p.display());
        assert_eq!(fs::metadata(p).unwrap().ino(), inos[0]);
        assert_eq!(fs::metadata(p).unwrap().nlink(), 3);
    }
    // chmod through another name (issue 192)
    fs::set_permissions(&names[2], fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&names[0]).unwrap().mode() & 0o777, 0o600);
    // in the upper they are one inode
    let a = fs::metadata(s.p("upper/x/one")).unwrap();
    let b = fs::metadata(s.p("upper/y/two")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(fs::read_to_string(s.p("l2/x/one")).unwrap(), "shared", "lower untouched");
    drop(m);
    let m = s.mount_rw(2);
    assert_eq!(fs::metadata(m.path("three")).unwrap().ino(), inos[0]);
}

#[test]
fn interrupted_copy_up_leftovers_are_cleaned() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    s.write("work/strata-1-1", "half a copy");
    fs::create_dir_all(s.p("work/strata-1-2/sub")).unwrap();
    let m = s.mount_rw(1);
    assert!(names(&s.p("work")).iter().all(|n| !n.starts_with("strata-")), "{:?}", names(&s.p("work")));
    fs::write(m.path("f"), "g").unwrap();
    assert!(names(&s.p("work")).is_empty(), "copy-up leaves nothing behind");
}

/// A file open for reading opens for writing too, with and without passthrough. The kernel
/// serves all the opens of a node through one passthrough backing and refuses (EIO) any other:
/// a reader's backing was the lower copy of a file the writer copies up, or a read-only fd of an
/// upper file. The reader of an upper file sees what the writer wrote; the reader of a lower
/// file may keep the copy it opened (as overlayfs before Linux 4.19).
#[test]
fn a_file_open_for_reading_opens_for_writing() {
    use std::io::{Read, Seek};
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/lower", "lower\n");
    for extra in ["passthrough", "nopassthrough"] {
        fs::remove_dir_all(s.p("upper")).unwrap();
        fs::create_dir(s.p("upper")).unwrap();
        let opts = if extra == "passthrough" { s.rw_opts(1) } else { format!("{},{extra}", s.rw_opts(1)) };
        let mut m = Mount::overlay(&opts, &s.p("mnt"));
        fs::write(m.path("upper"), "upper\n").unwrap();
        for name in ["lower", "upper"] {
            let p = m.path(name);
            let mut r = fs::File::open(&p).unwrap();
            let mut got = String::new();
            r.read_to_string(&mut got).unwrap();
            assert_eq!(got, format!("{name}\n"));
            for round in 0..2 {
                let mut w = OpenOptions::new().append(true).open(&p).unwrap_or_else(|e| {
                    panic!("{extra}: {name} open for reading: opening it to write ({round}): {e}")
                });
                w.write_all(b"more\n").unwrap();
            }
            let want = format!("{name}\nmore\nmore\n");
            assert_eq!(fs::read_to_string(&p).unwrap(), want, "{extra}: {name} through a new open");
            assert_eq!(
                fs::read_to_string(s.p(&format!("upper/{name}"))).unwrap(),
                want,
                "{extra}: {name} in the layer"
            );
            r.rewind().unwrap();
            got.clear();
            r.read_to_string(&mut got).unwrap();
            // A lower file's reader reads the lower copy through the daemon or its backing; what
            // the kernel's page cache holds of the inode may show it the new data.
            let old = format!("{name}\n");
            assert!(
                got == want || (name == "lower" && got == old),
                "{extra}: {name}: the reader opened before the writes read {got:?}"
            );
            drop(r);
            let mut w = OpenOptions::new().append(true).open(&p).unwrap();
            w.write_all(b"last\n").unwrap();
            assert_eq!(
                fs::read_to_string(&p).unwrap(),
                format!("{want}last\n"),
                "{extra}: {name} after the reader closed"
            );
        }
        m.unmount();
    }
}

/// A directory merged from several layers keeps its merge once copied up: the names of every layer
/// down to an opaque one, none that a whiteout or the opaque marker hides, the same st_ino (the
/// upper entry is built from the lower one's layers, not looked up again).
#[test]
fn copied_up_directory_keeps_its_merge() {
    let Some(s) = Scratch::for_fuse(3) else { return };
    s.write("l1/d/top", "1");
    s.write("l1/d/.wh.hidden", "");
    s.write("l2/d/mid", "2");
    s.write("l2/d/hidden", "x");
    s.write("l2/d/.wh..wh..opq", "");
    s.write("l3/d/below_opaque", "3");
    s.write("l3/d/sub/deep", "4");
    let m = s.mount_rw(3);
    let d = m.path("d");
    let ino = fs::metadata(&d).unwrap().ino();
    assert_eq!(names(&d), ["mid", "top"]);
    // Copies d up (a new name in it), then its listing, lookups and attributes.
    fs::write(d.join("new"), "n").unwrap();
    assert!(s.p("upper/d").is_dir(), "copied up");
    assert_eq!(names(&d), ["mid", "new", "top"]);
    assert_eq!(fs::read_to_string(d.join("mid")).unwrap(), "2");
    assert!(!d.join("hidden").exists() && !d.join("below_opaque").exists() && !d.join("sub").exists());
    assert_eq!(fs::metadata(&d).unwrap().ino(), ino, "st_ino kept");
    // A file of a lower layer of the merge copies up below the copied directory.
    OpenOptions::new().append(true).open(d.join("mid")).unwrap().write_all(b"+").unwrap();
    assert_eq!(fs::read_to_string(s.p("upper/d/mid")).unwrap(), "2+");
    assert_eq!(names(&d), ["mid", "new", "top"]);
}
