//! `strata run` through the CLI with real runc on the FUSE union mount: Docker's exit codes, the
//! process spec from the image and from flags, mounts, capabilities, networks, and what the
//! process writes ending up in the writable layer, in `diff` and in a commit that runs.

mod common;

use common::run::{Cleanup, busybox_image, run_code, runtime_ready};
use common::strata::Strata;
use std::process::Command;

fn setup() -> Option<Strata> {
    runtime_ready("runc").then(Strata::new)
}

#[test]
fn exit_codes_are_dockers() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &["CMD [\"echo\", \"from cmd\"]"]);
    assert_eq!(run_code(&s, &["run", "--rm", "bb:1"], 0), "from cmd\n");
    run_code(&s, &["run", "--rm", "bb:1", "sh", "-c", "exit 3"], 3);
    let o = s.run(&["run", "--rm", "bb:1", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("strata: error: ") && err.contains("nosuch"), "{err}");
    assert_eq!(err.lines().count(), 1, "one error line, not the runtime's too: {err}");
    assert!(o.stdout.is_empty());
    // not executable
    run_code(&s, &["run", "--rm", "bb:1", "/etc/motd"], 126);
    // strata's own failures
    run_code(&s, &["run", "--rm", "--pull", "never", "nosuch:1", "true"], 125);
    for (args, needle) in [
        (&["run", "--rm", "-p", "80:80", "bb:1", "true"][..], "--network host"),
        (&["run", "--rm", "--network", "bridge", "bb:1", "true"][..], "--network host"),
        (&["run", "--rm", "-v", "/nonexistent-strata:/x", "bb:1", "true"][..], "does not exist"),
        (&["run", "--rm", "-u", "nosuchuser", "bb:1", "true"][..], "nosuchuser"),
        (&["run", "--rm", "--runtime", "nosuch-runtime", "bb:1", "true"][..], "nosuch-runtime"),
        (&["run", "--rm", "--cap-add", "BOGUS", "bb:1", "true"][..], "BOGUS"),
    ] {
        let o = s.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} expected in {err}");
    }
    // no runtime in PATH: the error names the Debian package
    let o = s.command(&["run", "--rm", "bb:1", "true"]).env("PATH", "/nonexistent").output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Debian package runc"), "{err}");
    // --rm leaves nothing, whatever the outcome (the directory is deleted in the background)
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(std::fs::read_dir(s.root().join("containers")).unwrap().count(), 0);
    common::run::eventually("tmp/ emptied", || std::fs::read_dir(s.root().join("tmp")).unwrap().count() == 0);
    // --rm runs of the image shared one init layer, which goes with the image
    let shared = s.root().join("runtime/init");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 1, "one shared init layer");
    s.ok(&["rmi", "bb:1"]);
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0, "the shared init layer outlived its image");
}

