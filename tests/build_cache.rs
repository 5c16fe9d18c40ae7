//! The build cache (hits, misses, what invalidates a step, prune) and reproducible builds.

mod common;

use common::build::{build_ok, build_with, cached_steps, context, dockerfile};
use common::run::{busybox_rootfs, runtime_ready};
use common::strata::{Strata, tar_dir};

const DOCKERFILE: &str = "FROM bb:1\nCOPY a /a\nENV X=1\nCOPY b /b\nLABEL l=1\nCOPY . /all/\n";

fn id_of(stdout: &str) -> String {
    stdout.trim().to_string()
}

#[test]
fn one_changed_file_reruns_from_its_copy() {
    let s = Strata::new();
    common::run::busybox_image(&s, "bb:1", &[]);
    let ctx = context(
        &s,
        "ctx",
        &[("a", "a\n"), ("b", "b\n"), ("ignored.log", "1\n"), (".dockerignore", "*.log\n")],
    );
    dockerfile(&ctx, DOCKERFILE);
    let c = ctx.to_str().unwrap();
    let (_, err) = build_ok(&s, &["-t", "c:1", c]);
    assert!(cached_steps(&err).is_empty(), "a fresh store caches nothing: {err}");
    let first = s.ok(&["images", "-q", "--no-trunc", "c:1"]);

    // Same context: everything cached, same image.
    let (out, err) = build_ok(&s, &["-q", c]);
    assert_eq!(id_of(&out), first.trim());
    let (_, err2) = build_ok(&s, &[c]);
    assert_eq!(cached_steps(&err2), vec!["COPY a /a", "COPY b /b", "COPY . /all/"], "{err2}");
    assert_eq!(err, "");

    // Only an mtime changes, or only an ignored file: still cached.
    std::fs::write(ctx.join("b"), "b\n").unwrap();
    std::fs::write(ctx.join("ignored.log"), "2\n").unwrap();
    let (out, _) = build_ok(&s, &["-q", c]);
    assert_eq!(id_of(&out), first.trim(), "mtimes and ignored files are not in the key");

    // b's content changes: COPY a stays cached, COPY b and what follows run again.
    std::fs::write(ctx.join("b"), "b changed\n").unwrap();
    let (_, err) = build_ok(&s, &["-t", "c:2", c]);
    assert_eq!(cached_steps(&err), vec!["COPY a /a"], "{err}");
    // Its mode changes: a miss too.
    std::fs::set_permissions(ctx.join("b"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (_, err) = build_ok(&s, &[c]);
    assert_eq!(cached_steps(&err), vec!["COPY a /a"], "{err}");

    // --no-cache: nothing reused, and the result is still the same image (no times changed).
    let (_, err) = build_ok(&s, &["--no-cache", c]);
    assert!(cached_steps(&err).is_empty(), "{err}");

    // A build arg the steps can see changes their keys.
    dockerfile(&ctx, &format!("{DOCKERFILE}ARG V\nLABEL v=$V\n"));
    build_ok(&s, &["--build-arg", "V=1", c]);
    let (_, err) = build_ok(&s, &["--build-arg", "V=1", c]);
    assert_eq!(cached_steps(&err).len(), 3, "{err}");
    let (out1, _) = build_ok(&s, &["-q", "--build-arg", "V=1", c]);
    let (out2, _) = build_ok(&s, &["-q", "--build-arg", "V=2", c]);
    assert_ne!(out1, out2);
}

/// As BuildKit: a step's result lives in the build cache only, so `images -a` after a
/// multi-stage build lists the base and the tagged result, nothing per step (an untagged result
/// when no -t is given, as Docker). The cache still hits after `rmi` of the result (the cache
/// holds its layers), `builder prune` keeps what images use, and after `rmi` and prune nothing
/// of the build is left: no layer, no blob, a store that checks clean.
#[test]
fn intermediate_results_stay_in_the_cache_not_in_images() {
    let s = Strata::new();
    let base = common::run::busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("a", "a\n"), ("b", "b\n")]);
    let df = "FROM bb:1 AS first\nCOPY a /a\nENV X=1\nCOPY b /b\n\
              FROM bb:1\nCOPY --from=first /a /a\nLABEL l=1\nCOPY b /b2\n";
    dockerfile(&ctx, df);
    let c = ctx.to_str().unwrap();
    let store_files = |s: &Strata, dir: &str| s.root().join(dir).read_dir().map_or(0, |d| d.count());
    let (layers0, blobs0) = (store_files(&s, "layers"), store_files(&s, "blobs/sha256"));
    let all_images = |s: &Strata| {
        let mut v: Vec<String> =
            s.ok(&["images", "-a", "-q", "--no-trunc"]).lines().map(String::from).collect();
        v.sort();
        v
    };
    let (out, _) = build_ok(&s, &["-q", "-t", "keep:1", c]);
    let kept = id_of(&out);
    let mut want = vec![base.clone(), kept.clone()];
    want.sort();
    assert_eq!(all_images(&s), want, "the base and the result only");
    let (_, err) = build_ok(&s, &["-t", "keep:1", c]);
    assert_eq!(
        cached_steps(&err),
        vec!["COPY a /a", "COPY b /b", "COPY --from=first /a /a", "COPY b /b2"],
        "{err}"
    );
    assert_eq!(all_images(&s), want);

    // The result removed: the cache still holds its layers and hits; the same image comes back.
    s.ok(&["rmi", "keep:1"]);
    assert_eq!(all_images(&s), vec![base.clone()]);
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let (out, err) = build_ok(&s, &["-t", "keep:1", c]);
    assert_eq!(cached_steps(&err).len(), 4, "{err}{out}");
    assert_eq!(s.ok(&["images", "-q", "--no-trunc", "keep:1"]).trim(), kept);
    assert_eq!(s.ok(&["cat", "keep:1", "/b2"]), "b\n");

    // No -t: the result is an untagged image, listed as Docker lists it.
    dockerfile(&ctx, &format!("{df}LABEL m=2\n"));
    let (out, _) = build_ok(&s, &["-q", c]);
    let untagged = id_of(&out);
    let listed = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(listed.contains(&format!("<none>:<none> {}", &untagged[7..19])), "{listed}");
    assert_eq!(all_images(&s).len(), 3, "{listed}");

    // Prune: what images use stays (a layer shared by the cache and an image included).
    let out = s.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted build cache objects:") && out.contains("Total reclaimed space"), "{out}");
    assert!(!s.root().join("builder/cache").read_dir().unwrap().any(|_| true), "no cache record left");
    assert_eq!(s.ok(&["cat", "keep:1", "/a"]), "a\n");
    assert_eq!(s.ok(&["cat", untagged.as_str(), "/b2"]), "b\n");
    let check = s.run(&["system", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && !report.contains("Leftovers"), "{report}");
    let (_, err) = build_ok(&s, &["--iidfile", s.path("iid").to_str().unwrap(), c]);
    assert!(cached_steps(&err).is_empty(), "{err}");
    let rebuilt = std::fs::read_to_string(s.path("iid")).unwrap();

    // Everything of the builds removed: the store holds what it held before them.
    // (The same image unless the clock's second moved on between the two builds.)
    let mut gone = vec!["keep:1", untagged.as_str(), rebuilt.as_str()];
    gone.dedup();
    let mut rmi = vec!["rmi"];
    rmi.extend(gone);
    s.ok(&rmi);
    s.ok(&["builder", "prune", "-f"]);
    assert_eq!(all_images(&s), vec![base.clone()]);
    assert_eq!((store_files(&s, "layers"), store_files(&s, "blobs/sha256")), (layers0, blobs0));
    let check = s.run(&["system", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && !report.contains("Leftovers"), "{report}");
    assert!(s.ok(&["ls", "bb:1", "/bin"]).contains("busybox"));

    // A record an older strata wrote named a hidden intermediate image: a miss, and prune
    // removes that image when nothing else holds it.
    let (out, _) = build_ok(&s, &["-q", c]);
    let old_style = id_of(&out);
    let key = "0".repeat(64);
    std::fs::write(
        s.root().join("builder/cache").join(&key),
        format!("{{\"image\":\"{old_style}\",\"created\":0}}"),
    )
    .unwrap();
    s.ok(&["builder", "prune", "-f"]);
    assert_eq!(all_images(&s), vec![base.clone()], "the old record's image went with it");
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// Two fresh stores, the same base tar and context, SOURCE_DATE_EPOCH: the same image id.
#[test]
fn reproducible_across_stores() {
    let with_run = runtime_ready("runc");
    let work = Strata::new();
    let rootfs = work.path("rootfs");
    busybox_rootfs(&rootfs);
    let tar = work.path("base.tar");
    tar_dir(&rootfs, &tar, "plain");
    let ctx = context(&work, "ctx", &[("a", "a\n"), ("dir/b", "b\n"), ("old", "old\n")]);
    let old_time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(ctx.join("old")).unwrap().set_modified(old_time).unwrap();
    let mut df = String::from(
        "FROM bb:1\nCOPY a old /\nCOPY dir /dir\nCOPY <<EOF /here\nhello\nEOF\nWORKDIR /made\nENV E=1\n",
    );
    if with_run {
        df.push_str("RUN echo run > /run.txt && mkdir -p /newdir && rm /etc/motd\n");
    }
    dockerfile(&ctx, &df);
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let mut ids = Vec::new();
    for n in 0..2 {
        let s = Strata::new();
        let out = s.command(&["import", tar.to_str().unwrap(), "bb:1"]).envs(epoch).output().unwrap();
        assert!(out.status.success());
        if n == 1 {
            // A later build: the clock has moved on, the context's mtimes too.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            std::fs::write(ctx.join("a"), "a\n").unwrap();
        }
        let out = build_with(&s, &["-q", ctx.to_str().unwrap()], &epoch, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
        let c = common::build::config(&s, &ids[n]);
        assert_eq!(c["created"], "2023-11-14T22:13:20Z");
        let history = c["history"].as_array().unwrap();
        assert!(history.iter().all(|h| h["created"] == "2023-11-14T22:13:20Z"), "{history:?}");
        // File mtimes newer than the epoch are clamped to it; older ones are kept.
        let layer = c["rootfs"]["diff_ids"][1].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let fs = s.root().join("layers").join(layer).join("fs");
        let mtime = |p: &str| std::os::unix::fs::MetadataExt::mtime(&std::fs::metadata(fs.join(p)).unwrap());
        assert_eq!((mtime("a"), mtime("old")), (1_700_000_000, 1_600_000_000));
    }
    assert_eq!(ids[0], ids[1]);
}

/// FROM an image the store lacks pulls it from the registry; --pull pulls again even when stored.
#[test]
fn from_pulls_a_missing_base_image() {
    let reg = common::registry::Registry::start(common::registry::Auth::None);
    let name = format!("{}/bb:1", reg.host());
    let src = Strata::new();
    common::run::busybox_image(&src, &name, &["ENV FROM_REGISTRY=1"]);
    src.ok(&["push", &name]);
    let s = Strata::new();
    let ctx = context(&s, "ctx", &[]);
    dockerfile(&ctx, &format!("FROM {name}\nLABEL built=1\n"));
    let (_, err) = build_ok(&s, &["-t", "pulled:1", ctx.to_str().unwrap()]);
    assert!(err.contains(&format!("load metadata for {name}")), "{err}");
    assert!(s.ok(&["images", "-q", &name]).trim().len() == 12, "the base is in the store now");
    let env = common::build::config(&s, "pulled:1")["config"]["Env"].to_string();
    assert!(env.contains("FROM_REGISTRY=1"), "{env}");
    let gets = reg.requests().iter().filter(|r| r.contains("/manifests/")).count();
    build_ok(&s, &[ctx.to_str().unwrap()]);
    assert_eq!(reg.requests().iter().filter(|r| r.contains("/manifests/")).count(), gets, "stored: no pull");
    build_ok(&s, &["--pull", ctx.to_str().unwrap()]);
    assert!(reg.requests().iter().filter(|r| r.contains("/manifests/")).count() > gets, "--pull asks again");
}

/// A RUN with a bind mount of the context reruns when the bound files change.
#[test]
fn bind_mounted_files_are_in_the_run_key() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    common::run::busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("src/v", "1\n"), ("other", "o\n")]);
    dockerfile(
        &ctx,
        "FROM bb:1\nRUN --mount=type=bind,source=src,target=/src cp /src/v /v && echo ran-$((1+1))\n",
    );
    let c = ctx.to_str().unwrap();
    let (_, err) = build_ok(&s, &["-t", "b:1", c]);
    assert!(err.contains(" ran-2\n"), "{err}");
    std::fs::write(ctx.join("other"), "changed\n").unwrap();
    let (_, err) = build_ok(&s, &[c]);
    assert_eq!(cached_steps(&err).len(), 1, "files outside the bind do not count: {err}");
    assert!(!err.contains("ran-2"), "a cache hit runs nothing: {err}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "", "nor creates a container");
    std::fs::write(ctx.join("src/v"), "2\n").unwrap();
    let (_, err) = build_ok(&s, &["-t", "b:2", c]);
    assert!(cached_steps(&err).is_empty(), "{err}");
    assert_eq!(s.ok(&["cat", "b:2", "/v"]), "2\n");
}

/// `system df`'s Build Cache row as Docker prints it: the records, and the bytes only the cache
/// holds (a stage the result copies one small file from keeps its big layer in the cache alone),
/// all reclaimable, no percentage; `builder prune` frees them and the row reads 0 again.
#[test]
fn df_build_cache_row_counts_what_only_the_cache_holds() {
    let s = Strata::new();
    common::run::busybox_image(&s, "bb:1", &[]);
    let cache_row = |s: &Strata| -> serde_json::Value {
        s.ok(&["system", "df", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["Type"] == "Build Cache")
            .unwrap()
    };
    let empty = cache_row(&s);
    assert_eq!(
        (&empty["TotalCount"], &empty["Size"], &empty["Reclaimable"]),
        (&"0".into(), &"0B".into(), &"0B".into())
    );
    let big = "x".repeat(200_000);
    let ctx = context(&s, "ctx", &[("big", &big), ("small", "s\n")]);
    dockerfile(
        &ctx,
        "FROM bb:1 AS first\nCOPY big /big\nCOPY small /small\nFROM bb:1\nCOPY --from=first /small /copied\n",
    );
    build_ok(&s, &["-t", "res:1", ctx.to_str().unwrap()]);
    let row = cache_row(&s);
    assert_eq!(row["TotalCount"], "3", "three steps: {row}");
    assert_eq!(row["Active"], "0", "{row}");
    assert_eq!(row["Size"], "200kB", "the first stage's layers (200,000 + 2 bytes): {row}");
    assert_eq!(row["Reclaimable"], "200kB", "all of it, without a percentage as Docker: {row}");
    let table = s.ok(&["system", "df"]);
    let line = table.lines().find(|l| l.starts_with("Build Cache")).unwrap();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["Build", "Cache", "3", "0", "200kB", "200kB"]);
    let v = s.ok(&["system", "df", "-v"]);
    assert!(v.contains("Build cache usage: 200kB") && v.contains("CACHE ID") && v.contains("regular"), "{v}");

    s.ok(&["builder", "prune", "-f"]);
    let row = cache_row(&s);
    assert_eq!(
        (&row["TotalCount"], &row["Size"], &row["Reclaimable"]),
        (&"0".into(), &"0B".into(), &"0B".into())
    );
    assert_eq!(s.ok(&["cat", "res:1", "/copied"]), "s\n", "the result stays");
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// The rest of the key and of the output: a file's owner or a new name in a copied directory is a
/// miss (and the old key hits again once undone); BuildKit's plain lines: `#N [k/n] …`, `#N DONE
/// 0.1s`, `#N CACHED`, `writing image sha256:… done`, `naming to … done`; --platform other
/// than this machine's is refused naming it.
#[test]
fn owners_and_names_are_in_the_key_and_the_output_reads_like_buildkit() {
    use std::os::unix::fs::chown;
    let s = Strata::new();
    common::run::busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("d/x", "x\n"), ("d/y", "y\n")]);
    dockerfile(&ctx, "FROM bb:1\nCOPY d /d\nENV E=1\n");
    let c = ctx.to_str().unwrap();
    let (_, err) = build_ok(&s, &["-t", "o:1", c]);
    let id = s.ok(&["images", "-q", "--no-trunc", "o:1"]).trim().to_string();
    assert!(err.contains("] FROM docker.io/library/bb:1\n") && err.contains("[2/2] COPY d /d\n"), "{err}");
    let done = err.lines().filter(|l| l.starts_with('#') && l.contains(" DONE ") && l.ends_with('s')).count();
    assert!(done >= 4, "each step's time: {err}");
    assert!(err.contains(&format!("writing image {id} done")), "{err}");
    assert!(err.contains("naming to docker.io/library/o:1 done"), "{err}");
    let (_, err) = build_ok(&s, &[c]);
    assert_eq!(cached_steps(&err), vec!["COPY d /d"], "{err}");

    // The key holds the owners the layer will have: from the context that is root whoever owns
    // the file (a hit, the same layer); from a stage, the stage's owners (a miss when they change).
    chown(ctx.join("d/x"), Some(1000), Some(1000)).unwrap();
    let (_, err) = build_ok(&s, &["-t", "o:2", c]);
    assert_eq!(cached_steps(&err), vec!["COPY d /d"], "{err}");
    assert_eq!(common::build::tree(&s, "o:2")["d/x"].2, 0, "COPY from the context chowns to root");
    chown(ctx.join("d/x"), Some(0), Some(0)).unwrap();
    dockerfile(&ctx, "FROM bb:1 AS first\nARG U\nCOPY --chown=$U d /d\nFROM bb:1\nCOPY --from=first /d /d\n");
    build_ok(&s, &["--build-arg", "U=0", c]);
    let (_, err) = build_ok(&s, &["--build-arg", "U=1000", "-t", "o:3", c]);
    assert!(!cached_steps(&err).contains(&"COPY --from=first /d /d".to_string()), "{err}");
    assert_eq!(common::build::tree(&s, "o:3")["d/x"].2, 1000);
    dockerfile(&ctx, "FROM bb:1\nCOPY d /d\nENV E=1\n");

    std::fs::write(ctx.join("d/z"), "").unwrap();
    let (_, err) = build_ok(&s, &[c]);
    assert!(cached_steps(&err).is_empty(), "a new name is in the key: {err}");
    std::fs::remove_file(ctx.join("d/z")).unwrap();
    let (out, err) = build_ok(&s, &["-q", c]);
    assert_eq!(id_of(&out), id, "{err}");

    let host = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("no test platform for {other}"),
    };
    build_ok(&s, &["--platform", host, c]);
    let other = if host == "linux/amd64" { "linux/s390x" } else { "linux/amd64" };
    let (code, err) = common::build::build_fails(&s, &["--platform", other, c]);
    assert_eq!(code, 1);
    assert!(err.contains(other) && err.contains("for this machine"), "{err}");
}

