//! The union API without FUSE (what `strata ls/cat/export/analyze` build on).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use strata::union::Stack;

fn w(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn names(st: &Stack, path: &str) -> Vec<String> {
    let e = st.lookup(Path::new(path)).unwrap().unwrap();
    let mut v: Vec<String> =
        st.list(&e).unwrap().entries.iter().map(|e| e.name.to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn merged_view_and_origins() {
    let t = tempfile::tempdir().unwrap();
    let (l1, l2, l3) = (t.path().join("l1"), t.path().join("l2"), t.path().join("l3"));
    w(&l3, "etc/passwd", "root:x:0:0");
    w(&l3, "etc/group", "root:x:0:");
    w(&l3, "var/cache/a", "a");
    w(&l3, "var/cache/b", "b");
    w(&l2, "etc/.wh.group", "");
    w(&l2, "etc/hosts", "127.0.0.1");
    w(&l2, "var/cache/.wh..wh..opq", "");
    w(&l2, "var/cache/c", "c");
    w(&l1, "etc/passwd", "root:x:0:0\nme:x:1000:1000");
    w(&l1, ".wh.var", "");
    w(&l1, "var/new", "n");
    let st = Stack::new(&[l1, l2, l3], None).unwrap();
    assert_eq!(names(&st, ""), ["etc", "var"]);
    assert_eq!(names(&st, "etc"), ["hosts", "passwd"]);
    assert_eq!(names(&st, "var"), ["new"], "a whiteout + dir in one layer: lower dir hidden");
    let e = st.lookup(Path::new("etc/passwd")).unwrap().unwrap();
    assert_eq!(e.layer, 0, "top layer wins");
    let hosts = st.lookup(Path::new("/etc/hosts")).unwrap().unwrap();
    assert_eq!(hosts.layer, 1);
    let etc = st.lookup(Path::new("etc")).unwrap().unwrap();
    assert_eq!(etc.layers, vec![0, 1, 2], "merged from three layers");
    assert!(st.lookup(Path::new("etc/group")).unwrap().is_none());
    assert!(st.lookup(Path::new("etc/.wh.group")).unwrap().is_none());
    assert!(st.lookup(Path::new("var/cache")).unwrap().is_none());
    let mut s = String::new();
    st.open_file(&e).unwrap().read_to_string(&mut s).unwrap();
    assert!(s.contains("me:x"));
}

#[test]
fn symlinks_never_leave_the_root() {
    let t = tempfile::tempdir().unwrap();
    let l1 = t.path().join("l1");
    w(&l1, "etc/passwd", "image passwd");
    std::os::unix::fs::symlink("/etc/passwd", l1.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", l1.join("etc/rel")).unwrap();
    std::os::unix::fs::symlink("/", l1.join("rootlink")).unwrap();
    std::os::unix::fs::symlink("loop", l1.join("loop")).unwrap();
    let st = Stack::new(&[l1], None).unwrap();
    for p in ["abs", "etc/rel", "rootlink/etc/passwd"] {
        let e = st.resolve(Path::new(p), true).unwrap().unwrap_or_else(|| panic!("{p}"));
        let mut s = String::new();
        st.open_file(&e).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "image passwd", "{p}");
    }
    // lookup never follows: a path through a symlink is not there
    assert!(st.lookup(Path::new("rootlink/etc/passwd")).unwrap().is_none());
    assert_eq!(st.resolve(Path::new("loop"), true).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    assert!(st.lookup(Path::new("../etc")).is_err());
    assert_eq!(strata::union::resolve::relative(Path::new("/../etc/x")), PathBuf::from("etc/x"));
}
