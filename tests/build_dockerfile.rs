//! `strata build`: each Dockerfile instruction and rule, checked in the built image's config,
//! history and merged tree.

mod common;

use common::build::{build_fails, build_ok, build_with, config, context, dockerfile, tree, under};
use common::run::{busybox_image, runtime_ready};
use common::strata::Strata;
use serde_json::json;

#[test]
fn metadata_instructions_set_config_and_history() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &["CMD [\"sh\"]"]);
    let ctx = context(&s, "ctx", &[]);
    dockerfile(
        &ctx,
        r#"# syntax=docker/dockerfile:1
# escape=\
FROM bb:1
MAINTAINER Jane <jane@example.com>
ENV A=1 B="two words" \
    C=${A}c
ENV LEGACY some value
LABEL version="$A" "with space"=yes
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data", "/$A"]
USER app:app
WORKDIR /srv
WORKDIR sub
ENTRYPOINT ["/bin/sh", "-c"]
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
CMD echo $A
HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD wget -q localhost
ONBUILD COPY . /app
"#,
    );
    let (out, err) = build_ok(&s, &["-t", "meta:1", ctx.to_str().unwrap()]);
    assert_eq!(out, "", "the progress goes to stderr");
    assert!(err.contains("note: the `# syntax=docker/dockerfile:1` directive is ignored"), "{err}");
    assert!(err.contains("naming to docker.io/library/meta:1 done"), "{err}");
    let c = config(&s, "meta:1");
    let cfg = &c["config"];
    assert_eq!(c["author"], "Jane <jane@example.com>");
    // Docker: an ENV line substitutes with the values from before it (A was unset).
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert_eq!(cfg["Env"], json!([path, "A=1", "B=two words", "C=c", "LEGACY=some value"]));
    assert_eq!(cfg["Labels"], json!({"version": "1", "with space": "yes"}));
    assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}));
    assert_eq!(cfg["Volumes"], json!({"/data": {}, "/1": {}}));
    assert_eq!(cfg["User"], "app:app");
    assert_eq!(cfg["WorkingDir"], "/srv/sub");
    assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Shell"], json!(["/bin/sh", "-ec"]));
    // Shell form after SHELL: the new shell; the base's CMD was replaced.
    assert_eq!(cfg["Cmd"], json!(["/bin/sh", "-ec", "echo $A"]));
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 30_000_000_000i64, "Timeout": 90_000_000_000i64, "Retries": 3})
    );
    assert_eq!(cfg["OnBuild"], json!(["COPY . /app"]));
    // History: one entry per instruction after the base's; WORKDIR made directories (layers).
    let history = c["history"].as_array().unwrap();
    let ours: Vec<(String, bool)> = history[1..]
        .iter()
        .map(|h| (h["created_by"].as_str().unwrap().to_string(), h["empty_layer"].as_bool().unwrap_or(false)))
        .collect();
    let want: Vec<(&str, bool)> = vec![
        ("MAINTAINER Jane <jane@example.com>", true),
        ("ENV A=1 B=two words C=c", true),
        ("ENV LEGACY=some value", true),
        ("LABEL version=1 with space=yes", true),
        ("EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]", true),
        ("VOLUME [/data /1]", true),
        ("USER app:app", true),
        ("WORKDIR /srv", false),
        ("WORKDIR /srv/sub", false),
        ("ENTRYPOINT [\"/bin/sh\" \"-c\"]", true),
        ("STOPSIGNAL SIGINT", true),
        ("SHELL [/bin/sh -ec]", true),
        ("CMD [\"/bin/sh\" \"-ec\" \"echo $A\"]", true),
    ];
    let got: Vec<(&str, bool)> = ours.iter().take(want.len()).map(|(t, e)| (t.as_str(), *e)).collect();
    assert_eq!(got, want);
    assert_eq!(ours.len(), want.len() + 2, "HEALTHCHECK and ONBUILD too: {ours:?}");
    assert_eq!(history.iter().filter(|h| h["empty_layer"] != json!(true)).count(), 3);
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let t = tree(&s, "meta:1");
    assert_eq!(t["srv/sub"].0, 'd');
    // `strata history` reads the entries like Docker's.
    let h = s.ok(&["history", "--no-trunc", "meta:1"]);
    assert!(h.contains("WORKDIR /srv/sub") && h.contains("buildkit.dockerfile.v0"), "{h}");
}