#[test]
fn everything_after_the_image_is_the_containers() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    busybox_image(&s, "ep:1", &["ENTRYPOINT [\"echo\"]"]);
    // As Docker: strata's flags end at the image; the rest goes to the entrypoint as they are.
    assert_eq!(
        run_code(&s, &["run", "--rm", "ep:1", "--name", "x", "--rm", "-d", "--help", "--"], 0),
        "--name x --rm -d --help --\n"
    );
    assert_eq!(run_code(&s, &["run", "--rm", "bb:1", "sh", "-c", "echo --name"], 0), "--name\n");
    let ls = run_code(&s, &["run", "--rm", "bb:1", "ls", "-l", "/etc/motd"], 0);
    assert!(ls.starts_with("-rw") && ls.contains("/etc/motd"), "{ls}");
    // create too: its name before the image, the command's flags after it
    s.ok(&["create", "--name", "web", "bb:1", "echo", "--name", "other", "-d"]);
    assert_eq!(run_code(&s, &["start", "-a", "web"], 0), "--name other -d\n");
    assert_eq!(s.ok(&["ps", "-a", "--format", "{{.Names}}"]), "web\n");
    // an unknown flag before the image is still strata's error
    let o = s.run(&["run", "--rm", "--nosuch", "bb:1"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--nosuch"), "{o:?}");
}

#[test]
fn env_workdir_and_user_come_from_the_image_and_the_flags() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &["ENV FOO=img BAR=keep", "WORKDIR /srv/app", "USER app"]);
    let script = "echo $FOO $BAR; pwd; id -u; id -g; id -G; echo $HOME; echo $PATH";
    let out = run_code(&s, &["run", "--rm", "bb:1", "sh", "-c", script], 0);
    assert_eq!(
        out,
        "img keep\n/srv/app\n1000\n1000\n1000 2000\n/home/app\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let env_file = s.path("env");
    std::fs::write(&env_file, "# comment\nFROMFILE=yes\nFOO=file\n").unwrap();
    let out = run_code(
        &s,
        &[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "FOO=flag",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "--hostname",
            "box",
            "bb:1",
            "sh",
            "-c",
            "echo $FOO $FROMFILE; pwd; id -u; hostname; echo $HOSTNAME",
        ],
        0,
    );
    assert_eq!(out, "flag yes\n/tmp\n65534\nbox\nbox\n");
    // name:group from the image's /etc/group; a numeric uid not in passwd gets gid 0
    assert_eq!(run_code(&s, &["run", "--rm", "-u", "app:extra", "bb:1", "id", "-G"], 0), "2000\n");
    assert_eq!(
        run_code(&s, &["run", "--rm", "-u", "4242", "bb:1", "sh", "-c", "id -u; id -g"], 0),
        "4242\n0\n"
    );
    // --entrypoint replaces the image's and drops its Cmd
    assert_eq!(run_code(&s, &["run", "--rm", "--entrypoint", "echo", "bb:1", "a", "b"], 0), "a b\n");
    // the working directory the image names was created out of the upper: no diff
    let id = run_code(&s, &["run", "-d", "bb:1", "true"], 0);
    let id = id.trim();
    s.ok(&["wait", id]);
    assert_eq!(s.ok(&["diff", id]), "");
}

#[test]
fn mounts_capabilities_and_networks() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let host = s.path("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from the host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let o = s.run(&["run", "--rm", "-v", &ro, "bb:1", "sh", "-c", "cat /data/in; echo x > /data/new"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from the host\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"), "{o:?}");
    assert!(!host.join("new").exists());
    let rw = format!("{}:/data", host.display());
    run_code(&s, &["run", "--rm", "-v", &rw, "bb:1", "sh", "-c", "echo x > /data/new"], 0);
    assert_eq!(std::fs::read_to_string(host.join("new")).unwrap(), "x\n");
    // inspect shows them as Docker does: Mounts, HostConfig.Binds and Tmpfs
    s.ok(&["create", "--name", "m", "-v", &ro, "--tmpfs", "/scratch", "bb:1", "true"]);
    let i: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "m"])).unwrap();
    let m = &i[0]["Mounts"];
    assert_eq!(m[0]["Type"], "bind", "{m}");
    assert_eq!(m[0]["Source"], host.to_str().unwrap());
    assert_eq!(
        (m[0]["Destination"].as_str(), m[0]["RW"].as_bool(), m[0]["Mode"].as_str()),
        (Some("/data"), Some(false), Some("ro"))
    );
    assert_eq!((m[1]["Type"].as_str(), m[1]["Destination"].as_str()), (Some("tmpfs"), Some("/scratch")));
    assert_eq!(i[0]["HostConfig"]["Binds"][0], ro.as_str());
    assert!(i[0]["HostConfig"]["Tmpfs"].get("/scratch").is_some(), "{}", i[0]["HostConfig"]);
    s.ok(&["rm", "m"]);
    // --tmpfs, --read-only
    let mounts = run_code(&s, &["run", "--rm", "--tmpfs", "/scratch", "bb:1", "cat", "/proc/mounts"], 0);
    assert!(mounts.lines().any(|l| l.starts_with("tmpfs /scratch tmpfs")), "{mounts}");
    let o = s.run(&["run", "--rm", "--read-only", "bb:1", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"), "{o:?}");
    // /dev, /proc and /sys as Docker sets them up
    let out = run_code(
        &s,
        &[
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "ls /dev/null /dev/zero /dev/urandom /dev/pts /dev/shm /dev/mqueue; wc -c < /proc/timer_list; echo x > /proc/sys/kernel/hostname || echo ro; touch /sys/x || echo sysro",
        ],
        0,
    );
    assert!(out.contains("/dev/null") && out.contains("/dev/urandom"), "{out}");
    assert!(out.contains("\n0\nro\nsysro\n"), "masked /proc/timer_list, read-only /proc/sys and /sys: {out}");
    // Docker's default capability set, --cap-drop ALL, --cap-add, --privileged
    let caps = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend(["bb:1", "sh", "-c", "grep CapEff /proc/self/status"]);
        run_code(&s, &args, 0).split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(caps(&[]), "00000000a80425fb");
    assert_eq!(caps(&["--cap-drop", "ALL"]), "0000000000000000");
    assert_eq!(caps(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]), "0000000000001000");
    assert_ne!(caps(&["--privileged"]), "00000000a80425fb");
    // --network none: loopback only; host: the host's interfaces
    let links = run_code(&s, &["run", "--rm", "--network", "none", "bb:1", "ls", "/sys/class/net"], 0);
    assert_eq!(links, "lo\n");
    let host_links = run_code(&s, &["run", "--rm", "bb:1", "ls", "/sys/class/net"], 0);
    let ours: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for l in ours {
        assert!(host_links.lines().any(|x| x == l), "{l} missing from {host_links}");
    }
    // --memory and --pids-limit set the cgroup limits
    let out = run_code(
        &s,
        &[
            "run",
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "bb:1",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
        ],
        0,
    );
    assert_eq!(out, format!("{}\n50\n", 64 << 20));
}

