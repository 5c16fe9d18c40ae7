//! The image verbs through the real binary: import, images, tag, rmi, inspect, history, df, prune,
//! and bad input leaving the store exactly as it was.

mod common;

use common::strata::{Strata, busybox_rootfs, tar_dir};

fn sample(s: &Strata, compress: &str) -> std::path::PathBuf {
    let rootfs = s.path(&format!("rootfs-{compress}"));
    busybox_rootfs(&rootfs);
    let out = s.path(&format!("rootfs-{compress}.tar"));
    tar_dir(&rootfs, &out, compress);
    out
}

#[test]
fn import_plain_gzip_and_zstd_give_one_shared_layer() {
    let s = Strata::new();
    let mut ids = Vec::new();
    for (i, c) in ["plain", "gzip", "zstd"].iter().enumerate() {
        let f = sample(&s, c);
        let id = s.ok(&["import", f.to_str().unwrap(), &format!("bb:{i}")]).trim().to_string();
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        ids.push(id);
    }
    // Same tree content, different tars (mtimes of the temp dirs differ) or same: each import is an image.
    let listing = s.ok(&["images"]);
    assert!(listing.starts_with("REPOSITORY   TAG"), "{listing}");
    for i in 0..3 {
        assert!(listing.contains(&format!("bb           {i}")), "{listing}");
    }
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "bb:1"])).unwrap();
    let layer = inspect[0]["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    // The diff_id is the sha256 of the uncompressed tar, whatever the compression.
    let plain = std::fs::read(s.path("rootfs-gzip.tar")).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&plain[..]), &mut tar).unwrap();
    assert_eq!(layer, format!("sha256:{}", sha256_hex(&tar)));
    assert_eq!(inspect[0]["Id"], ids[1].as_str());
    assert_eq!(inspect[0]["RepoTags"][0], "bb:1");
    assert_eq!(inspect[0]["Os"], "linux");
    // The unpacked layer holds the files.
    let dir = inspect[0]["GraphDriver"]["Data"]["LowerDirs"][0].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(format!("{dir}/etc/motd")).unwrap(), "hello from strata\n");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn images_flags_filters_and_formats() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    let id = s.ok(&["import", f.to_str().unwrap(), "first:1"]).trim().to_string();
    s.ok(&["tag", "first:1", "localhost:5000/team/app:v2"]);
    let untagged = s.ok(&["import", f.to_str().unwrap(), "-m", "again", "-c", "ENV A=1"]).trim().to_string();
    assert_ne!(id, untagged, "a different config gives a different id");

    let q = s.ok(&["images", "-q"]);
    assert_eq!(q.lines().count(), 3, "{q}");
    assert!(q.lines().all(|l| l.len() == 12));
    let full = s.ok(&["images", "-q", "--no-trunc"]);
    assert!(full.lines().any(|l| l == id));
    let dangling = s.ok(&["images", "-q", "-f", "dangling=true", "--no-trunc"]);
    assert_eq!(dangling.trim(), untagged);
    let tagged = s.ok(&["images", "-f", "dangling=false", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<_> = tagged.lines().collect();
    names.sort();
    assert_eq!(names, ["first:1", "localhost:5000/team/app:v2"]);
    let by_ref = s.ok(&["images", "-f", "reference=first", "--format", "{{.Repository}}"]);
    assert_eq!(by_ref.trim(), "first");
    let by_glob = s.ok(&["images", "-f", "reference=*/team/*", "--format", "{{.Tag}}"]);
    assert_eq!(by_glob.trim(), "v2");
    let positional = s.ok(&["images", "first", "--format", "{{.ID}}"]);
    assert_eq!(positional.trim(), &id[7..19]);
    let table = s.ok(&["images", "--format", "table {{.ID}}\\t{{.Repository}}"]);
    assert!(table.starts_with("IMAGE ID       REPOSITORY\n"), "{table}");
    let json = s.ok(&["images", "--format", "json"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["ID"].is_string() && v["Size"].is_string());
    }
    let digests = s.ok(&["images", "--digests"]);
    assert!(digests.lines().next().unwrap().contains("DIGEST"));
    s.fails(&["images", "--format", "{{.Bogus}}"]);
    s.fails(&["images", "-f", "color=red"]);
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", &untagged])).unwrap();
    assert_eq!(inspect[0]["Config"]["Env"][0], "A=1");
    assert_eq!(inspect[0]["Comment"], "again");
}

#[test]
fn rmi_untags_then_deletes_and_keeps_shared_layers() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    let a = s.ok(&["import", f.to_str().unwrap(), "a:1"]).trim().to_string();
    s.ok(&["tag", "a:1", "b:1"]);
    let other = s.ok(&["import", f.to_str().unwrap(), "c:1", "-m", "other"]).trim().to_string();
    assert_ne!(a, other);

    // By id with two tags: refused without -f.
    let err = s.fails(&["rmi", &a[7..19]]);
    assert!(err.contains("referenced in multiple repositories"), "{err}");
    assert_eq!(s.ok(&["rmi", "b:1"]).trim(), "Untagged: b:1");
    let out = s.ok(&["rmi", "a:1"]);
    assert!(out.contains("Untagged: a:1") && out.contains(&format!("Deleted: {a}")), "{out}");
    // The layer is shared with c:1, so it stays.
    let layers = std::fs::read_dir(s.root().join("layers")).unwrap().count();
    assert_eq!(layers, 1);
    let out = s.ok(&["rmi", "c:1"]);
    assert!(out.contains(&format!("Deleted: {other}")), "{out}");
    assert_eq!(std::fs::read_dir(s.root().join("layers")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.root().join("blobs/sha256")).unwrap().count(), 0);
    let err = s.fails(&["rmi", "nothere"]);
    assert!(err.contains("no such image: nothere"), "{err}");
}