#[test]
fn copy_and_add_follow_dockers_rules() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(
        &s,
        "ctx",
        &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("notes.md", "md\n"),
            ("README.md", "readme\n"),
            ("dir/x", "x\n"),
            ("dir/sub/y", "y\n"),
            ("dir/cache/z.log", "log\n"),
            ("secret/key", "k\n"),
            ("empty/", ""),
            (".dockerignore", "# comment\n*.md\n!README.md\nsecret\n**/*.log\n"),
        ],
    );
    // A tar.gz to ADD, made with the tar crate.
    let mut tb = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_gid(8);
    h.set_mtime(1_000_000);
    h.set_cksum();
    tb.append_data(&mut h, "in/tar.txt", &b"tar"[..]).unwrap();
    std::fs::write(ctx.join("arch.tar.gz"), tb.into_inner().unwrap().finish().unwrap()).unwrap();
    std::os::unix::fs::symlink("a.txt", ctx.join("link")).unwrap();
    std::fs::write(ctx.join("x.tar.xz"), [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0]).unwrap();
    dockerfile(
        &ctx,
        r#"FROM bb:1
COPY a.txt /file
COPY a.txt /existing/
COPY b.txt /etc
COPY dir /copied
COPY dir/ /slash/
COPY *.txt /globbed/
COPY *.md /docs/
COPY . /all/
COPY link /via-link
COPY --chown=app:extra --chmod=751 a.txt /owned
COPY --chown=1234 b.txt /numeric
COPY empty /emptycopy
COPY <<EOF <<-'LITERAL' /here/
x=${ARGX:-default}
EOF
	$HOME stays
	LITERAL
ADD arch.tar.gz /unpacked
ADD a.txt /added
WORKDIR /w
COPY a.txt relative
"#,
    );
    build_ok(&s, &["-t", "copy:1", ctx.to_str().unwrap()]);
    let t = tree(&s, "copy:1");
    let file = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing from {t:#?}")).clone();
    assert_eq!(file("file"), ('f', 0o644, 0, 0, "a\n".into()));
    assert_eq!(file("existing/a.txt").4, "a\n");
    assert_eq!(file("etc/b.txt").4, "b\n", "a file copied onto an existing directory lands inside it");
    assert_eq!(file("etc/passwd").0, 'f', "the directory keeps what it had");
    // dir/cache holds only an ignored file: the directory itself still comes, empty.
    assert_eq!(
        under(&t, "copied"),
        vec!["copied/cache", "copied/sub", "copied/sub/y", "copied/x"],
        "contents"
    );
    assert_eq!(under(&t, "slash"), vec!["slash/cache", "slash/sub", "slash/sub/y", "slash/x"]);
    assert_eq!(under(&t, "globbed"), vec!["globbed/a.txt", "globbed/b.txt"]);
    assert_eq!(under(&t, "docs"), vec!["docs/README.md"], ".dockerignore: *.md out, !README.md back");
    let all = under(&t, "all");
    for absent in ["all/notes.md", "all/secret", "all/secret/key", "all/dir/cache/z.log"] {
        assert!(!all.contains(&absent.to_string()), "{absent} should be ignored: {all:?}");
    }
    for present in
        ["all/README.md", "all/dir/cache", "all/a.txt", "all/arch.tar.gz", "all/Dockerfile", "all/link"]
    {
        assert!(all.contains(&present.to_string()), "{present} missing: {all:?}");
    }
    assert_eq!(
        file("all/link"),
        ('l', 0o777, 0, 0, "a.txt".into()),
        "inside a directory a link stays a link"
    );
    assert_eq!(file("via-link"), ('f', 0o644, 0, 0, "a\n".into()), "a source that is a link is followed");
    assert_eq!(file("owned"), ('f', 0o751, 1000, 2000, "a\n".into()));
    assert_eq!(file("numeric"), ('f', 0o644, 1234, 1234, "b\n".into()));
    assert_eq!(file("emptycopy").0, 'd');
    assert_eq!(file("here/EOF"), ('f', 0o644, 0, 0, "x=default\n".into()));
    assert_eq!(file("here/LITERAL").4, "$HOME stays\n", "quoted delimiter: no expansion, tabs stripped");
    assert_eq!(file("unpacked/in/tar.txt"), ('f', 0o640, 7, 8, "tar".into()), "ADD unpacks, keeping owners");
    assert_eq!(file("added").4, "a\n", "a plain file is copied as is");
    assert_eq!(file("w/relative").4, "a\n", "a relative destination is under WORKDIR");
    // Errors: a missing source, several sources into a non-directory, remote ADD, escaping `..`.
    for (df, want) in [
        ("FROM bb:1\nCOPY nosuch /x\n", "Dockerfile:2: COPY"),
        ("FROM bb:1\nCOPY a.txt b.txt /notadir\n", "must be a directory"),
        ("FROM bb:1\nADD http://127.0.0.1:1/x /x\n", "remote URLs are not supported"),
        ("FROM bb:1\nCOPY ../x /x\n", "outside of the build context"),
        ("FROM bb:1\nCOPY secret/key /k\n", "not found"),
        ("FROM bb:1\nADD x.tar.xz /x\n", "xz or bzip2 archives is not supported"),
    ] {
        dockerfile(&ctx, df);
        let (code, err) = build_fails(&s, &[ctx.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains(want), "{df}: want {want:?} in {err}");
    }
}

#[test]
fn multi_stage_by_name_and_index_with_target() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("a", "from a\n"), ("b", "from b\n")]);
    dockerfile(
        &ctx,
        r#"ARG BASE=bb:1
FROM ${BASE} AS one
COPY a /a
FROM one AS two
COPY b /b
FROM bb:1 AS unused
COPY a /never
FROM scratch
COPY --from=two /a /b /
COPY --from=0 /a /again
COPY --from=bb:1 /etc/passwd /passwd
"#,
    );
    let (_, err) = build_ok(&s, &["-t", "ms:1", ctx.to_str().unwrap()]);
    assert!(!err.contains("[unused"), "an unneeded stage is not built:\n{err}");
    assert!(err.contains("[stage-3 2/4] COPY --from=two /a /b /"), "{err}");
    let t = tree(&s, "ms:1");
    assert_eq!(t.keys().cloned().collect::<Vec<_>>(), vec!["a", "again", "b", "passwd"]);
    assert_eq!(t["b"].4, "from b\n");
    let c = config(&s, "ms:1");
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "scratch: only its own layers");
    // --target: that stage and what it needs.
    let (_, err) = build_ok(&s, &["--target", "two", "-t", "two:1", ctx.to_str().unwrap()]);
    assert!(err.contains("[one 2/2] COPY a /a") && err.contains("[two 2/2] COPY b /b"), "{err}");
    assert!(!err.contains("stage-3") && !err.contains("[unused"), "{err}");
    assert_eq!(under(&tree(&s, "two:1"), "").len(), 0);
    assert!(tree(&s, "two:1").contains_key("b"));
    let (_, err) = build_fails(&s, &["--target", "nosuch", ctx.to_str().unwrap()]);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn build_args_and_scoping() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &["ENV FROMBASE=base"]);
    let ctx = context(&s, "ctx", &[]);
    dockerfile(
        &ctx,
        r#"ARG TAG=1
ARG GLOBAL=global
FROM bb:$TAG
LABEL global-unseen="${GLOBAL:-unset}"
ARG GLOBAL
ARG WITHDEFAULT=dflt
ARG OVERRIDDEN=dflt
ARG NOVALUE
ENV OVERRIDDEN=env-wins
LABEL global=$GLOBAL withdefault=$WITHDEFAULT overridden=$OVERRIDDEN \
      novalue="${NOVALUE:-empty}" alt="${WITHDEFAULT:+set}" base=$FROMBASE arch=$TARGETARCH
ARG TARGETARCH
LABEL arch2=$TARGETARCH
"#,
    );
    let out = build_with(
        &s,
        &[
            "-t",
            "args:1",
            "--build-arg",
            "OVERRIDDEN=cli",
            "--build-arg",
            "UNUSED=1",
            "--build-arg",
            "HTTP_PROXY=http://p:1",
            ctx.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("build-arg UNUSED was not consumed"), "{err}");
    assert!(!err.contains("HTTP_PROXY was not consumed"), "a predefined arg: {err}");
    let labels = config(&s, "args:1")["config"]["Labels"].clone();
    assert_eq!(
        labels,
        json!({
            "global-unseen": "unset",
            "global": "global",
            "withdefault": "dflt",
            "overridden": "env-wins",
            "novalue": "empty",
            "alt": "set",
            "base": "base",
            "arch": "",
            "arch2": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        })
    );
    let history = config(&s, "args:1")["history"].to_string();
    assert!(!history.contains("HTTP_PROXY") && !history.contains("p:1"), "proxies stay out of history");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("payload", "p\n")]);
    dockerfile(&ctx, "FROM bb:1\nONBUILD COPY payload /from-trigger\nONBUILD LABEL triggered=yes\n");
    build_ok(&s, &["-t", "parent:1", ctx.to_str().unwrap()]);
    assert!(!tree(&s, "parent:1").contains_key("from-trigger"), "stored, not run");
    assert_eq!(config(&s, "parent:1")["config"]["OnBuild"].as_array().unwrap().len(), 2);
    dockerfile(&ctx, "FROM parent:1\nLABEL own=1\n");
    let (_, err) = build_ok(&s, &["-t", "child:1", ctx.to_str().unwrap()]);
    assert!(err.contains("COPY payload /from-trigger"), "{err}");
    assert_eq!(tree(&s, "child:1")["from-trigger"].4, "p\n");
    let c = config(&s, "child:1");
    assert_eq!(c["config"]["Labels"], json!({"triggered": "yes", "own": "1"}));
    assert!(c["config"]["OnBuild"].is_null(), "triggers fire once: {}", c["config"]);
    dockerfile(&ctx, "FROM bb:1\nONBUILD FROM x\n");
    let (_, err) = build_fails(&s, &[ctx.to_str().unwrap()]);
    assert!(err.contains("Dockerfile:2") && err.contains("ONBUILD"), "{err}");
}

