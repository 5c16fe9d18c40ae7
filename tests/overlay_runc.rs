//! A real container on a strata mount: runc runs busybox on it, writes a file and deletes a
//! lower one; both changes land in the writable layer.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::mount::*;

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn runc_runs_on_the_mount() {
    if !fuse_ready() {
        return;
    }
    let (Some(runc), Some(busybox)) = (which("runc"), which("busybox")) else {
        missing("needs runc and busybox (apt-get install runc busybox-static)");
        return;
    };
    let s = Scratch::new(1);
    fs::create_dir_all(s.p("l1/bin")).unwrap();
    fs::copy(&busybox, s.p("l1/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", s.p("l1/bin/sh")).unwrap();
    s.write("l1/etc/lowerfile", "lower");
    let m = s.mount_rw(1);
    let bundle = s.p("bundle");
    fs::create_dir(&bundle).unwrap();
    sh(&format!("cd {} && {runc} spec", bundle.display()));
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["root"] = serde_json::json!({ "path": m.mountpoint, "readonly": false });
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "echo hi > /newfile && rm /etc/lowerfile"]);
    fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let id = format!("strata-test-{}", std::process::id());
    let out = Command::new(&runc).args(["run", "--bundle"]).arg(&bundle).arg(&id).output().unwrap();
    let _ = Command::new(&runc).args(["delete", "-f", &id]).output();
    assert!(out.status.success(), "runc: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(s.p("upper/newfile")).unwrap(), "hi\n");
    assert!(Path::new(&s.p("upper/etc/.wh.lowerfile")).exists());
    assert!(!m.path("etc/lowerfile").exists());
    assert_eq!(fs::read_to_string(s.p("l1/etc/lowerfile")).unwrap(), "lower");
}