#[test]
fn history_and_df() {
    let s = Strata::new();
    let f = sample(&s, "zstd");
    s.ok(&["import", f.to_str().unwrap(), "h:1", "-m", "my message"]);
    let h = s.ok(&["history", "h:1"]);
    let lines: Vec<_> = h.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY") && lines[0].ends_with("COMMENT"),
        "{h}"
    );
    assert!(lines[1].contains("strata import") && lines[1].ends_with("my message"), "{h}");
    assert_eq!(s.ok(&["history", "-q", "h:1"]).lines().count(), 1);
    let df = s.ok(&["system", "df"]);
    assert!(df.contains("Images          1") && df.contains("Containers"), "{df}");
    let v = s.ok(&["system", "df", "-v"]);
    assert!(v.contains("SHARED SIZE") && v.contains("UNIQUE SIZE"), "{v}");
}

/// Docker's four rows; the Images row is what images use (unpacked, counted once), and the
/// store's own parts (unpacked layers, blobs, unused) are in the -v breakdown.
#[test]
fn df_has_dockers_rows_and_explains_the_rest_with_v() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    s.ok(&["import", f.to_str().unwrap(), "a:1"]);
    s.ok(&["import", f.to_str().unwrap(), "b:1", "-m", "same layer, another image"]);
    s.ok(&["create", "--name", "c", "a:1"]);
    let rows: Vec<serde_json::Value> = s
        .ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = rows.iter().map(|r| r["Type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Images", "Containers", "Local Volumes", "Build Cache"]);
    // Two images share one layer: counted once, as its unpacked bytes (not plus the blob).
    let image_size = s.ok(&["images", "--format", "{{.Size}}", "a:1"]).trim().to_string();
    assert_eq!(rows[0]["TotalCount"], "2");
    assert_eq!(rows[0]["Active"], "1");
    assert_eq!(rows[0]["Size"], image_size.as_str());
    assert_eq!(rows[1]["TotalCount"], "1");
    let v = s.ok(&["system", "df", "-v"]);
    assert!(
        v.contains("Store space usage:") && v.contains("Unpacked layers   1/1") && v.contains("Blobs"),
        "{v}"
    );
    assert!(v.contains("On disk in all: "), "{v}");
}

#[test]
fn images_patterns_and_label_filters() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    let file = f.to_str().unwrap();
    s.ok(&["import", file, "debian:app1", "-c", "LABEL tier=web owner=ops"]);
    s.ok(&["import", file, "debian:app2", "-c", "LABEL tier=db"]);
    s.ok(&["import", file, "debian:base"]);
    s.ok(&["import", file, "other:app9"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = s.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["debian:app*"]), ["debian:app1", "debian:app2"]);
    assert_eq!(names(&["*:app?"]), ["debian:app1", "debian:app2", "other:app9"]);
    assert_eq!(names(&["debian"]), ["debian:app1", "debian:app2", "debian:base"]);
    assert_eq!(names(&["-f", "label=tier"]), ["debian:app1", "debian:app2"]);
    assert_eq!(names(&["-f", "label=tier=db"]), ["debian:app2"]);
    assert_eq!(names(&["-f", "label=tier", "-f", "label=owner=ops"]), ["debian:app1"]);
    assert_eq!(names(&["debian:app*", "-f", "label=tier=web"]), ["debian:app1"]);
    assert!(names(&["-f", "label=nope"]).is_empty());
}

