//! The same Dockerfile and context through `buildah bud` and `strata build`: the same merged tree
//! and the same config; the strata image saved as an OCI layout is accepted by skopeo and umoci,
//! and runc runs the bundle umoci makes of it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::build::{build_ok, config, context, dockerfile};
use common::images::run;
use common::run::{busybox_rootfs, runtime_ready};
use common::strata::{Strata, tar_dir};
use serde_json::Value;

fn tool_ready(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").map(|v| v != "true").unwrap_or(true), "CI=true: {tool} is not installed");
        eprintln!("skipping: needs {tool}");
    }
    found
}

const DOCKERFILE: &str = r#"ARG BASE
FROM $BASE
ENV A=1 B="two words"
LABEL version="1" maint=me
WORKDIR /app
COPY a ./
COPY dir /copied
COPY --chown=1000:1000 --chmod=640 a /owned
COPY *.txt /texts/
RUN echo run > /run.txt && mkdir -p /newdir/deep && rm /etc/motd && ln -s /run.txt /link
EXPOSE 80/tcp 53/udp
VOLUME /data
USER app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD true
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi from $A"]
"#;

/// Paths buildah's RUN leaves as mountpoints in its layers (BuildKit and strata leave none).
const BUILDAH_STUBS: &[&str] = &["dev", "proc", "sys", "run", "etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// Type, mode, owner, size, content and link target of every entry (mtimes differ by design).
fn facts(root: &Path) -> BTreeMap<String, String> {
    common::tree::walk(root)
        .into_iter()
        .filter(|(p, _)| !p.is_empty())
        .map(|(p, e)| {
            (
                p,
                format!(
                    "{} {:o} {}:{} {} {:?} {:?} {:?}",
                    e.kind, e.mode, e.uid, e.gid, e.size, e.sha256, e.link, e.xattrs
                ),
            )
        })
        .collect()
}

#[test]
fn buildah_and_strata_build_the_same_image() {
    if !runtime_ready("runc") || !tool_ready("buildah") || !tool_ready("umoci") || !tool_ready("skopeo") {
        return;
    }
    let s = Strata::new();
    let rootfs = s.path("rootfs");
    busybox_rootfs(&rootfs);
    let base_tar = s.path("base.tar");
    tar_dir(&rootfs, &base_tar, "plain");
    s.ok(&["import", base_tar.to_str().unwrap(), "bb:1"]);
    let ctx = context(
        &s,
        "ctx",
        &[
            ("a", "a\n"),
            ("dir/x", "x\n"),
            ("dir/sub/y", "y\n"),
            ("one.txt", "1\n"),
            ("two.txt", "2\n"),
            ("skip.log", "no\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    dockerfile(&ctx, DOCKERFILE);
    build_ok(&s, &["-t", "built:1", "--build-arg", "BASE=bb:1", ctx.to_str().unwrap()]);

    // buildah, from the same base image (saved by strata), isolated in its own storage.
    let archive = s.path("bb.tar");
    s.ok(&["save", "--format", "oci-archive", "-o", archive.to_str().unwrap(), "bb:1"]);
    let (broot, brun) = (s.path("buildah-root"), s.path("buildah-run"));
    let buildah = |args: &[&str]| {
        let mut all = vec![
            "--root",
            broot.to_str().unwrap(),
            "--runroot",
            brun.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("buildah", &all)
    };
    let base_arg = format!("BASE=oci-archive:{}", archive.display());
    buildah(&[
        "bud",
        "--format",
        "docker",
        "--isolation",
        "chroot",
        "--build-arg",
        &base_arg,
        "-t",
        "peer",
        ctx.to_str().unwrap(),
    ]);
    let blayout = s.path("buildah-layout");
    buildah(&["push", "peer", &format!("oci:{}:t", blayout.display())]);
    let inspected: Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", "peer"])).unwrap();
    let peer_cfg = &inspected["Docker"]["config"];

    // strata's image out as an OCI layout: skopeo reads it, umoci unpacks it.
    let slayout = s.path("strata-layout");
    s.ok(&["save", "--format", "oci-dir", "-o", slayout.to_str().unwrap(), "built:1"]);
    let sref = format!("oci:{}:1", slayout.display());
    let inspect: Value = serde_json::from_str(&common::images::skopeo(&["inspect", &sref])).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 7, "base, WORKDIR, 4 COPY, RUN: {inspect}");
    let work = s.path("unpacked");
    std::fs::create_dir_all(&work).unwrap();
    let ours = common::images::umoci_unpack(&format!("{}:1", slayout.display()), &work, "strata");
    let theirs = common::images::umoci_unpack(&format!("{}:t", blayout.display()), &work, "buildah");

    let mut want = facts(&theirs);
    want.retain(|p, _| !BUILDAH_STUBS.contains(&p.as_str()));
    common::tree::assert_same_maps("strata's tree differs from buildah's", &want, &facts(&ours));

    let c = config(&s, "built:1");
    let ours_cfg = &c["config"];
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "Healthcheck",
    ] {
        assert_eq!(ours_cfg[field], peer_cfg[field], "config {field}");
    }
    let mut peer_labels = peer_cfg["Labels"].clone();
    peer_labels.as_object_mut().unwrap().remove("io.buildah.version");
    assert_eq!(ours_cfg["Labels"], peer_labels);

    // runc runs what umoci unpacked (the image's entrypoint, cmd, user and workdir).
    let bundle = work.join("strata");
    let spec_path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = format!("strata-build-interop-{}", std::process::id());
    let out = Command::new("runc").args(["run", "--bundle"]).arg(&bundle).arg(&id).output().unwrap();
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(out.status.success(), "runc: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from 1\n");
}
