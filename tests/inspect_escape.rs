//! Paths and symlinks that try to leave the image: `strata cat` and `ls` read the image's file or
//! fail, never the host's. Plus non-UTF-8 names through ls, cat, export and diff, and a container's
//! writable layer in the merged view.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::strata::{Strata, tar_dir};

const IMAGE_PASSWD: &str = "root:x:0:0:image-passwd:/root:/bin/sh\n";

/// Imports `dir` as an image named `name`; returns the name.
fn import(s: &Strata, dir: &Path, name: &str) -> String {
    let tar = s.path(&format!("{name}.tar"));
    tar_dir(dir, &tar, "none");
    s.ok(&["import", tar.to_str().unwrap(), name]);
    name.to_string()
}

/// A rootfs whose links aim outside: at the host's /etc/passwd, /etc/shadow and a host file that
/// exists at `secret` (an absolute host path the image does not have).
fn evil_rootfs(s: &Strata, secret: &Path) -> std::path::PathBuf {
    let r = s.path("evil");
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("sub/deeper")).unwrap();
    std::fs::write(r.join("etc/passwd"), IMAGE_PASSWD).unwrap();
    symlink("/etc/passwd", r.join("abs")).unwrap();
    symlink("../../../../../../etc/passwd", r.join("rel")).unwrap();
    symlink("../../../etc/shadow", r.join("shadow")).unwrap();
    symlink("/etc/shadow", r.join("abs-shadow")).unwrap();
    symlink(secret, r.join("secret")).unwrap();
    symlink("chain2", r.join("chain1")).unwrap();
    symlink("sub/deeper/chain3", r.join("chain2")).unwrap();
    symlink("../../../../../etc/../etc/passwd", r.join("sub/deeper/chain3")).unwrap();
    symlink("/etc", r.join("dirlink")).unwrap();
    symlink("..", r.join("sub/up")).unwrap();
    symlink("loop2", r.join("loop1")).unwrap();
    symlink("loop1", r.join("loop2")).unwrap();
    r
}