/// `system check` looks at the build cache: a record it can't read (or an older strata's) or
/// one naming a layer that is gone is a leftover (a miss for ever, not damage); --repair removes
/// it, and a sound record keeps what it names out of the leftovers.
#[test]
fn system_check_reports_stale_cache_records() {
    let s = Strata::new();
    common::run::busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("a", "a\n")]);
    dockerfile(&ctx, "FROM bb:1 AS first\nCOPY a /a\nFROM bb:1\nCOPY --from=first /a /b\n");
    build_ok(&s, &["-t", "r:1", ctx.to_str().unwrap()]);
    let check = |args: &[&str]| {
        let mut all = vec!["system", "check"];
        all.extend_from_slice(args);
        let out = s.run(&all);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, report) = check(&[]);
    assert!(ok && !report.contains("Leftovers"), "the first stage's layer is the cache's: {report}");
    let dir = s.root().join("builder/cache");
    let good = dir.read_dir().unwrap().next().unwrap().unwrap().path();
    let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let gone = format!("sha256:{}", "e".repeat(64));
    rec["layers"].as_array_mut().unwrap().last_mut().unwrap()["diff_id"] = gone.clone().into();
    std::fs::write(dir.join("1".repeat(64)), serde_json::to_vec(&rec).unwrap()).unwrap();
    std::fs::write(dir.join("2".repeat(64)), "not a record").unwrap();
    let (ok, report) = check(&[]);
    assert!(ok, "stale records are not damage: {report}");
    assert!(report.contains(&format!("names layer {gone}, which is missing")), "{report}");
    assert!(report.contains("unreadable or from an older strata"), "{report}");
    let (ok, report) = check(&["--repair"]);
    assert!(ok && report.matches("removed").count() >= 2, "{report}");
    assert!(!dir.join("1".repeat(64)).exists() && !dir.join("2".repeat(64)).exists() && good.exists());
    let (ok, report) = check(&[]);
    assert!(ok && !report.contains("Leftovers"), "{report}");
}
