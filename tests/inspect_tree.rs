//! `strata ls -R -l`, `strata export` and `strata cat` on the umoci fixture (three layers:
//! whiteouts, an opaque directory, hard links, symlinks, devices, xattrs, long and non-ASCII
//! names) against `umoci unpack` of the same image and a `strata mount` of it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::image_mount::mount_image;
use common::images::{fixture, run, umoci_unpack};
use common::mount::is_mounted;
use common::strata::Strata;
use common::tree::{self, assert_same_maps};

/// What `ls -l` shows of an entry; sizes, link counts and mtimes only for non-directories
/// (a directory's are the layer filesystem's business).
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: Option<u64>,
    nlink: Option<u64>,
    mtime: Option<i64>,
    rdev: Option<(u64, u64)>,
    target: Option<String>,
}

fn loaded() -> (Strata, String) {
    let s = Strata::new();
    let out = s.ok(&["load", "--oci", &fixture().image()]);
    // A bare-tag layout is named DIR:TAG (umoci's convention).
    assert_eq!(out, "Loaded image: oci:t1\n");
    let id = s.ok(&["images", "-q", "--no-trunc", "oci:t1"]).trim().to_string();
    (s, id)
}

/// `strata ls -R -l --format json /` as path (no leading `/`) → facts.
fn ls_tree(s: &Strata, image: &str) -> BTreeMap<String, Facts> {
    let out = s.ok(&["ls", "-R", "-l", "--format", "json", image, "/"]);
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        let kind = v["type"].as_str().unwrap().to_string();
        let dir = kind == "dir";
        let path = v["path"].as_str().unwrap().trim_start_matches('/').to_string();
        let num = |k: &str| v[k].as_u64().unwrap();
        let facts = Facts {
            mode: num("mode") as u32,
            uid: num("uid") as u32,
            gid: num("gid") as u32,
            size: (!dir).then(|| num("size")),
            nlink: (!dir).then(|| num("nlink")),
            mtime: (!dir).then(|| v["mtime"].as_i64().unwrap()),
            rdev: v.get("major").map(|m| (m.as_u64().unwrap(), num("minor"))),
            target: v.get("target").map(|t| t.as_str().unwrap().to_string()),
            kind,
        };
        assert!(map.insert(path.clone(), facts).is_none(), "{path} listed twice");
    }
    map
}

/// The same facts from a directory tree on disk (an unpack, an untar, a mount).
fn disk_tree(root: &Path) -> BTreeMap<String, Facts> {
    tree::walk(root)
        .into_iter()
        .filter(|(p, _)| !p.is_empty())
        .map(|(p, e)| {
            let dir = e.kind == "dir";
            let dev = e.kind == "char" || e.kind == "block";
            let facts = Facts {
                kind: e.kind.to_string(),
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: (!dir).then_some(if e.kind == "symlink" {
                    e.link.as_ref().unwrap().len() as u64
                } else {
                    e.size
                }),
                nlink: (!dir).then_some(e.nlink),
                mtime: e.mtime,
                rdev: dev.then(|| (nix::sys::stat::major(e.rdev), nix::sys::stat::minor(e.rdev))),
                target: e.link.clone(),
            };
            (p, facts)
        })
        .collect()
}

#[test]
fn ls_recursive_long_equals_umoci_unpack_and_the_mount() {
    let (s, id) = loaded();
    let listed = ls_tree(&s, &id);
    // The merged view: whiteouts applied, the opaque directory holds only the top layer's file.
    assert!(!listed.contains_key("del.txt") && !listed.contains_key("gone"));
    assert!(listed.contains_key("opq/fresh") && !listed.contains_key("opq/old"));
    assert!(!listed.keys().any(|k| k.contains(".wh.")));
    assert_eq!(listed["etc/hello"].nlink, Some(2));
    assert_eq!(listed["bin/busybox"].mode, 0o4755);
    assert_eq!(listed["etc/null"].rdev, Some((1, 3)));
    assert_same_maps("ls against umoci unpack", &disk_tree(&fixture().rootfs), &listed);

    let mountpoint = {
        let Some(m) = mount_image(&s, &id, "mnt") else { return };
        assert_same_maps("ls against the strata mount", &disk_tree(&m.dir), &listed);
        m.dir.clone()
    };
    assert!(!is_mounted(&mountpoint), "the guard must unmount");
}