#[test]
fn errors_name_file_and_line() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[]);
    let before = s.snapshot();
    for (df, want) in [
        ("FROM bb:1\n\nFOO bar\n", "Dockerfile:3: unknown instruction: FOO"),
        ("LABEL a=b\nFROM bb:1\n", "Dockerfile:1: LABEL before the first FROM"),
        ("FROM bb:1\nRUN <<EOF\necho\n", "Dockerfile:2: RUN: heredoc <<EOF is never closed"),
        ("FROM bb:1\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
        ("FROM bb:1\nEXPOSE http\n", "Dockerfile:2: EXPOSE invalid port"),
        ("FROM bb:1\nCOPY --bogus=1 a /a\n", "Dockerfile:2: COPY unknown flag: --bogus"),
        ("FROM nosuch.invalid/x:1\n", "nosuch.invalid/x:1"),
        ("# escape=x\nFROM bb:1\n", "Dockerfile:1: invalid escape token"),
    ] {
        dockerfile(&ctx, df);
        let (code, err) = build_fails(&s, &[ctx.to_str().unwrap()]);
        assert_eq!(code, 1, "{df}");
        assert!(err.contains(want), "{df:?}: want {want:?} in\n{err}");
    }
    let after = s.snapshot();
    let new: Vec<_> =
        after.keys().filter(|k| !before.contains_key(*k) && !k.starts_with("builder")).collect();
    assert!(new.iter().all(|k| !k.starts_with("images/") || k.ends_with(".json")), "{new:?}");
    assert!(s.ok(&["images", "-q"]).lines().count() == 1, "no image was named");
}