#[test]
fn writes_land_in_the_upper_and_a_commit_runs() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let out = run_code(
        &s,
        &[
            "run",
            "--name",
            "w",
            "bb:1",
            "sh",
            "-c",
            "echo data > /new; rm /etc/motd; mkdir -p /var/x; cat /etc/hosts /etc/hostname /etc/resolv.conf >/dev/null && grep -c localhost /etc/hosts",
        ],
        0,
    );
    assert!(out.trim().parse::<u32>().unwrap() >= 1, "{out}");
    assert_eq!(s.ok(&["diff", "w"]), "C /etc\nD /etc/motd\nA /new\nA /var\nA /var/x\n");
    let upper =
        s.root().join("containers").join(s.ok(&["ps", "-a", "-q", "--no-trunc"]).trim()).join("upper");
    for stub in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev"] {
        assert!(!upper.join(stub).exists(), "{stub} must not be in the upper");
    }
    s.ok(&["commit", "w", "bb:2"]);
    let committed = run_code(
        &s,
        &["run", "--rm", "bb:2", "sh", "-c", "cat /new; test -e /etc/motd || echo gone; ls -d /var/x"],
        0,
    );
    assert_eq!(committed, "data\ngone\n/var/x\n");
    // the container runs again with what it wrote
    assert_eq!(run_code(&s, &["start", "-a", "w"], 0), out);
    s.ok(&["rm", "w"]);
    // A relative --root: the runtime is given absolute paths (it took the rootfs relative to
    // the bundle: "invalid rootfs").
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(s.root().parent().unwrap())
        .args(["--root", "store", "run", "--rm", "bb:2", "cat", "/new"])
        .env_remove("STRATA_ROOT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "data\n", "{}", String::from_utf8_lossy(&o.stderr));
    // Both --rm runs of bb:2 used one init layer, made once and kept (none in the containers').
    let shared: Vec<_> =
        std::fs::read_dir(s.root().join("runtime/init")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
    for stub in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev"] {
        assert!(shared[0].join(stub).exists(), "{stub} not in the shared init layer");
    }
}