#[test]
fn export_untarred_equals_umoci_unpack() {
    let (s, id) = loaded();
    let tar = s.path("export.tar");
    s.ok(&["export", &id, "-o", tar.to_str().unwrap()]);
    // Unpacked by a peer: the export as the only layer of a fresh image, through umoci.
    let layout = s.path("layout");
    let l = format!("{}:x", layout.display());
    run("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    run("umoci", &["new", "--image", &l]);
    run("umoci", &["raw", "add-layer", "--image", &l, tar.to_str().unwrap()]);
    let dir = umoci_unpack(&l, &s.path("work"), "bundle");
    let mut want = tree::walk(&fixture().rootfs);
    let mut got = tree::walk(&dir);
    want.remove("");
    got.remove("");
    // umoci's unpack never clears xattrs of a directory a lower layer made, so a directory whose
    // top layer entry lacks one keeps it there; the union (like overlayfs, and the mount) shows the
    // top entry's. Directory xattrs of the export must be a subset of umoci's, then are set aside.
    for (k, g) in got.iter_mut() {
        if let Some(w) = want.get_mut(k).filter(|w| w.kind == "dir" && g.kind == "dir") {
            for (name, value) in &g.xattrs {
                assert_eq!(w.xattrs.get(name), Some(value), "{k}: xattr {name} not in umoci's unpack");
            }
            w.xattrs.clear();
            g.xattrs.clear();
        }
    }
    let mut diffs = Vec::new();
    for (k, v) in &want {
        match got.get(k) {
            None => diffs.push(format!("missing {k:?}")),
            Some(g) if g != v => diffs.push(format!("{k:?}\n  want {v:?}\n  got  {g:?}")),
            _ => {}
        }
    }
    diffs.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("unexpected {k:?}")));
    assert!(diffs.is_empty(), "export differs from umoci unpack:\n{}", diffs.join("\n"));

    // Through the mount everything matches, directory xattrs included (same union rules).
    if let Some(m) = mount_image(&s, &id, "mnt") {
        let mut seen = tree::walk(&m.dir);
        seen.remove("");
        let mut got = tree::walk(&dir);
        got.remove("");
        assert!(seen == got, "export differs from the mount:\nmount {seen:#?}\nexport {got:#?}");
    }
    // Hard links stay links, whiteouts never appear, and the tar is the same every time.
    let listing = run("tar", &["-tvf", tar.to_str().unwrap()]);
    assert!(listing.contains("etc/hello-hard link to etc/hello"), "{listing}");
    assert!(!listing.contains(".wh."), "{listing}");
    let again = s.path("again.tar");
    s.ok(&["export", &id, "-o", again.to_str().unwrap()]);
    assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap(), "export is deterministic");
    // Piped stdout works too.
    let out = s.run(&["export", &id]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&tar).unwrap());
}

#[test]
fn cat_reads_through_the_merged_view() {
    let (s, id) = loaded();
    assert_eq!(s.ok(&["cat", &id, "/etc/hello"]), "hello\n");
    // A relative symlink, a changed file, a file of the opaque directory's top layer.
    assert_eq!(
        s.ok(&["cat", &id, "bin/hello-link", "/etc/changed", "/opq/fresh"]),
        "hello\nchanged\nfresh\n"
    );
    let err = s.fails(&["cat", &id, "/del.txt"]);
    assert!(err.contains("/del.txt") && err.contains("no such file"), "{err}");
    assert!(s.fails(&["cat", &id, "/opq/old"]).contains("no such file"));
    assert!(s.fails(&["cat", &id, "/etc"]).contains("is a directory"));
    assert!(s.fails(&["cat", &id, "/etc/fifo"]).contains("not a regular file"));
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["cat", "--format", "json", &id, "/bin/hello-link"])).unwrap();
    assert_eq!(v["resolved"], "/etc/hello");
    assert_eq!(v["content"], "hello\n");
    assert_eq!(v["size"], 6);
}

#[test]
fn ls_shows_layers_and_long_format() {
    let (s, id) = loaded();
    let out = s.ok(&["ls", "--layer", &id, "/opq"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("2:") && lines[0].ends_with(" fresh"), "{out}");
    let out = s.ok(&["ls", "-l", &id, "/etc"]);
    let hello = out.lines().find(|l| l.ends_with(" hello")).expect(&out);
    assert!(hello.starts_with("-rw-r--r-- 2 1000 1000 "), "{hello}");
    let null = out.lines().find(|l| l.ends_with(" null")).expect(&out);
    assert!(null.starts_with("crw-r--r-- 1 0    0    1, 3 "), "{null}");
    let link = s.ok(&["ls", "-l", &id, "/bin/hello-link"]);
    assert!(link.trim_end().ends_with("/bin/hello-link -> ../etc/hello"), "{link}");
    assert!(s.fails(&["ls", &id, "/nope"]).contains("no such file"));
}

#[test]
fn analyze_sees_the_fixture_whiteouts_and_opaque_directory() {
    let (s, id) = loaded();
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["analyze", "--json", &id])).unwrap();
    let c = |i: usize, k: &str| {
        let x = &v["layers"][i][k];
        (x["files"].as_u64().unwrap(), x["bytes"].as_u64().unwrap())
    };
    // Layer 1: del.txt (4 bytes) and gone/sub/f (empty) deleted, bin/random rewritten by chmod,
    // etc/changed and new.txt added.
    assert_eq!(c(1, "removed"), (2, 4));
    assert_eq!(c(1, "modified"), (1, 200_000));
    assert_eq!(c(1, "added"), (2, 12));
    // Layer 2: the opaque opq/ hides opq/keep/a and opq/old (both empty) and adds opq/fresh.
    assert_eq!(c(2, "removed"), (2, 0));
    assert_eq!(c(2, "added"), (1, 6));
    assert_eq!(v["wasted_bytes"], 200_004);
    let paths: Vec<&str> =
        v["wasted_paths"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/bin/random", "/del.txt", "/gone/sub/f", "/opq/keep/a", "/opq/old"]);
}