#[test]
fn quiet_iidfile_and_stdin_contexts() {
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("f", "from the tar\n")]);
    dockerfile(&ctx, "FROM bb:1\nCOPY f /f\n");
    let iid = s.path("iid");
    let (out, err) =
        build_ok(&s, &["-q", "--iidfile", iid.to_str().unwrap(), "-t", "q:1", ctx.to_str().unwrap()]);
    assert_eq!(err, "", "-q prints nothing but the id");
    let id = out.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    assert_eq!(s.ok(&["images", "-q", "--no-trunc", "q:1"]).trim(), id);
    // The context as a tar on stdin.
    let tar = s.path("ctx.tar");
    common::strata::tar_dir(&ctx, &tar, "gzip");
    let out = build_with(&s, &["-q", "-t", "fromtar:1", "-"], &[], Some(&std::fs::read(&tar).unwrap()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tree(&s, "fromtar:1")["f"].4, "from the tar\n");
    // The Dockerfile alone on stdin (no context).
    let out = build_with(&s, &["-q", "-t", "alone:1", "-"], &[], Some(b"FROM bb:1\nLABEL alone=yes\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(config(&s, "alone:1")["config"]["Labels"]["alone"], "yes");
    // -f - with a directory context; --label on the final image.
    let out = build_with(
        &s,
        &["-q", "-f", "-", "--label", "extra=1", "-t", "df:1", ctx.to_str().unwrap()],
        &[],
        Some(b"FROM bb:1\nCOPY f /g\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tree(&s, "df:1")["g"].4, "from the tar\n");
    assert_eq!(config(&s, "df:1")["config"]["Labels"]["extra"], "1");
}

#[test]
fn run_steps_use_the_container_runtime() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("bound/file", "bound\n")]);
    dockerfile(
        &ctx,
        r#"FROM bb:1
ARG WHO=world
ENV GREETING=hello
RUN echo "$GREETING $WHO" > /greeting && rm /etc/motd && mkdir -p /made/deep
RUN ["/bin/sh", "-c", "echo exec > /exec"]
RUN <<EOF
#!/bin/cat
this line is printed by cat, not run by sh
EOF
RUN <<EOF
echo line one > /heredoc
echo line two >> /heredoc
EOF
SHELL ["/bin/sh", "-ec"]
RUN echo $0 $- > /shell-flags
RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count
RUN --mount=type=bind,source=bound,target=/b cat /b/file > /from-bind
RUN --network=none ip -o link | wc -l > /links
USER app
RUN id -u > /tmp/uid; echo out; echo err >&2
RUN true
"#,
    );
    let (_, err) = build_ok(&s, &["-t", "run:1", ctx.to_str().unwrap()]);
    assert!(err.contains(" out\n") && err.contains(" err\n"), "RUN output streamed with its step: {err}");
    assert!(
        err.contains(" this line is printed by cat, not run by sh\n"),
        "a #! heredoc runs its interpreter: {err}"
    );
    let t = tree(&s, "run:1");
    assert_eq!(t["greeting"].4, "hello world\n");
    assert!(!t.contains_key("etc/motd"), "a deletion is a whiteout in the layer");
    assert_eq!(t["made/deep"].0, 'd');
    assert_eq!(t["exec"].4, "exec\n");
    assert!(!t.keys().any(|k| k.starts_with("dev")), "mount targets stay out of the layers: {t:?}");
    assert_eq!(t["heredoc"].4, "line one\nline two\n");
    assert_eq!(t["shell-flags"].4.split_whitespace().next(), Some("/bin/sh"));
    assert!(t["shell-flags"].4.contains('e'), "SHELL flags used: {:?}", t["shell-flags"]);
    assert_eq!(t["cache-count"].4, "1\n");
    assert!(!t.contains_key("cache/log"), "a cache mount is not in the image");
    assert_eq!(t["from-bind"].4, "bound\n");
    assert_eq!(t["links"].4, "1\n", "--network=none: loopback only");
    assert_eq!(t["tmp/uid"].4, "1000\n");
    let c = config(&s, "run:1");
    let runs: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .filter(|c| c.starts_with("RUN"))
        .collect();
    assert_eq!(
        runs[0],
        "RUN |1 WHO=world /bin/sh -c echo \"$GREETING $WHO\" > /greeting && rm /etc/motd && mkdir -p /made/deep # buildkit"
    );
    let last = c["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["empty_layer"], json!(true), "RUN true changes nothing: {last}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "", "no container is left");
    // A relative --root works too (the runtime's bundle needs absolute store paths).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(s.dir.path())
        .args(["--root", "store", "build", "-q", "--no-cache", "-t", "rel:1", ctx.to_str().unwrap()])
        .env_remove("STRATA_ROOT")
        .output()
        .unwrap();
    assert!(out.status.success(), "relative root: {}", String::from_utf8_lossy(&out.stderr));
    // The cache mount persists: a rebuild without the cache sees the earlier runs' log.
    let (_, _) = build_ok(&s, &["--no-cache", "-t", "run:2", ctx.to_str().unwrap()]);
    assert_eq!(tree(&s, "run:2")["cache-count"].4, "3\n");
}

#[test]
fn a_failing_run_leaves_no_image_and_no_container() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("a", "a\n")]);
    dockerfile(&ctx, "FROM bb:1\nCOPY a /a\nRUN echo partial > /partial; exit 3\nRUN echo never\n");
    let (code, err) = build_fails(&s, &["-t", "fail:1", ctx.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("process \"/bin/sh -c echo partial > /partial; exit 3\" did not complete successfully: exit code: 3"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(!err.contains("never"), "later steps do not run: {err}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(s.run(&["inspect", "fail:1"]).status.code() != Some(0));
    assert_eq!(s.ok(&["images", "-a", "-q"]).lines().count(), 1, "no image but the base");
    // A command that cannot start: 127.
    dockerfile(&ctx, "FROM bb:1\nCOPY a /a\nRUN [\"/nosuch\"]\n");
    let (_, err) = build_fails(&s, &["-t", "fail:1", ctx.to_str().unwrap()]);
    assert!(err.contains("exit code: 127"), "{err}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(s.ok(&["images", "-a", "-q"]).lines().count(), 1, "no image but the base");
    // The steps before the failure stay cached.
    dockerfile(&ctx, "FROM bb:1\nCOPY a /a\nRUN echo fixed > /fixed\n");
    let (_, err) = build_ok(&s, &["-t", "fail:1", ctx.to_str().unwrap()]);
    assert_eq!(common::build::cached_steps(&err), vec!["COPY a /a"], "{err}");
}

/// A RUN step's layer is made by moving the files of its (discarded) upper dir into the layer
/// tree instead of writing them again: the tree must still be exactly the unpack of the layer's
/// blob (new, changed and deleted files, opaque dirs, long-name whiteouts, symlinks, hard links,
/// owners, setuid), the store must check clean, and nothing of the container may be left.
#[test]
fn run_layers_equal_the_unpack_of_their_blobs() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[]);
    let long = "l".repeat(253);
    dockerfile(
        &ctx,
        &format!(
            r#"FROM bb:1
RUN mkdir -p /d/sub /opq/old && echo keep > /d/keep && echo gone > /d/gone && echo x > /opq/old/f \
 && echo long > /d/{long} && echo changed > /d/change && dd if=/dev/zero of=/d/big bs=1k count=300 2>/dev/null
RUN echo new > /d/sub/new && echo changed again >> /d/change && rm /d/gone /d/{long} /etc/motd \
 && rm -rf /opq && mkdir /opq && echo fresh > /opq/fresh && ln -s ../d/keep /d/link \
 && echo linked > /d/a && ln /d/a /d/b && echo suid > /d/suid && chmod 4750 /d/suid \
 && echo owned > /d/owned && chown 1000:1000 /d/owned && chmod 600 /d/owned && touch /d/empty \
 && mkdir /d/emptydir && mkfifo /d/fifo
"#
        ),
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let out =
        build_with(&s, &["--log-level", "info", "-q", "-t", "moved:1", ctx.to_str().unwrap()], &epoch, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The files were moved, not written again: the regular files with one link (first RUN: keep
    // gone f long change big; second: new change suid owned empty fresh and the opaque marker
    // of /opq, not a and b (two links) nor the whiteouts (links of one file in the container's
    // work dir).
    let moved: Vec<&str> = err.lines().filter(|l| l.contains(" entries moved from ")).collect();
    assert_eq!(moved.len(), 2, "{err}");
    assert!(moved[0].contains(": 6 of "), "{moved:?}");
    assert!(moved[1].contains(": 7 of "), "{moved:?}");

    let t = tree(&s, "moved:1");
    assert_eq!(t["d/change"].4, "changed\nchanged again\n");
    assert_eq!(t["d/keep"].4, "keep\n");
    assert!(
        !t.contains_key("d/gone") && !t.contains_key(&format!("d/{long}")) && !t.contains_key("etc/motd")
    );
    assert!(!t.contains_key("opq/old"), "the recreated dir is opaque: {:?}", under(&t, "opq"));
    assert_eq!(t["opq/fresh"].4, "fresh\n");

    // Every layer tree of the store against a fresh unpack of its blob.
    let root = s.root();
    let layers: Vec<String> = std::fs::read_dir(root.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut compared = 0;
    for blob in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap().path();
        let fresh = s.path(&format!("fresh-{compared}"));
        std::fs::create_dir(&fresh).unwrap();
        let Ok(unpacked) = strata::layer::unpack(std::fs::File::open(&blob).unwrap(), &fresh, None) else {
            std::fs::remove_dir_all(&fresh).unwrap();
            continue; // a config or a manifest
        };
        let hex = unpacked.diff_id.hex().to_string();
        assert!(layers.contains(&hex), "blob {} has a layer", blob.display());
        common::tree::assert_same_tree(&fresh, &root.join("layers").join(&hex).join("fs"));
        compared += 1;
    }
    assert_eq!(compared, 3, "the base layer and two RUN layers");
    let diff_ids = common::build::config(&s, "moved:1")["rootfs"]["diff_ids"].clone();
    let last = diff_ids[2].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let fs = root.join("layers").join(last).join("fs");
    assert!(fs.join("opq/.wh..wh..opq").is_file(), "the opaque marker is in the layer");
    let long_whiteout = std::fs::symlink_metadata(fs.join("d").join(&long)).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&long_whiteout.file_type()));
    assert!(fs.join("etc/.wh.motd").is_file());
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "", "no container is left");
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("container"))
        .collect();
    assert!(tmp.is_empty(), "the container's directory is gone: {tmp:?}");
}

/// A build killed while a RUN step's layer is being made from its container's upper (the
/// container already moved to `tmp/`, its files being moved into a staged layer) leaves nothing
/// behind: no container, a store that checks clean once the next writer ran, and the same build
/// succeeds.
#[test]
fn a_build_killed_while_moving_a_run_layer_leaves_a_clean_store() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[]);
    dockerfile(
        &ctx,
        "FROM bb:1\nRUN mkdir /many && cd /many && i=0; while [ $i -lt 1000 ]; do echo $i > f$i; i=$((i+1)); done\n",
    );
    let tmp = s.root().join("tmp");
    let mut child = s
        .command(&["build", "-q", "-t", "killed:1", ctx.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut caught = false;
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let detached = std::fs::read_dir(&tmp)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("removed-container-")))
            .unwrap_or(false);
        if detached {
            child.kill().unwrap();
            caught = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    child.wait().unwrap();
    assert!(caught, "the build was killed while its RUN layer was being made");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "", "no container is left");
    let (_, _) = build_ok(&s, &["-t", "killed:1", ctx.to_str().unwrap()]);
    assert_eq!(tree(&s, "killed:1")["many/f999"].4, "999\n");
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("container")), "{left:?}");
}