#[test]
fn two_containers_of_one_image_run_at_once() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let a = run_code(&s, &["run", "-d", "--name", "a", "bb:1", "sh", "-c", "echo a > /f; exec sleep 30"], 0);
    let b = run_code(&s, &["run", "-d", "--name", "b", "bb:1", "sh", "-c", "echo b > /f; exec sleep 30"], 0);
    assert_ne!(a, b);
    let ps = s.ok(&["ps"]);
    assert_eq!(ps.lines().filter(|l| l.contains("Up ")).count(), 2, "{ps}");
    common::run::eventually("both wrote", || {
        s.run(&["exec", "a", "cat", "/f"]).stdout == b"a\n"
            && s.run(&["exec", "b", "cat", "/f"]).stdout == b"b\n"
    });
    for (name, id) in [("a", &a), ("b", &b)] {
        let f = s.root().join("containers").join(id.trim()).join("upper/f");
        assert_eq!(std::fs::read_to_string(f).unwrap(), format!("{name}\n"));
    }
    s.ok(&["rm", "-f", "a", "b"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn stdin_init_logs_since_and_mount_of_a_running_container() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    // -i passes stdin on; without it the process reads nothing
    let mut child = s
        .command(&["run", "--rm", "-i", "bb:1", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, b"typed\n");
    assert_eq!(run_code(&s, &["run", "--rm", "bb:1", "cat"], 0), "");
    // --init: tini is the first process, the command its child
    if std::path::Path::new("/usr/bin/tini-static").exists() {
        assert_eq!(
            run_code(&s, &["run", "--name", "i", "--init", "bb:1", "cat", "/proc/1/comm"], 0),
            "docker-init\n"
        );
        // its mountpoint (/sbin/docker-init, through the image's sbin -> bin link) is no change
        assert_eq!(s.ok(&["diff", "i"]), "");
        s.ok(&["rm", "i"]);
    } else {
        assert!(std::env::var("CI").is_err(), "CI=true: --init needs tini-static (Debian package tini)");
        let o = s.run(&["run", "--rm", "--init", "bb:1", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&o.stderr).contains("package tini"));
    }
    // logs --since: a time after the output shows nothing
    s.ok(&["run", "--name", "l", "bb:1", "echo", "early"]);
    assert_eq!(s.ok(&["logs", "l"]), "early\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(s.ok(&["logs", "--since", "1s", "l"]), "");
    assert_eq!(s.ok(&["logs", "--since", "1000000000", "l"]), "early\n");
    // a running container's mount is its own: mount and umount are refused
    s.ok(&["run", "-d", "--name", "r", "bb:1", "sleep", "30"]);
    let mp = s.path("mp");
    std::fs::create_dir(&mp).unwrap();
    let err = s.fails(&["mount", "r", mp.to_str().unwrap()]);
    assert!(err.contains("already mounted at") && err.contains("rootfs"), "{err}");
    let err = s.fails(&["umount", "r"]);
    assert!(err.contains("running"), "{err}");
    s.ok(&["rm", "-f", "r"]);
}

#[test]
fn a_debootstrapped_debian_image_runs_as_under_docker() {
    let Some(s) = setup() else { return };
    let Some(tar) = common::run::debian_rootfs_tar() else { return };
    let _c = Cleanup(&s);
    let tar = tar.to_str().unwrap();
    let changes = [
        "ENV APP=site LANG=C.UTF-8",
        "WORKDIR /srv/site",
        "USER www-data",
        r#"CMD ["bash", "-c", "echo $APP"]"#,
    ];
    let mut args = vec!["import", tar, "deb:1"];
    for c in &changes {
        args.extend(["-c", c]);
    }
    s.ok(&args);
    // the image's Cmd, Env, WorkingDir and User (by name, from the image's /etc/passwd)
    assert_eq!(run_code(&s, &["run", "--rm", "deb:1"], 0), "site\n");
    let out =
        run_code(&s, &["run", "--rm", "deb:1", "bash", "-c", "echo $APP $LANG; pwd; id; echo $HOME"], 0);
    assert_eq!(
        out,
        "site C.UTF-8\n/srv/site\nuid=33(www-data) gid=33(www-data) groups=33(www-data)\n/var/www\n"
    );
    // dpkg's database and the image's users, without apt or the network
    let out = run_code(
        &s,
        &[
            "run",
            "--rm",
            "-u",
            "root",
            "deb:1",
            "sh",
            "-c",
            "dpkg -l | grep -c '^ii'; dpkg -s coreutils | grep '^Status'; id www-data; id -un",
        ],
        0,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].parse::<u32>().unwrap() > 50, "installed packages: {out}");
    assert_eq!(
        lines[1..],
        ["Status: install ok installed", "uid=33(www-data) gid=33(www-data) groups=33(www-data)", "root"]
    );
    // Docker's exit codes with Debian's shells and binaries
    run_code(&s, &["run", "--rm", "deb:1", "bash", "-c", "exit 3"], 3);
    run_code(&s, &["run", "--rm", "deb:1", "nosuch"], 127);
    run_code(&s, &["run", "--rm", "deb:1", "/etc/passwd"], 126);
    // what useradd and a write change lands in the diff, the generated /etc files do not
    run_code(
        &s,
        &[
            "run",
            "--name",
            "w",
            "-u",
            "root",
            "deb:1",
            "bash",
            "-c",
            "useradd -m -s /bin/bash alice && echo hi > index.html",
        ],
        0,
    );
    let diff = s.ok(&["diff", "w"]);
    for want in ["C /etc/passwd", "C /etc/shadow", "A /home/alice", "A /srv/site/index.html"] {
        assert!(diff.lines().any(|l| l == want), "{want:?} not in the diff:\n{diff}");
    }
    for generated in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        assert!(!diff.lines().any(|l| l.ends_with(generated)), "{generated} in the diff:\n{diff}");
    }
    // the commit runs, with the new user found by name in its own /etc/passwd
    s.ok(&["commit", "w", "deb:2"]);
    let out = run_code(
        &s,
        &["run", "--rm", "-u", "alice", "deb:2", "bash", "-c", "id -un; echo $HOME; pwd; cat index.html"],
        0,
    );
    assert_eq!(out, "alice\n/home/alice\n/srv/site\nhi\n");
    // exec in a running Debian container, by user name
    s.ok(&["run", "-d", "--name", "d", "deb:2", "sleep", "60"]);
    assert_eq!(run_code(&s, &["exec", "-u", "alice", "d", "id", "-un"], 0), "alice\n");
    s.ok(&["rm", "-f", "d", "w"]);
}

#[test]
fn pull_policies_a_runtime_path_and_exec_i_and_d() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let reg = common::registry::Registry::start(common::registry::Auth::None);
    let name = format!("{}/bb:1", reg.host());
    busybox_image(&s, &name, &[r#"CMD ["echo", "pulled"]"#]);
    common::registry::ok(&s, &["push", &name]);
    common::registry::ok(&s, &["rmi", &name]);
    let run = |args: &[&str]| common::registry::strata_cmd(&s, args).output().unwrap();
    // --pull never: a missing image is strata's error
    let o = run(&["run", "--rm", "--pull", "never", &name]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such image"), "{o:?}");
    // missing (the default): pulled, then run
    let o = run(&["run", "--rm", &name]);
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(0), "pulled\n"),
        "{o:?}"
    );
    let manifests = || reg.requests().iter().filter(|r| r.contains("/manifests/")).count();
    let before = manifests();
    // present: missing does not ask the registry; always does
    run_code(&s, &["run", "--rm", &name], 0);
    assert_eq!(manifests(), before);
    let o = run(&["run", "--rm", "--pull", "always", &name]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(manifests() > before, "--pull always asked the registry");
    // --runtime as a path
    let runc = String::from_utf8(
        std::process::Command::new("sh").args(["-c", "command -v runc"]).output().unwrap().stdout,
    )
    .unwrap();
    assert_eq!(
        run_code(&s, &["run", "--rm", "--runtime", runc.trim(), &name, "echo", "by path"], 0),
        "by path\n"
    );
    // exec -i passes stdin on; exec -d runs in the background
    s.ok(&["run", "-d", "--name", "x", &name, "sleep", "60"]);
    let mut cat = s
        .command(&["exec", "-i", "x", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"typed\n").unwrap();
    assert_eq!(cat.wait_with_output().unwrap().stdout, b"typed\n");
    assert_eq!(run_code(&s, &["exec", "x", "cat"], 0), "", "without -i the input is empty");
    assert_eq!(run_code(&s, &["exec", "-d", "x", "sh", "-c", "sleep 0.2; echo bg > /bg"], 0), "");
    common::run::eventually("the detached exec", || s.run(&["exec", "x", "cat", "/bg"]).stdout == b"bg\n");
    s.ok(&["rm", "-f", "x"]);
}

/// Voluntary context switches of every thread of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// `strata run` and `exec` sleep while the runtime starts the process: they wake when it writes
/// the pid file or exits, never to look again every few milliseconds (which took CPU from the
/// runtime on a busy machine). A runtime that takes 1.5 s before it starts: in half a second of
/// that, strata's threads wake a few times at most.
#[test]
fn waiting_for_the_runtime_to_start_takes_no_wakeups() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let dir = s.path("slow-runtime");
    std::fs::create_dir_all(&dir).unwrap();
    let started = dir.join("starting");
    let runc = String::from_utf8(
        std::process::Command::new("sh").args(["-c", "command -v runc"]).output().unwrap().stdout,
    )
    .unwrap();
    // Named runc, so strata speaks runc to it; slow only to run and exec.
    let wrapper = dir.join("runc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" run \"*|*\" exec \"*) touch {}; sleep 1.5;; esac\nexec {} \"$@\"\n",
            started.display(),
            runc.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wrapper = wrapper.to_str().unwrap();
    // Wakeups of `strata ARGS` in 0.5 s while the runtime is starting; then its output.
    let wakeups = |args: &[&str]| {
        let _ = std::fs::remove_file(&started);
        let child = s.command(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
        common::run::eventually("the runtime to start", || started.exists());
        std::thread::sleep(std::time::Duration::from_millis(100));
        let before = context_switches(child.id());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let woke = context_switches(child.id()) - before;
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "strata {args:?}: {o:?}");
        (woke, String::from_utf8(o.stdout).unwrap())
    };
    let (woke, out) = wakeups(&["run", "--rm", "--runtime", wrapper, "bb:1", "echo", "ran"]);
    assert_eq!(out, "ran\n");
    assert!(woke < 20, "strata run woke {woke} times in 0.5 s while the runtime started");
    s.ok(&["run", "-d", "--name", "slow", "--runtime", wrapper, "bb:1", "sleep", "60"]);
    let (woke, out) = wakeups(&["exec", "slow", "echo", "exec ran"]);
    assert_eq!(out, "exec ran\n");
    assert!(woke < 20, "strata exec woke {woke} times in 0.5 s while the runtime started");
}

/// The processes whose command line names `id` (a runtime left running for the container).
fn processes_naming(id: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(id))
        .collect()
}

/// runc starts before the container is mounted and its bundle written (it reads `config.json`
/// from a pipe once the mount answers). A start that fails after that (a user the image lacks
/// is found out while the bundle is made) leaves no runtime waiting on the pipe, no runtime
/// state, and no `config.json` symlink into the dead monitor; the next start fails the same way.
#[test]
fn a_start_that_fails_after_the_runtime_started_leaves_no_runtime_behind() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let id = s.ok(&["create", "-u", "nosuchuser", "bb:1", "true"]).trim().to_string();
    for _ in 0..2 {
        let o = s.run(&["-vv", "start", "-a", &id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(err.contains("unable to find user nosuchuser"), "{err}");
        let started = err.find("runtime started").expect("runc is started before the mount");
        assert!(started < err.find("layers ready").unwrap(), "{err}");
        assert_eq!(processes_naming(&id), Vec::<String>::new(), "a runtime was left behind");
        assert!(!s.root().join("runtime/runc").join(&id).exists(), "runc state was left behind");
        let config = s.root().join("containers").join(&id).join("config.json");
        assert!(std::fs::symlink_metadata(&config).is_err(), "config.json left: {config:?}");
    }
    assert!(s.ok(&["ps", "-a", "--format", "{{.Status}}"]).starts_with("Exited (125)"));
}

/// A `config.json` that is a symlink (what a monitor killed while runc waited for its config
/// leaves) is replaced by the next start, never written through; the container then runs and
/// `exec` reads the regular file.
#[test]
fn a_config_json_symlink_is_replaced_not_written_through() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    let id = s.ok(&["create", "bb:1", "sleep", "30"]).trim().to_string();
    let outside = s.path("outside");
    std::fs::write(&outside, "untouched").unwrap();
    let config = s.root().join("containers").join(&id).join("config.json");
    std::os::unix::fs::symlink(&outside, &config).unwrap();
    s.ok(&["start", &id]);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched");
    assert!(std::fs::symlink_metadata(&config).unwrap().file_type().is_file());
    assert_eq!(s.ok(&["exec", &id, "echo", "in"]), "in\n");
    s.ok(&["rm", "-f", &id]);
}
