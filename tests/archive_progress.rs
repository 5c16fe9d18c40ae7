//! Progress of `import`, `load` and `save`: on a terminal (a real pty, through util-linux
//! `script`) each shows bytes and rate per layer; in pipes they print their results only.

mod common;

use std::process::Command;

use common::strata::Strata;

/// A 4 MiB one-file rootfs tarball (incompressible, so the layer blob is that big too).
fn tarball(s: &Strata) -> std::path::PathBuf {
    let dir = s.path("rootfs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("noise"), common::registry::noise(4 << 20, 7)).unwrap();
    let tar = s.path("rootfs.tar");
    common::strata::tar_dir(&dir, &tar, "plain");
    tar
}

/// Runs strata with stdin, stdout and stderr on a pseudo-terminal; returns what the terminal got.
fn on_terminal(s: &Strata, args: &[&str]) -> String {
    let mut line = format!("{} --root {}", env!("CARGO_BIN_EXE_strata"), s.root().display());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = Command::new("script").args(["-qfec", &line, "/dev/null"]).output().expect("run script(1)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{line}: {text}");
    text
}

#[test]
fn import_load_and_save_show_progress_on_a_terminal() {
    let s = Strata::new();
    let tar = tarball(&s);
    let shown = on_terminal(&s, &["import", tar.to_str().unwrap(), "noise:1"]);
    assert!(shown.contains("rootfs.tar: Importing") && shown.contains("rootfs.tar: Imported"), "{shown}");
    assert!(shown.contains("/4.00 MiB") && shown.contains("MiB/s"), "bytes and rate: {shown}");
    assert!(shown.contains("sha256:"), "the image id is still printed: {shown}");

    let archive = s.path("noise.tar");
    let shown = on_terminal(&s, &["save", "-o", archive.to_str().unwrap(), "noise:1"]);
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "noise:1"])).unwrap();
    let diff_id =
        inspect[0]["RootFS"]["Layers"][0].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert!(shown.contains("Saving") && shown.contains("Saved"), "{shown}");

    let fresh = Strata::new();
    let shown = on_terminal(&fresh, &["load", "-i", archive.to_str().unwrap()]);
    assert!(shown.contains("Loading") && shown.contains(": Loaded"), "{shown}");
    assert!(shown.contains("Loaded image: noise:1"), "{shown}");
    // Per layer, named as Docker shows layers: 12 hex digits (the docker-archive names layer
    // directories by ChainID, which for a bottom layer is its diff_id).
    assert!(shown.contains(&format!("{}: Loaded", &diff_id[..12])), "{shown}");
    let gz = s.path("noise.tar.gz");
    common::images::run("sh", &["-c", &format!("gzip -1 -c {} > {}", archive.display(), gz.display())]);
    let shown = on_terminal(&Strata::new(), &["load", "-i", gz.to_str().unwrap()]);
    assert!(shown.contains("noise.tar.gz: Reading") && shown.contains("noise.tar.gz: Read"), "{shown}");
}

#[test]
fn pipes_get_results_only() {
    let s = Strata::new();
    let tar = tarball(&s);
    let out = s.run(&["import", tar.to_str().unwrap(), "noise:1"]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));

    let archive = s.path("noise.tar");
    let out = s.run(&["save", "-o", archive.to_str().unwrap(), "noise:1"]);
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let fresh = Strata::new();
    let out = fresh.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: noise:1\n");
}