/// Processes (other than zombies) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.contains(") Z"));
        if cmd.contains(needle) && !zombie {
            out.push(format!("{name}: {cmd}"));
        }
    }
    out
}

/// Ctrl-C (SIGINT to the build's process group, as a terminal sends it) or SIGTERM to strata
/// while a RUN step runs cancels the build as BuildKit does: exit status 128 + the signal, the
/// step shown CANCELED, and nothing left: no container, no mount, no process, no runtime state,
/// no partial image or cache entry; the store checks clean and a rebuild reuses the steps
/// before the RUN.
#[test]
fn a_signal_during_run_cancels_the_build_and_leaves_nothing() {
    if !runtime_ready("runc") {
        return;
    }
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let ctx = context(&s, "ctx", &[("a", "a\n")]);
    let root = s.root().to_string_lossy().into_owned();
    // A sleep no other test (or another copy of this one) runs, to look for among all processes.
    let sleep = format!("sleep {}", 40_000 + std::process::id() % 20_000);
    for (signal, to_group) in [(nix::sys::signal::SIGINT, true), (nix::sys::signal::SIGTERM, false)] {
        dockerfile(
            &ctx,
            &format!("FROM bb:1\nCOPY a /a\nRUN echo started; echo partial > /partial; {sleep}\n"),
        );
        let images_before = s.ok(&["images", "-a", "-q", "--no-trunc"]);
        let mut child = s
            .command(&["build", "--progress", "plain", "-t", "cancelled:1", ctx.to_str().unwrap()])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if line.ends_with(" started") {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let started = rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok();
        let target = nix::unistd::Pid::from_raw(if to_group { -pid } else { pid });
        if started {
            nix::sys::signal::kill(target, signal).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let err = reader.join().unwrap();
        assert!(started, "the RUN step started: {err}");
        let status = status.unwrap_or_else(|| panic!("{signal}: the build did not end within 30 s: {err}"));
        assert_eq!(status.code(), Some(128 + signal as i32), "{signal}: {err}");
        assert!(err.contains(" CANCELED\n"), "{signal}: the step shows CANCELED: {err}");
        assert!(err.contains("ERROR: failed to solve: Canceled: context canceled"), "{err}");
        assert_eq!(s.ok(&["ps", "-a", "-q"]), "", "{signal}: no container is left");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&root), "{signal}: a mount is left: {mounts}");
        let left = processes_with(&root);
        assert!(left.is_empty(), "{signal}: processes of this store are left: {left:?}");
        let sleeping = processes_with(&sleep);
        assert!(sleeping.is_empty(), "{signal}: the RUN's process is left: {sleeping:?}");
        let runtime_state: Vec<_> = std::fs::read_dir(s.root().join("runtime/runc"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(runtime_state.is_empty(), "{signal}: runc state is left: {runtime_state:?}");
        assert!(s.run(&["inspect", "cancelled:1"]).status.code() != Some(0), "no image is tagged");
        let check = s.run(&["system", "check"]);
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success() && !report.contains("Leftovers"), "{signal}: {report}");
        assert_eq!(s.ok(&["images", "-a", "-q", "--no-trunc"]), images_before, "{signal}: no image is left");
        let records = s.root().join("builder/cache").read_dir().unwrap().count();
        assert_eq!(records, 1, "{signal}: the COPY's cache record only, none for the RUN");
    }
    // The steps before the RUN stay cached; the RUN runs again.
    dockerfile(&ctx, "FROM bb:1\nCOPY a /a\nRUN echo done > /done\n");
    let (_, err) = build_ok(&s, &["-t", "cancelled:1", ctx.to_str().unwrap()]);
    assert_eq!(common::build::cached_steps(&err), vec!["COPY a /a"], "{err}");
    let t = tree(&s, "cancelled:1");
    assert!(t.contains_key("done") && !t.contains_key("partial"), "{:?}", t.keys().collect::<Vec<_>>());
}

/// A real package manager in a RUN step, offline: a debootstrap'd Debian base (minbase; the
/// rootfs tar in STRATA_DEBIAN_ROOTFS, as `scripts/bench.sh` caches it in
/// /var/cache/strata-bench/debian-rootfs.tar) installs a .deb made here from the context with
/// `apt-get install ./file.deb`, then `dpkg -r` removes another. Kept out of CI (it needs the
/// 200 MB rootfs): `STRATA_DEBIAN_ROOTFS=… cargo nextest run --test build_dockerfile --run-ignored all -E 'test(debian)'`.
#[test]
#[ignore = "needs a debootstrap'd Debian rootfs tar in STRATA_DEBIAN_ROOTFS"]
fn debian_base_installs_a_local_deb_with_apt() {
    assert!(runtime_ready("runc"), "runc is needed");
    let tar = std::env::var("STRATA_DEBIAN_ROOTFS").expect("STRATA_DEBIAN_ROOTFS: a Debian rootfs tar");
    let s = Strata::new();
    s.ok(&["import", &tar, "debian:local"]);
    let ctx = context(&s, "ctx", &[]);
    for (name, script) in [("strata-hello", "echo hello from a package"), ("strata-gone", "true")] {
        let pkg = s.path(name);
        std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
        std::fs::write(
            pkg.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: strata tests <t@example.com>\nDescription: test package\n"
            ),
        )
        .unwrap();
        let bin = pkg.join("usr/bin").join(name);
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(ctx.join(format!("{name}.deb")))
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&out.stderr));
    }
    dockerfile(
        &ctx,
        "FROM debian:local\nCOPY *.deb /tmp/debs/\n\
         RUN apt-get install -y /tmp/debs/strata-hello.deb /tmp/debs/strata-gone.deb && rm -r /tmp/debs\n\
         RUN dpkg -r strata-gone && strata-hello > /hello.txt\n",
    );
    let (_, err) = build_ok(&s, &["-t", "deb:1", ctx.to_str().unwrap()]);
    let t = tree(&s, "deb:1");
    assert_eq!(t["hello.txt"].4, "hello from a package\n", "{err}");
    assert_eq!(t["usr/bin/strata-hello"].1, 0o755);
    assert!(
        !t.contains_key("usr/bin/strata-gone") && !t.contains_key("tmp/debs"),
        "removed in a later layer"
    );
    let status = &t["var/lib/dpkg/status"].4;
    assert!(status.contains("Package: strata-hello\nStatus: install ok installed"), "dpkg's database");
    assert!(!status.contains("Package: strata-gone\nStatus: install ok installed"));
    let check = s.run(&["system", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
