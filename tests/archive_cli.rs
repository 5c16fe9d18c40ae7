//! `strata load` / `strata save` through the binary: files, stdin (plain, gzip and zstd through a
//! pipe), OCI layout directories, stdout, the lines printed, and bad input (one error line, exit
//! status non-zero, store unchanged).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::images::{self, Fixture, fixture, skopeo, umoci_unpack};
use common::strata::Strata;
use common::tree::assert_same_tree;

fn config_digest(f: &Fixture) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.layout.join("blobs/sha256").join(&m[7..])).unwrap()).unwrap();
    body["config"]["digest"].as_str().unwrap().to_string()
}

/// `sh -c "PRODUCER | strata --root R load"`: stdin is a real pipe, not a seekable file.
fn load_from_pipe(s: &Strata, producer: &str) -> std::process::Output {
    let cmd = format!("{producer} | {} --root {} load", env!("CARGO_BIN_EXE_strata"), s.root().display());
    Command::new("sh").arg("-c").arg(cmd).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn load_prints_names_from_files_pipes_and_layouts() {
    let f = fixture();
    let s = Strata::new();
    let tar = s.path("in.tar");
    f.convert(&format!("docker-archive:{}:example.com/fx:cli", tar.display()));
    assert_eq!(s.ok(&["load", "-i", tar.to_str().unwrap()]), "Loaded image: example.com/fx:cli\n");

    for producer in [
        format!("cat {}", tar.display()),
        format!("gzip -c {}", tar.display()),
        format!("zstd -qc {}", tar.display()),
    ] {
        let fresh = Strata::new();
        let out = load_from_pipe(&fresh, &producer);
        assert!(out.status.success(), "{producer}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: example.com/fx:cli\n", "{producer}");
        assert_eq!(std::fs::read_dir(fresh.root().join("tmp")).unwrap().count(), 0, "spool left behind");
    }

    // An OCI layout whose ref.name is a bare tag (umoci's `oci:t1`): named as umoci's `DIR:TAG`
    // reads, the layout directory's name being the repository.
    let fresh = Strata::new();
    assert_eq!(f.layout.file_name().unwrap(), "oci");
    let out = fresh.ok(&["load", "--oci", &f.image()]);
    assert_eq!(out, "Loaded image: oci:t1\n");
    let out = fresh.ok(&["load", "-i", &format!("oci:{}", f.image())]);
    assert_eq!(out, "Loaded image: oci:t1\n");
    let listed = fresh.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(listed, format!("oci:t1 {}\n", &config_digest(f)[7..19]));
}

#[test]
fn bare_tag_layouts_and_archives_take_their_name_from_the_path() {
    let f = fixture();
    let s = Strata::new();
    // skopeo writes `latest` as the ref.name of an OCI archive and of a layout.
    let archive = s.path("My-App.oci.tar");
    f.convert(&format!("oci-archive:{}:latest", archive.display()));
    assert_eq!(s.ok(&["load", "-i", archive.to_str().unwrap()]), "Loaded image: my-app:latest\n");
    let layout = s.path("webserver");
    f.convert(&format!("oci:{}:v2", layout.display()));
    assert_eq!(s.ok(&["load", "--oci", &format!("{}:v2", layout.display())]), "Loaded image: webserver:v2\n");
    // Compressed, through a spool, still named after the file.
    let gz = s.path("tools.tar.gz");
    images::run("sh", &["-c", &format!("gzip -c {} > {}", archive.display(), gz.display())]);
    assert_eq!(s.ok(&["load", "-i", gz.to_str().unwrap()]), "Loaded image: tools:latest\n");
    // From a pipe there is no name to take.
    let fresh = Strata::new();
    let out = load_from_pipe(&fresh, &format!("cat {}", archive.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("Loaded image ID: {}\n", config_digest(f)));
}

#[test]
fn load_of_a_rootfs_tarball_points_to_import() {
    let s = Strata::new();
    let rootfs = s.path("rootfs");
    common::strata::busybox_rootfs(&rootfs);
    let tar = s.path("rootfs.tar");
    common::strata::tar_dir(&rootfs, &tar, "plain");
    s.ok(&["images"]);
    fails_cleanly(
        &s,
        &["load", "-i", tar.to_str().unwrap()],
        &["rootfs.tar", "root filesystem", "strata import"],
    );
    s.ok(&["import", tar.to_str().unwrap(), "fromtar:1"]);
}

fn compare_docker_archive(tar: &Path, work: &Path, name: &str) {
    let back = work.join(format!("back-{name}"));
    skopeo(&["copy", &format!("docker-archive:{}", tar.display()), &format!("oci:{}:x", back.display())]);
    assert_same_tree(&fixture().rootfs, &umoci_unpack(&format!("{}:x", back.display()), work, name));
}

#[test]
fn save_round_trips_through_the_binary() {
    let f = fixture();
    let s = Strata::new();
    s.ok(&["load", "--oci", &f.image()]);
    s.ok(&["tag", &config_digest(f), "example.com/fx:cli"]);
    let work = s.path("work");
    std::fs::create_dir(&work).unwrap();

    // Default format: docker-archive, to a file and to stdout (same bytes).
    let d = s.path("out.tar");
    s.ok(&["save", "-o", d.to_str().unwrap(), "example.com/fx:cli"]);
    compare_docker_archive(&d, &work, "file");
    let piped = s.path("piped.tar");
    let st = s
        .command(&["save", "example.com/fx:cli"])
        .stdout(std::fs::File::create(&piped).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&d).unwrap(), std::fs::read(&piped).unwrap());

    let o = s.path("out-oci.tar");
    s.ok(&["save", "--format", "oci-archive", "-o", o.to_str().unwrap(), "example.com/fx:cli"]);
    let back = work.join("back-oci");
    skopeo(&["copy", &format!("oci-archive:{}:cli", o.display()), &format!("oci:{}:x", back.display())]);
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:x", back.display()), &work, "oci"));

    let dir = s.path("out-dir");
    s.ok(&["save", "--format", "oci-dir", "-o", dir.to_str().unwrap(), "example.com/fx:cli"]);
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:cli", dir.display()), &work, "dir"));

    // What was saved loads back into a fresh store under the same name and id.
    let again = Strata::new();
    assert_eq!(again.ok(&["load", "-i", d.to_str().unwrap()]), "Loaded image: example.com/fx:cli\n");
    assert_eq!(again.ok(&["load", "-i", o.to_str().unwrap()]), "Loaded image: example.com/fx:cli\n");
    assert_eq!(again.ok(&["images", "-q"]).lines().count(), 1);
}

/// One error line naming the input, exit status non-zero, store unchanged.
fn fails_cleanly(s: &Strata, args: &[&str], wants: &[&str]) {
    let before = s.snapshot();
    let err = s.fails(args);
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    for w in wants {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert_eq!(before, s.snapshot(), "the store changed: {err}");
}

#[test]
fn bad_input_through_the_binary() {
    let s = Strata::new();
    let good = s.path("good.tar");
    images::docker_archive(&good, &[images::tar_of(&[images::Member::File("a", b"a")])], None, &["good:1"]);
    s.ok(&["load", "-i", good.to_str().unwrap()]);

    let junk = s.path("junk.bin");
    std::fs::write(&junk, vec![0xabu8; 3000]).unwrap();
    fails_cleanly(&s, &["load", "-i", junk.to_str().unwrap()], &["junk.bin", "not an image archive"]);

    let layer = images::tar_of(&[images::Member::File("b", b"b")]);
    let config = String::from_utf8(images::config_for(std::slice::from_ref(&layer)))
        .unwrap()
        .replace(&images::sha256_hex(&layer), &"2".repeat(64))
        .into_bytes();
    let bad = s.path("bad-diffid.tar");
    images::docker_archive(&bad, &[layer], Some(config), &["bad:1"]);
    fails_cleanly(&s, &["load", "-i", bad.to_str().unwrap()], &["bad-diffid.tar", "diff_id"]);

    let gz = s.path("cut.tar.gz");
    images::run("sh", &["-c", &format!("gzip -c {} | head -c 300 > {}", good.display(), gz.display())]);
    fails_cleanly(&s, &["load", "-i", gz.to_str().unwrap()], &["cut.tar.gz", "gzip"]);

    fails_cleanly(&s, &["load", "--oci", s.path("nowhere").to_str().unwrap()], &["nowhere"]);
    fails_cleanly(&s, &["save", "-o", s.path("x.tar").to_str().unwrap(), "ghost:1"], &["ghost:1"]);
    assert!(!s.path("x.tar").exists());

    // Through stdin the input is named as such.
    let before = s.snapshot();
    let out = load_from_pipe(&s, &format!("head -c 300 {}", gz.display()));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("standard input") && err.contains("gzip"), "{err}");
    assert_eq!(before, s.snapshot());
}
