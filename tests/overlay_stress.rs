//! Several processes creating, renaming and deleting in one directory at once; then the tree
//! is checked. A stress run ends with `rm -rf` of everything succeeding.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use common::mount::*;

#[test]
fn concurrent_processes_in_one_directory() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    for i in 0..50 {
        s.write(&format!("l1/shared/lower-{i}"), "l");
    }
    let m = s.mount_rw(1);
    let dir = m.path("shared");
    // Each worker w: creates w-N, renames odd ones to w-N.r, deletes lower-(w*10..w*10+10),
    // makes and removes a directory.
    let mut kids = Vec::new();
    for w in 0..5 {
        let script = format!(
            "cd '{d}' && for n in $(seq 0 99); do echo $n > {w}-$n; done && \
             for n in $(seq 1 2 99); do mv {w}-$n {w}-$n.r; done && \
             for n in $(seq {a} {b}); do rm lower-$n; done && \
             for n in $(seq 0 19); do mkdir dir{w}-$n && touch dir{w}-$n/f && rm -r dir{w}-$n; done",
            d = dir.display(),
            a = w * 10,
            b = w * 10 + 9
        );
        kids.push(Command::new("sh").arg("-c").arg(script).spawn().unwrap());
    }
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let mut want = BTreeSet::new();
    for w in 0..5 {
        for n in 0..100 {
            want.insert(if n % 2 == 1 { format!("{w}-{n}.r") } else { format!("{w}-{n}") });
        }
    }
    let got: BTreeSet<String> = names(&dir).into_iter().collect();
    assert_eq!(got, want);
    for w in 0..5 {
        assert_eq!(fs::read_to_string(dir.join(format!("{w}-3.r"))).unwrap(), "3\n");
    }
    // the same after a remount
    drop(m);
    let m = s.mount_rw(1);
    let got: BTreeSet<String> = names(&m.path("shared")).into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn stress_then_rm_rf() {
    let Some(s) = Scratch::for_fuse(2) else { return };
    for i in 0..20 {
        s.write(&format!("l2/tree/a{i}/b/c/file"), "x");
        s.write(&format!("l1/tree/a{i}/b/top"), "y");
    }
    let m = s.mount_rw(2);
    let t = m.path("tree");
    let mut kids = Vec::new();
    for w in 0..4 {
        let script = format!(
            "cd '{t}' && for i in $(seq 0 19); do \
               mkdir -p w{w}/n$i/x && echo data > w{w}/n$i/x/f && ln w{w}/n$i/x/f w{w}/n$i/hl && \
               ln -s ../x w{w}/n$i/sl && mkfifo w{w}/n$i/p && \
               cp -r a$i w{w}/n$i/copy 2>/dev/null; \
               mv w{w}/n$i w{w}/m$i; done; \
             for i in $(seq {w} 4 19); do echo more >> a$i/b/c/file; mv a$i a$i.moved; done",
            t = t.display()
        );
        kids.push(Command::new("sh").arg("-c").arg(script).spawn().unwrap());
    }
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    assert_eq!(fs::read_to_string(t.join("a0.moved/b/c/file")).unwrap(), "x\nmore\n".replace("x\n", "x"));
    sh(&format!("rm -rf {}", t.display()));
    assert!(!t.exists());
    assert!(names(&m.mountpoint).is_empty());
    drop(m);
    let m = s.mount_rw(2);
    assert!(names(&m.mountpoint).is_empty());
}