#[test]
fn links_and_dotdot_never_leave_the_image() {
    let s = Strata::new();
    let secret = s.path("host-secret");
    std::fs::write(&secret, "HOST SECRET\n").unwrap();
    let img = import(&s, &evil_rootfs(&s, &secret), "evil:1");
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert_ne!(host_passwd, IMAGE_PASSWD);
    for p in [
        "/etc/passwd",
        "abs",
        "/rel",
        "chain1",
        "dirlink/passwd",
        "/sub/up/sub/up/etc/passwd",
        "../../etc/passwd",
        "/../../../etc/passwd",
        "etc/../../etc/passwd",
        "/sub/deeper/../../../etc/./passwd",
    ] {
        assert_eq!(s.ok(&["cat", &img, p]), IMAGE_PASSWD, "cat {p} must read the image's file");
    }
    for p in ["shadow", "abs-shadow", "/etc/shadow", "secret"] {
        let out = s.run(&["cat", &img, p]);
        assert!(!out.status.success(), "cat {p} must fail: the image has no such file");
        assert!(out.stdout.is_empty(), "cat {p} printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    }
    let err = s.fails(&["cat", &img, "loop1"]);
    assert!(err.to_lowercase().contains("too many levels of symbolic links"), "{err}");
    // ls follows an operand link to a directory inside the image too.
    assert_eq!(s.ok(&["ls", &img, "dirlink"]), "passwd\n");
    assert_eq!(s.ok(&["ls", &img, "/../.."]), s.ok(&["ls", &img]));
    // export stores the links as links; it never follows them.
    let out = s.command(&["export", &img]).output().unwrap();
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let links: Vec<(String, String)> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type() == tar::EntryType::Symlink)
        .map(|e| {
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            (name, String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into_owned())
        })
        .collect();
    assert!(links.contains(&("abs".into(), "/etc/passwd".into())), "{links:?}");
    assert!(links.contains(&("shadow".into(), "../../../etc/shadow".into())), "{links:?}");
    assert_eq!(links.len(), 12, "every link of the image, as a link: {links:?}");
    let long = s.ok(&["ls", "-l", &img, "/secret"]);
    assert!(long.trim_end().ends_with(&format!("/secret -> {}", secret.display())), "{long}");
}

#[test]
fn non_utf8_names_pass_through_as_bytes() {
    let s = Strata::new();
    let r = s.path("names");
    let cafe = OsStr::from_bytes(b"caf\xe9");
    let dir = OsStr::from_bytes(b"d\xff");
    std::fs::create_dir_all(r.join(dir)).unwrap();
    std::fs::write(r.join(cafe), "latin-1\n").unwrap();
    std::fs::write(r.join(dir).join("inner"), "in\n").unwrap();
    let v1 = import(&s, &r, "names:1");
    std::fs::write(r.join(cafe), "changed\n").unwrap();
    let v2 = import(&s, &r, "names:2");

    let out = s.command(&["ls", &v1, "/"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"caf\xe9\nd\xff\n");
    let out = s.command(&["ls", "-R", &v1]).output().unwrap();
    assert_eq!(out.stdout, b"/:\ncaf\xe9\nd\xff\n\n/d\xff:\ninner\n");
    let json = s.ok(&["ls", "--format", "json", &v1]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["name_hex"], "636166e9");
    assert_eq!(first["path_hex"], "2f636166e9");

    let mut cat = s.command(&["cat", &v1]);
    cat.arg(Path::new("/").join(cafe)).arg(Path::new(dir).join("inner"));
    assert_eq!(cat.output().unwrap().stdout, b"latin-1\nin\n");

    let out = s.command(&["export", &v1]).output().unwrap();
    let mut names: Vec<Vec<u8>> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [b"caf\xe9".to_vec(), b"d\xff/".to_vec(), b"d\xff/inner".to_vec()]);

    let out = s.command(&["diff", &v1, &v2]).output().unwrap();
    assert_eq!(out.stdout, b"C /caf\xe9\n");

    // A commit that rewrites the file wastes the old bytes, reported under the raw name.
    let id = s.ok(&["create", &v1]).trim().to_string();
    std::fs::write(s.root().join("containers").join(&id).join("upper").join(cafe), "new!").unwrap();
    s.ok(&["commit", &id, "names:3"]);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["analyze", "--json", "names:3"])).unwrap();
    let w = &v["wasted_paths"][0];
    assert_eq!((w["path_hex"].as_str(), w["bytes"].as_u64()), (Some("2f636166e9"), Some(8)), "{v}");
}

#[test]
fn a_container_shows_its_writable_layer() {
    let s = Strata::new();
    let r = s.path("rootfs");
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/passwd"), IMAGE_PASSWD).unwrap();
    std::fs::write(r.join("gone"), "soon deleted").unwrap();
    let img = import(&s, &r, "base:1");
    let id = s.ok(&["create", "--name", "box", &img]).trim().to_string();
    let upper = s.root().join("containers").join(&id).join("upper");
    std::fs::write(upper.join("new"), "from the upper\n").unwrap();
    std::fs::write(upper.join(".wh.gone"), "").unwrap();
    let out = s.ok(&["ls", "--layer", "box"]);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0][0].starts_with("0:") && rows[0][1] == "etc", "{out}");
    assert_eq!(rows[1], ["upper", "new"]);
    assert_eq!(s.ok(&["cat", "box", "/new", "/etc/passwd"]), format!("from the upper\n{IMAGE_PASSWD}"));
    let v: serde_json::Value =
        serde_json::from_str(s.ok(&["ls", "--format", "json", "box", "/new"]).trim()).unwrap();
    assert_eq!(v["layer"], "upper");
    assert_eq!(v["diff_id"], serde_json::Value::Null);
    let out = s.command(&["export", "box"]).output().unwrap();
    let names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(names, ["etc/", "etc/passwd", "new"]);
}