#[test]
fn prune_asks_and_reads_the_answer_from_any_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let s = Strata::new();
    let f = sample(&s, "gzip");
    s.ok(&["import", f.to_str().unwrap(), "-m", "dangling"]);
    let prune = |answer: Option<&str>, all: bool| {
        let mut args = vec!["image", "prune"];
        if all {
            args.push("-a");
        }
        let mut child = s
            .command(&args)
            .stdin(if answer.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(a) = answer {
            child.stdin.take().unwrap().write_all(a.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for answer in [Some("n\n"), Some(""), None, Some("maybe\n")] {
        let out = prune(answer, false);
        assert!(out.starts_with("WARNING! This will remove all dangling images."), "{out}");
        assert!(out.contains("Are you sure you want to continue? [y/N]"), "{out}");
        assert!(!out.contains("deleted"), "{answer:?}: {out}");
        assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1, "{answer:?} deleted something");
    }
    let out = prune(Some("y\n"), false);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 0);
}

#[test]
fn prune_removes_dangling_images_then_orphans() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    s.ok(&["import", f.to_str().unwrap(), "keep:1"]);
    let dangling = s.ok(&["import", f.to_str().unwrap(), "-m", "x"]).trim().to_string();
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {dangling}")) && out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1);
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: keep:1"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 0);
    assert_eq!(std::fs::read_dir(s.root().join("layers")).unwrap().count(), 0);
}

#[test]
fn bad_input_is_a_one_line_error_and_leaves_the_store_unchanged() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    s.ok(&["import", f.to_str().unwrap(), "base:1"]);
    let before = s.snapshot();
    let bytes = std::fs::read(&f).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.tgz", bytes[..bytes.len() / 2].to_vec()),
        ("corrupt.tgz", {
            let mut b = bytes.clone();
            let mid = b.len() / 2;
            b[mid..mid + 64].iter_mut().for_each(|x| *x ^= 0x5a);
            b
        }),
        ("notatar.bin", b"this is not an archive at all, just text\n".repeat(100)),
        ("truncated.zst", {
            let z = std::fs::read(sample(&s, "zstd")).unwrap();
            z[..z.len() - 100].to_vec()
        }),
    ];
    for (name, data) in cases {
        let p = s.path(name);
        std::fs::write(&p, data).unwrap();
        let err = s.fails(&["import", p.to_str().unwrap(), "broken:1"]);
        assert!(err.contains(name), "error must name the file: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        assert_eq!(s.snapshot(), before, "store changed after {name}");
    }
    let err = s.fails(&["import", f.to_str().unwrap(), "Not:A:Valid:Tag"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = s.fails(&["tag", "base:1", "UPPER"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = s.fails(&["tag", "nope:1", "x:1"]);
    assert!(err.contains("no such image: nope:1"), "{err}");
    let err = s.fails(&["import", "/nonexistent/file.tar"]);
    assert!(err.contains("/nonexistent/file.tar"), "{err}");
    assert_eq!(s.snapshot(), before);
    // Nothing was left behind in tmp/ either.
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn concurrent_writers_serialise_on_the_lock() {
    let s = Strata::new();
    let f = sample(&s, "gzip");
    let children: Vec<_> = (0..4)
        .map(|i| {
            s.command(&["import", f.to_str().unwrap(), &format!("par:{i}"), "-m", &i.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 4);
    assert_eq!(std::fs::read_dir(s.root().join("layers")).unwrap().count(), 1);
}

#[test]
fn leftovers_of_a_crash_in_tmp_are_removed_by_the_next_writer() {
    let s = Strata::new();
    let f = sample(&s, "plain");
    s.ok(&["import", f.to_str().unwrap(), "x:1"]);
    let junk = s.root().join("tmp/layer-123-0-0");
    std::fs::create_dir_all(junk.join("fs/etc")).unwrap();
    std::fs::write(s.root().join("tmp/blob-1-2-3"), b"half a blob").unwrap();
    s.ok(&["images"]);
    assert!(junk.exists(), "readers never touch tmp/");
    s.ok(&["tag", "x:1", "y:1"]);
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}
