//! Issue 12 item 6: one container, many `strata mount` at once: exactly one daemon serves it (the
//! others are told "already mounted at …"), and `rm -f` racing with mounts never deletes an
//! upper under a daemon: a removed container leaves no mount behind.

mod common;

use std::process::Output;

use common::mount::{fuse_ready, is_mounted};
use common::strata::{Strata, store_with_image};

fn umount_all(s: &Strata, n: usize) {
    for i in 0..n {
        let mp = s.path(&format!("mp{i}"));
        if is_mounted(&mp) {
            let _ = s.run(&["umount", mp.to_str().unwrap()]);
            let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

struct Unmount<'a>(&'a Strata, usize);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        umount_all(self.0, self.1);
    }
}

fn concurrently(s: &Strata, jobs: Vec<Vec<String>>) -> Vec<Output> {
    let children: Vec<_> = jobs
        .iter()
        .map(|args| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            s.command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

#[test]
fn twenty_mounts_of_one_container_one_wins() {
    if !fuse_ready() {
        return;
    }
    let s = Strata::new();
    let _u = Unmount(&s, 20);
    store_with_image(&s);
    s.ok(&["create", "--name", "c", "foo:1"]);
    let jobs: Vec<Vec<String>> = (0..20)
        .map(|i| {
            let mp = s.path(&format!("mp{i}"));
            std::fs::create_dir(&mp).unwrap();
            vec!["mount".into(), "c".into(), mp.display().to_string()]
        })
        .collect();
    let outs = concurrently(&s, jobs);
    let won: Vec<usize> = (0..20).filter(|i| outs[*i].status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one mount wins: {outs:?}");
    let winner = s.path(&format!("mp{}", won[0]));
    for (i, o) in outs.iter().enumerate().filter(|(i, _)| *i != won[0]) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("already mounted at {}", winner.display())), "mount {i}: {err}");
        assert!(!is_mounted(&s.path(&format!("mp{i}"))), "mp{i} mounted too");
    }
    // the one mount works and writes to the upper
    std::fs::write(winner.join("through"), "x").unwrap();
    let id = s.ok(&["ps", "-a", "-q", "--no-trunc"]).trim().to_string();
    s.ok(&["umount", "c"]);
    assert_eq!(
        std::fs::read_to_string(s.root().join("containers").join(&id).join("upper/through")).unwrap(),
        "x"
    );
}

#[test]
fn rm_f_racing_with_mounts_never_removes_a_mounted_upper() {
    if !fuse_ready() {
        return;
    }
    let s = Strata::new();
    let _u = Unmount(&s, 4);
    store_with_image(&s);
    for i in 0..4 {
        std::fs::create_dir(s.path(&format!("mp{i}"))).unwrap();
    }
    for round in 0..8 {
        let name = format!("r{round}");
        s.ok(&["create", "--name", &name, "foo:1"]);
        let id = s.ok(&["ps", "-a", "-q", "--no-trunc"]).lines().next().unwrap().to_string();
        let mut jobs: Vec<Vec<String>> = (0..3)
            .map(|i| vec!["mount".into(), name.clone(), s.path(&format!("mp{i}")).display().to_string()])
            .collect();
        jobs.insert(round % 4, vec!["rm".into(), "-f".into(), name.clone()]);
        let outs = concurrently(&s, jobs);
        let mounted: Vec<usize> = (0..3).filter(|i| is_mounted(&s.path(&format!("mp{i}")))).collect();
        let exists = s.root().join("containers").join(&id).exists();
        assert!(mounted.len() <= 1, "round {round}: two daemons on one upper: {mounted:?} {outs:?}");
        if !exists {
            assert!(
                mounted.is_empty(),
                "round {round}: container removed under a live mount {mounted:?}: {outs:?}"
            );
        } else {
            // rm -f lost the race only by waiting its turn: the container is mounted and sound
            let upper = s.root().join("containers").join(&id).join("upper");
            assert!(upper.is_dir(), "round {round}: upper gone: {outs:?}");
            if let Some(i) = mounted.first() {
                std::fs::write(s.path(&format!("mp{i}")).join("f"), "x").unwrap();
                assert!(upper.join("f").exists(), "round {round}: the mount writes elsewhere than the upper");
            }
            umount_all(&s, 4);
            s.ok(&["rm", "-f", &name]);
        }
    }
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
}
