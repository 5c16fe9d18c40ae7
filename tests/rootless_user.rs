//! strata as an ordinary user: the user namespace (`strata unshare`, and the commands that run in
//! it), the override xattr written without a subordinate range, the errors a user meets, and a
//! mount through fusermount3. Everything runs the real binary as a real unprivileged user.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::mount::{Mount, is_mounted};
use common::registry::{Auth, Registry};
use common::strata::{Strata, tar_dir};
use common::user::{SUB_COUNT, SUB_START, TestUser, dev_fuse_for_users};

const OVERRIDE: &str = "user.containers.override_stat";

/// Runs a shell script as root (the test process), panicking with its output on failure.
fn sh(script: &str) {
    let out = Command::new("sh").arg("-euc").arg(script).output().expect("sh");
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A rootfs with root-owned, setuid, setgid, multi-owner files, a sticky dir, symlinks and a hard
/// link; with `extras`, also device nodes and an owner beyond the test's subordinate range.
fn owners_rootfs(dir: &Path, extras: bool) {
    let d = dir.display();
    sh(&format!(
        "mkdir -p {d}/etc {d}/usr/bin {d}/home/u {d}/var/www {d}/tmp
         echo root:x:0:0::/root:/bin/sh > {d}/etc/passwd
         echo root:*:: > {d}/etc/shadow; chown 0:42 {d}/etc/shadow; chmod 0640 {d}/etc/shadow
         echo su > {d}/usr/bin/su; chmod 4755 {d}/usr/bin/su
         ln {d}/usr/bin/su {d}/usr/bin/su-again
         echo wall > {d}/usr/bin/wall; chown 0:5 {d}/usr/bin/wall; chmod 2755 {d}/usr/bin/wall
         echo mine > {d}/home/u/notes; chmod 0600 {d}/home/u/notes
         ln -s notes {d}/home/u/link; chown -h 1000:1000 {d}/home/u/link
         chown 1000:1000 {d}/home/u {d}/home/u/notes; chmod 0700 {d}/home/u
         echo hi > {d}/var/www/index.html; chown -R 33:33 {d}/var/www; chmod 0750 {d}/var/www
         chmod 1777 {d}/tmp
         touch -h -d @1000000000 {d}/home/u/link
         find {d} -exec touch -h -d @1000000000 {{}} +"
    ));
    if extras {
        sh(&format!(
            "mkdir -p {d}/dev
             mknod -m 0666 {d}/dev/null c 1 3; mknod -m 0660 {d}/dev/sda b 8 0; chown 0:6 {d}/dev/sda
             echo far > {d}/far; chown 70000:70001 {d}/far
             find {d} -exec touch -h -d @1000000000 {{}} +"
        ));
    }
}

/// The fixture as a tar in a directory both root and `user` can read; returns the tar's path.
fn owners_tar(user: &TestUser, extras: bool) -> String {
    owners_tar_with(user, extras, "true")
}

/// [`owners_tar`], with `script` run in the rootfs (as root) before it is packed.
fn owners_tar_with(user: &TestUser, extras: bool, script: &str) -> String {
    let rootfs = user.path("rootfs");
    owners_rootfs(&rootfs, extras);
    sh(&format!("cd {}; {script}", rootfs.display()));
    let tar = user.path("owners.tar");
    tar_dir(&rootfs, &tar, "plain");
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    tar.to_str().unwrap().to_string()
}

/// `tar -tv --numeric-owner` lines of a tar: type, mode, owner, size and name of every member.
fn listing(tar: &Path) -> String {
    let out = Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(tar).output().expect("tar");
    assert!(out.status.success(), "tar -tvf {}", tar.display());
    String::from_utf8(out.stdout).unwrap()
}

/// The unpacked directory of the image's first layer in the user's store.
fn layer_fs(user: &TestUser, image: &str) -> std::path::PathBuf {
    let json: serde_json::Value = serde_json::from_str(&user.ok(&["inspect", image])).unwrap();
    let diff_id = json[0]["RootFS"]["Layers"][0].as_str().expect("RootFS.Layers[0]").to_string();
    user.store().join("layers").join(diff_id.trim_start_matches("sha256:")).join("fs")
}

fn lines(s: &str) -> Vec<Vec<String>> {
    s.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[test]
fn unshare_maps_root_to_the_user_and_the_range_after_it() {
    let Some(user) = TestUser::with_subids() else { return };
    assert_eq!(
        lines(&user.ok(&["unshare", "cat", "/proc/self/uid_map"])),
        [["0", &user.uid.to_string(), "1"], ["1", &SUB_START.to_string(), &SUB_COUNT.to_string()]]
    );
    assert_eq!(
        lines(&user.ok(&["unshare", "cat", "/proc/self/gid_map"])),
        [["0", &user.gid.to_string(), "1"], ["1", &SUB_START.to_string(), &SUB_COUNT.to_string()]]
    );
    assert_eq!(user.ok(&["unshare", "id", "-u"]).trim(), "0");
    // The store's environment, and a mount namespace of its own (as podman unshare gives).
    assert_eq!(user.ok(&["unshare", "sh", "-c", "echo $STRATA_ROOT"]).trim(), user.store().to_str().unwrap());
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(user.ok(&["unshare", "readlink", "/proc/self/ns/mnt"]).trim(), own_ns.to_str().unwrap());
    // A file made inside belongs to the user outside; one chowned to 1 to the first subordinate id.
    user.ok(&["unshare", "sh", "-c", "touch a b && chown 1:1 b"]);
    assert_eq!(std::fs::metadata(user.path("a")).unwrap().uid(), user.uid);
    assert_eq!(std::fs::metadata(user.path("b")).unwrap().uid(), SUB_START);
    // Exit codes come through; a missing command is 127 as in a shell.
    assert_eq!(user.run(&["unshare", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = user.run(&["unshare", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run no-such-command"));
    // SIGTERM to strata (outside) reaches the command inside: strata joined the kept namespace
    // and became the command (or, re-executed, passes the signal on and returns 128+15).
    let mut child = user.strata(&["unshare", "sleep", "30"]).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !user_ns_command_started(child.id()) && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(status.code() == Some(143) || status.signal() == Some(15), "{status:?}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
}

/// Whether the strata process `pid` runs `sleep` (the command in the namespace), itself or in a child.
fn user_ns_command_started(pid: u32) -> bool {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    std::iter::once(pid.to_string())
        .chain(children.split_whitespace().map(str::to_string))
        .any(|c| std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|comm| comm.trim() == "sleep"))
}

/// The process strata keeps the user's namespace alive with, as its pid file in the test's
/// runtime directory names it (`None`: no file).
fn holder_pid(user: &TestUser) -> Option<i32> {
    let text = std::fs::read_to_string(user.path("run/strata/userns.pid")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn user_ns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/user")).map(|p| p.display().to_string()).unwrap_or_default()
}

fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Whether process `pid` is gone (or a zombie) now or within `secs` seconds.
fn gone_within(pid: i32, secs: u64) -> bool {
    let t0 = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
            return true;
        }
        if t0.elapsed() >= std::time::Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A process killed (and reaped) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Once `pid` is named `strata-userns`, records it in `pid_file` as the user's holder (the
/// holder the file names then is ended first: overwritten, it would outlive the test).
fn record_as_holder(user: &TestUser, pid_file: &Path, pid: i32) {
    let t0 = std::time::Instant::now();
    while comm_of(pid) != "strata-userns" && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(comm_of(pid), "strata-userns");
    user.ok(&["system", "migrate"]);
    std::fs::write(pid_file, forged_record(pid)).unwrap();
    user.give(pid_file);
}

/// What strata's pid file would say of process `pid`: pid, start time, user namespace inode, boot id.
fn forged_record(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().to_string();
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/user")).unwrap().ino();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    format!("{pid} {start} {ns} {}\n", boot.trim())
}

#[test]
fn the_user_namespace_is_kept_between_commands_and_joined() {
    let Some(user) = TestUser::with_subids() else { return };
    let first = user.ok(&["unshare", "readlink", "/proc/self/ns/user"]).trim().to_string();
    let holder = holder_pid(&user).expect("a pid file in $XDG_RUNTIME_DIR/strata");
    assert_eq!(comm_of(holder), "strata-userns");
    assert_eq!(user_ns_of(holder), first);
    // It keeps nothing of the command that made it (an inherited pipe would have kept `ok`
    // above waiting): only /dev/null, no terminal, no working directory of the user's.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{holder}/fd"))
        .unwrap()
        .map(|e| std::fs::read_link(e.unwrap().path()).unwrap().display().to_string())
        .collect();
    assert!(fds.iter().all(|f| f == "/dev/null") && fds.len() == 3, "{fds:?}");
    assert_eq!(std::fs::read_link(format!("/proc/{holder}/cwd")).unwrap(), Path::new("/"));
    let mode = std::fs::metadata(user.path("run/strata")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);
    // The next commands join it instead of making a namespace of their own: `unshare`, a command
    // that unpacks layers, and a mount daemon.
    assert_eq!(user.ok(&["unshare", "readlink", "/proc/self/ns/user"]).trim(), first);
    assert_eq!(holder_pid(&user), Some(holder));
    let tar = owners_tar(&user, false);
    user.ok(&["import", &tar, "owners:1"]);
    assert_eq!(
        user.ok(&[
            "unshare",
            "stat",
            "-c",
            "%u",
            &format!("{}/usr/bin/wall", layer_fs(&user, "owners:1").display())
        ])
        .trim(),
        "0"
    );
    if dev_fuse_for_users() {
        let mp = user.path("mp");
        std::fs::create_dir(&mp).unwrap();
        user.give(&mp);
        let cid = user.ok(&["create", "owners:1"]).trim().to_string();
        user.ok(&["mount", &cid, mp.to_str().unwrap()]);
        let mut mount = Mount::adopt(&mp);
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(user.store().join("containers").join(&cid).join("mount.json")).unwrap(),
        )
        .unwrap();
        let daemon = record["pid"].as_i64().unwrap() as i32;
        assert_eq!(user_ns_of(daemon), first);
        user.ok(&["umount", mp.to_str().unwrap()]);
        mount.forget();
    }
    assert_eq!(holder_pid(&user), Some(holder));
}

#[test]
fn a_stale_or_forged_namespace_record_is_never_joined() {
    let Some(user) = TestUser::with_subids() else { return };
    let pid_file = user.path("run/strata/userns.pid");
    let ns_now = |user: &TestUser| user.ok(&["unshare", "readlink", "/proc/self/ns/user"]).trim().to_string();
    let first = ns_now(&user);
    let holder = holder_pid(&user).unwrap();
    // Garbage, and a process that has exited: a new holder, the file rewritten.
    for text in
        ["not a record\n".to_string(), forged_record(holder).replacen(&holder.to_string(), "999999", 1)]
    {
        assert_eq!(user.ok(&["system", "migrate"]), "");
        assert!(gone_within(holder, 5));
        std::fs::write(&pid_file, &text).unwrap();
        user.give(&pid_file);
        let ns = ns_now(&user);
        let new = holder_pid(&user).unwrap();
        assert_ne!(new, 999999);
        assert_eq!((comm_of(new).as_str(), user_ns_of(new)), ("strata-userns", ns));
    }
    // A live process of the user's, made to look like a holder as far as a user can (its name,
    // its real start time and namespace) but in a namespace with another mapping: not joined, and
    // left alone.
    let bin = user.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sleep", bin.join("strata-userns")).unwrap();
    let fake = bin.join("strata-userns");
    let forged =
        KillOnDrop(user.command("unshare", &["-U", "-r", fake.to_str().unwrap(), "60"]).spawn().unwrap());
    let fpid = forged.0.id() as i32;
    record_as_holder(&user, &pid_file, fpid);
    let ns = ns_now(&user);
    assert_ne!(ns, user_ns_of(fpid));
    assert_ne!(holder_pid(&user), Some(fpid));
    assert_eq!(comm_of(holder_pid(&user).unwrap()), "strata-userns");
    assert!(!gone_within(fpid, 1), "the forged process was killed");
    // Root's process in a namespace of root's, named the same: not the user's, not joined.
    let root_bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/sleep", root_bin.path().join("strata-userns")).unwrap();
    let root_fake = root_bin.path().join("strata-userns");
    let roots = KillOnDrop(
        Command::new("unshare").args(["-U", "-r", root_fake.to_str().unwrap(), "60"]).spawn().unwrap(),
    );
    let rpid = roots.0.id() as i32;
    record_as_holder(&user, &pid_file, rpid);
    let ns = ns_now(&user);
    assert_ne!(ns, user_ns_of(rpid));
    assert_eq!(comm_of(holder_pid(&user).unwrap()), "strata-userns");
    assert!(!gone_within(rpid, 0));
    drop((forged, roots));
    let _ = first;
    // A runtime directory others can write is not used: every command makes its own namespace.
    if !Path::new(&format!("/run/user/{}", user.uid)).exists() {
        let open = user.path("run-open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        user.give(&open);
        let mut c = user.strata(&["unshare", "readlink", "/proc/self/ns/user"]);
        c.env("XDG_RUNTIME_DIR", &open);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!open.join("strata").exists());
    }
}

#[test]
fn system_migrate_ends_the_kept_namespace() {
    let Some(user) = TestUser::with_subids() else { return };
    let first = user.ok(&["unshare", "readlink", "/proc/self/ns/user"]).trim().to_string();
    let holder = holder_pid(&user).unwrap();
    assert_eq!(user.ok(&["system", "migrate"]), "");
    assert!(gone_within(holder, 5), "holder {holder} still running");
    assert!(!user.path("run/strata/userns.pid").exists());
    // Nothing to end: still fine.
    user.ok(&["system", "migrate"]);
    // The next command makes a new one.
    let second = user.ok(&["unshare", "readlink", "/proc/self/ns/user"]).trim().to_string();
    let new = holder_pid(&user).unwrap();
    assert_ne!(new, holder);
    assert_eq!(user_ns_of(new), second);
    assert_ne!(second, first);
    // From inside the namespace it refuses, naming why.
    let err = user.fails(&["unshare", env!("CARGO_BIN_EXE_strata"), "system", "migrate"]);
    assert!(err.contains("outside strata unshare"), "{err}");
}

#[test]
fn rootless_errors_say_what_to_do() {
    let Some(nosub) = TestUser::without_subids() else { return };
    let err = nosub.fails(&["unshare", "true"]);
    assert!(err.contains("/etc/subuid") && err.contains("usermod --add-subuids"), "{err}");

    let Some(user) = TestUser::with_subids() else { return };
    // newuidmap not on PATH: name the package.
    let out = user.strata(&["unshare", "true"]).env("PATH", "/nonexistent").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("newuidmap not found") && err.contains("uidmap"), "{err}");

    // A store another user made: refused with the way out, by every command.
    let shared = tempfile::Builder::new().prefix("strata-shared-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = shared.path().join("store");
    std::fs::create_dir(&store).unwrap();
    nosub.give(&store);
    let root = store.to_str().unwrap();
    nosub.ok(&["--root", root, "images"]);
    for args in [
        &["--root", root, "images"][..],
        &["--root", root, "import", "/dev/null"],
        &["--root", root, "unshare"],
    ] {
        let err = user.fails(args);
        assert!(err.contains("belongs to uid") && err.contains("--root"), "{args:?}: {err}");
    }

    // No read-write /dev/fuse: say how to fix it. Shown in the namespace, where a 0600 file is
    // bound over /dev/fuse and strata runs as uid 1 (the machine's device stays as it is).
    let script = "touch fake; chmod 600 fake; mount --bind fake /dev/fuse; \
                  exec setpriv --reuid=1 --regid=1 --clear-groups \"$0\" mount x /nonexistent";
    let out = user.strata(&["unshare", "sh", "-c", script, env!("CARGO_BIN_EXE_strata")]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/dev/fuse") && err.contains("0666"), "{err}");
    // No fusermount3: name the package.
    if dev_fuse_for_users() {
        let out = user.strata(&["mount", "x", "/nonexistent"]).env("PATH", "/nonexistent").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("fusermount3 not found") && err.contains("fuse3"),
            "{err}"
        );
    }
}

/// The same tar imported (the same archive loaded, the same image pulled) as root and as a user with a subordinate
/// range gives the same ids, and the merged tree exported inside the namespace is byte for byte
/// the one root exports: owners, setuid bits, modes and links survive.
#[test]
fn rootless_import_load_and_pull_match_root() {
    let Some(user) = TestUser::with_subids() else { return };
    let tar = owners_tar(&user, false);
    let epoch = [("SOURCE_DATE_EPOCH", "1000000000")];

    let root = Strata::new();
    let run_root = |args: &[&str]| {
        let out = root.command(args).envs(epoch).output().unwrap();
        common::strata::expect_ok(out, args)
    };
    let root_id = run_root(&["import", &tar, "owners:1"]);
    let root_export = root.path("export.tar");
    run_root(&["export", "-o", root_export.to_str().unwrap(), "owners:1"]);
    let archive = user.path("owners-archive.tar");
    run_root(&["save", "-o", archive.to_str().unwrap(), "owners:1"]);
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).unwrap();

    let user_id = common::strata::expect_ok(
        user.strata(&["import", &tar, "owners:1"]).env("SOURCE_DATE_EPOCH", "1000000000").output().unwrap(),
        &["import"],
    );
    assert_eq!(user_id, root_id);
    let user_export = user.path("export.tar");
    user.ok(&["export", "-o", user_export.to_str().unwrap(), "owners:1"]);
    assert_eq!(listing(&user_export), listing(&root_export));
    assert!(std::fs::read(&user_export).unwrap() == std::fs::read(&root_export).unwrap(), "exports differ");

    // On disk the owners are the mapped ones: image uid 1000 is subordinate id 999 from the start.
    let layer = layer_fs(&user, "owners:1");
    assert_eq!(std::fs::metadata(layer.join("home/u/notes")).unwrap().uid(), SUB_START + 999);
    assert_eq!(std::fs::metadata(layer.join("usr/bin/su")).unwrap().uid(), user.uid);
    assert_eq!(std::fs::metadata(layer.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o4755);

    // load of root's archive into a fresh store of the user: the same image id, the same tree.
    user.ok(&["rmi", "owners:1"]);
    user.ok(&["image", "prune", "-a"]);
    let loaded = user.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("owners:1"), "{loaded}");
    assert_eq!(user.ok(&["images", "-q", "--no-trunc", "owners:1"]).trim(), root_id.trim());
    user.ok(&["export", "-o", user_export.to_str().unwrap(), "owners:1"]);
    assert!(std::fs::read(&user_export).unwrap() == std::fs::read(&root_export).unwrap(), "exports differ");

    // pull from a loopback registry root pushed to: the same again.
    let registry = Registry::start(Auth::None);
    let remote = format!("{}/owners:1", registry.host());
    run_root(&["tag", "owners:1", &remote]);
    run_root(&["push", &remote]);
    user.ok(&["rmi", "owners:1"]);
    user.ok(&["image", "prune", "-a"]);
    user.ok(&["pull", "-q", &remote]);
    assert_eq!(user.ok(&["images", "-q", "--no-trunc", &remote]).trim(), root_id.trim());
    user.ok(&["export", "-o", user_export.to_str().unwrap(), &remote]);
    assert!(std::fs::read(&user_export).unwrap() == std::fs::read(&root_export).unwrap(), "exports differ");
}

/// Without a subordinate range nothing can be chowned: files are the user's and the owner, mode
/// and type the layer gives them go to `user.containers.override_stat`, as containers/storage
/// writes it; device nodes become empty files that say what they are. fuse-overlayfs, mounting
/// the layer, shows the recorded owners.
#[test]
fn without_subordinate_ids_owners_go_to_the_override_xattr() {
    let Some(user) = TestUser::without_subids() else { return };
    let tar = owners_tar(&user, true);
    let out = user.run(&["import", &tar, "owners:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("WARN"), "no warnings expected: {stderr}");

    let layer = layer_fs(&user, "owners:1");
    let xattr =
        |rel: &str| xattr::get(layer.join(rel), OVERRIDE).unwrap().map(|v| String::from_utf8(v).unwrap());
    for (rel, want) in [
        ("", Some("0:0:0755:dir")),
        ("etc/shadow", Some("0:42:0640:file")),
        ("usr/bin/su", Some("0:0:4755:file")),
        ("usr/bin/wall", Some("0:5:2755:file")),
        ("home/u", Some("1000:1000:0700:dir")),
        ("home/u/notes", Some("1000:1000:0600:file")),
        ("var/www/index.html", Some("33:33:0644:file")),
        ("dev/null", Some("0:0:0666:char-1-3")),
        ("dev/sda", Some("0:6:0660:block-8-0")),
        ("far", Some("70000:70001:0644:file")),
        // Our own owner (root of the image is not us): everything root-owned is recorded too,
        // but a file the layer gives the user's own ids would need none.
    ] {
        assert_eq!(xattr(rel).as_deref(), want, "{rel}");
    }
    for rel in ["usr/bin/su", "dev/null", "home/u", "far"] {
        assert_eq!(std::fs::symlink_metadata(layer.join(rel)).unwrap().uid(), user.uid, "{rel}");
    }
    let null = std::fs::symlink_metadata(layer.join("dev/null")).unwrap();
    assert!(null.is_file() && null.len() == 0);
    assert_eq!(std::fs::metadata(layer.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o4755);

    // The peer reads it: fuse-overlayfs, run by the same user through fusermount3 over this
    // layer, shows the recorded owners and modes.
    if !dev_fuse_for_users() {
        return;
    }
    let mnt = user.path("fo-mnt");
    std::fs::create_dir(&mnt).unwrap();
    user.give(&mnt);
    // Guarded before mounting: root may not even stat a FUSE mount of another user's.
    let _mounted = Mount::adopt(&mnt);
    let lower = format!("lowerdir={}", layer.display());
    // Its daemon may keep stdout and stderr open: pipes to them would never end, so a file.
    let log = user.path("fo.log");
    let err = std::fs::File::create(&log).unwrap();
    let status = user
        .command("fuse-overlayfs", &["-o", &lower, mnt.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .status()
        .expect("fuse-overlayfs (Debian package fuse-overlayfs) must be installed");
    assert!(status.success(), "fuse-overlayfs: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let script = format!("cd {} && stat -c '%u %g %a' usr/bin/su etc/shadow home/u", mnt.display());
    let out = user.command("sh", &["-c", &script]).output().unwrap();
    assert!(out.status.success(), "stat: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 0 4755\n0 42 640\n1000 1000 700\n");
}

/// In the namespace, what it still can't do goes to the override xattr: an owner beyond the
/// mapped range, device nodes. Everything else is chowned for real and carries no xattr.
#[test]
fn in_the_namespace_what_cannot_be_mapped_goes_to_the_override_xattr() {
    let Some(user) = TestUser::with_subids() else { return };
    let tar = owners_tar(&user, true);
    user.ok(&["import", &tar, "owners:1"]);
    let layer = layer_fs(&user, "owners:1");
    let xattr =
        |rel: &str| xattr::get(layer.join(rel), OVERRIDE).unwrap().map(|v| String::from_utf8(v).unwrap());
    let owner = |rel: &str| {
        let m = std::fs::symlink_metadata(layer.join(rel)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(xattr("far").as_deref(), Some("70000:70001:0644:file"));
    assert_eq!(owner("far"), (user.uid, user.gid));
    assert_eq!(xattr("dev/null").as_deref(), Some("0:0:0666:char-1-3"));
    assert_eq!(xattr("dev/sda").as_deref(), Some("0:6:0660:block-8-0"));
    assert_eq!(owner("dev/sda"), (user.uid, SUB_START + 5));
    assert!(std::fs::symlink_metadata(layer.join("dev/sda")).unwrap().is_file());
    // The layer root says "this layer has overrides" (fuse-overlayfs looks there).
    assert_eq!(xattr("").as_deref(), Some("0:0:0755:dir"));
    // The layer is marked, so every file and directory carries a value, as containers/storage
    // writes such a layer (fuse-overlayfs 1.10 refuses a file of a marked layer without one);
    // the mapped ones are chowned for real as well.
    for (rel, want) in [
        ("usr/bin/su", "0:0:4755:file"),
        ("etc/shadow", "0:42:0640:file"),
        ("home/u/notes", "1000:1000:0600:file"),
        ("var/www", "33:33:0750:dir"),
    ] {
        assert_eq!(xattr(rel).as_deref(), Some(want), "{rel}");
    }
    assert_eq!(owner("etc/shadow"), (user.uid, SUB_START + 41));
}

/// A mount as the user through fusermount3: an image read-only and a container read-write, then
/// a commit in the namespace where a file the user wrote is root's, as in a rootless container.
#[test]
fn rootless_mount_through_fusermount3_and_commit() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::with_subids() else { return };
    let tar = owners_tar(&user, false);
    user.ok(&["import", &tar, "owners:1"]);
    let (ro, rw) = (user.path("ro"), user.path("rw"));
    for d in [&ro, &rw] {
        std::fs::create_dir(d).unwrap();
        user.give(d);
    }
    user.ok(&["mount", "owners:1", ro.to_str().unwrap()]);
    let mut ro_mount = Mount::adopt(&ro);
    let cid = user.ok(&["create", "owners:1"]).trim().to_string();
    user.ok(&["mount", &cid, rw.to_str().unwrap()]);
    let mut rw_mount = Mount::adopt(&rw);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&format!(" {} ", ro.display())) && mounts.contains(&format!(" {} ", rw.display()))
    );

    let as_user = |script: &str| {
        let out = user.command("sh", &["-euc", script]).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // Read back through the kernel: the files' owners as they are on disk (the layer was written
    // in the namespace: image root is the user, image uid 1000 subordinate id 999).
    let stat = as_user(&format!(
        "cd {}; cat etc/passwd; stat -c '%n %u %g %a' usr/bin/su etc/shadow home/u var/www",
        ro.display()
    ));
    assert!(stat.starts_with("root:x:0:0"), "{stat}");
    let (u, s) = (user.uid, SUB_START);
    for want in [
        format!("usr/bin/su {u} {u} 4755"),
        format!("etc/shadow {u} {} 640", s + 41),
        format!("home/u {} {} 700", s + 999, s + 999),
        format!("var/www {} {} 750", s + 32, s + 32),
    ] {
        assert!(stat.lines().any(|l| l == want), "{want:?} not in {stat}");
    }
    // The same mount seen from the namespace shows the image's own owners, and `strata ls` (which
    // runs there) agrees.
    let inside = user.ok(&[
        "unshare",
        "stat",
        "-c",
        "%n %u %g %a",
        &format!("{}/usr/bin/su", ro.display()),
        &format!("{}/etc/shadow", ro.display()),
        &format!("{}/home/u", ro.display()),
        &format!("{}/var/www", ro.display()),
    ]);
    let r = ro.display();
    assert_eq!(
        inside,
        format!(
            "{r}/usr/bin/su 0 0 4755\n{r}/etc/shadow 0 42 640\n{r}/home/u 1000 1000 700\n{r}/var/www 33 33 750\n"
        )
    );
    let ls = user.ok(&["ls", "-l", "owners:1", "/home"]);
    assert!(ls.lines().any(|l| l.contains(" 1000 1000 ") && l.ends_with(" u")), "{ls}");
    // Writing through the read-only mount fails; through the container's it works.
    let out = user.command("sh", &["-c", &format!("echo x > {}/new", ro.display())]).output().unwrap();
    assert!(!out.status.success());
    as_user(&format!("cd {}; echo made > new; mkdir -p d; echo x > d/f; chmod 4750 new", rw.display()));
    assert_eq!(as_user(&format!("stat -c '%u %a' {}/new", rw.display())).trim(), format!("{u} 4750"));
    // A commit while the container is mounted reaches the user's mount from the namespace.
    user.ok(&["commit", &cid, "owners:while-mounted"]);
    user.ok(&["umount", rw.to_str().unwrap()]);
    rw_mount.forget();
    user.ok(&["umount", ro.to_str().unwrap()]);
    ro_mount.forget();
    assert!(!is_mounted(&ro) && !is_mounted(&rw));

    // Committed in the namespace: what the user wrote is root's in the image.
    user.ok(&["commit", &cid, "owners:2"]);
    let top_layer = |image: &str| {
        let json: serde_json::Value = serde_json::from_str(&user.ok(&["inspect", image])).unwrap();
        json[0]["RootFS"]["Layers"][1].as_str().expect("a second layer").to_string()
    };
    assert_eq!(top_layer("owners:2"), top_layer("owners:while-mounted"));
    let export = user.path("committed.tar");
    user.ok(&["export", "-o", export.to_str().unwrap(), "owners:2"]);
    let list = listing(&export);
    for (name, owner, mode) in
        [("new", "0/0", "-rwsr-x---"), ("d/f", "0/0", "-rw-"), ("home/u/notes", "1000/1000", "-rw-------")]
    {
        assert!(
            list.lines().any(|l| l.ends_with(&format!(" {name}"))
                && l.contains(&format!(" {owner} "))
                && l.starts_with(mode)),
            "{name} {owner} {mode} not in\n{list}"
        );
    }
}

/// The layer diff_ids of an image in a store, bottom first.
fn diff_ids(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v[0]["RootFS"]["Layers"].as_array().expect("RootFS.Layers").iter().map(|l| l.to_string()).collect()
}

/// Runs `script` with `sh -euc` as the user; returns stdout.
fn user_sh(user: &TestUser, script: &str) -> String {
    let out = user.command("sh", &["-euc", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What the stat lines below show: name, owner, mode, type and device numbers.
const STAT: &str = "stat -c '%n %u %g %a %F %t %T'";
const OWNERS: &str = "stat -c '%n %u %g %a'";
const SHOWN: &str =
    "usr/bin/su usr/bin/su-again usr/bin/wall etc/shadow home/u var/www tmp dev/null dev/sda far";

/// Without a subordinate range, every view of a layer shows what its override xattrs record, as
/// root's store shows the owners it could set: `strata ls`, export, a mount through fusermount3
/// (where the xattr itself never shows and can't be set), and a commit, whose layer (tar headers
/// from the recorded values, no xattr in it) and saved archives are the ones root makes for the
/// same changes.
#[test]
fn without_subordinate_ids_every_view_shows_the_recorded_owners() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::without_subids() else { return };
    // A symlink can't carry the xattr: one the image gives a third owner shows the image root's
    // (the common root-owned symlink is faithful), so here the link is root's.
    let tar = owners_tar_with(&user, true, "chown -h 0:0 home/u/link");
    let root = Strata::new();
    let epoch = [("SOURCE_DATE_EPOCH", "1000000000")];
    let as_root =
        |args: &[&str]| common::strata::expect_ok(root.command(args).envs(epoch).output().unwrap(), args);
    let as_user =
        |args: &[&str]| common::strata::expect_ok(user.strata(args).envs(epoch).output().unwrap(), args);
    assert_eq!(as_user(&["import", &tar, "owners:1"]), as_root(&["import", &tar, "owners:1"]));

    // Offline views.
    assert_eq!(as_user(&["ls", "-l", "-R", "owners:1"]), as_root(&["ls", "-l", "-R", "owners:1"]));
    let (user_export, root_export) = (user.path("export.tar"), root.path("export.tar"));
    as_user(&["export", "-o", user_export.to_str().unwrap(), "owners:1"]);
    as_root(&["export", "-o", root_export.to_str().unwrap(), "owners:1"]);
    assert_eq!(listing(&user_export), listing(&root_export));
    assert!(std::fs::read(&user_export).unwrap() == std::fs::read(&root_export).unwrap(), "exports differ");

    // Through a read-only mount of the image: the recorded owners, modes and types.
    let ro = user.path("ro");
    std::fs::create_dir(&ro).unwrap();
    user.give(&ro);
    as_user(&["mount", "owners:1", ro.to_str().unwrap()]);
    let mut ro_mount = Mount::adopt(&ro);
    let shown = user_sh(&user, &format!("cd {}; {STAT} {SHOWN}", ro.display()));
    assert_eq!(
        shown,
        "usr/bin/su 0 0 4755 regular file 0 0\nusr/bin/su-again 0 0 4755 regular file 0 0\n\
         usr/bin/wall 0 5 2755 regular file 0 0\netc/shadow 0 42 640 regular file 0 0\n\
         home/u 1000 1000 700 directory 0 0\nvar/www 33 33 750 directory 0 0\n\
         tmp 0 0 1777 directory 0 0\ndev/null 0 0 666 character special file 1 3\n\
         dev/sda 0 6 660 block special file 8 0\nfar 70000 70001 644 regular file 0 0\n"
    );
    // The xattr never shows: not listed, not readable.
    let listed =
        user_sh(&user, &format!("getfattr -d -m - {}/usr/bin/su {}/tmp", ro.display(), ro.display()));
    assert!(!listed.contains("override_stat"), "{listed}");
    let out = user
        .command("getfattr", &["-n", OVERRIDE, &format!("{}/usr/bin/su", ro.display())])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No such attribute"));
    user.ok(&["umount", ro.to_str().unwrap()]);
    ro_mount.forget();

    // The same changes through a container's mount, as the user and as root (root then gives
    // its new files the user's ids, which is what the user's mount gives them).
    let changes = "umask 022; echo made > tmp/new; chmod 4750 tmp/new; mkfifo tmp/fifo; ln -s new tmp/link; \
                   echo more > tmp/new2; rm tmp/new2";
    let user_cid = as_user(&["create", "--name", "c", "owners:1"]).trim().to_string();
    let rw = user.path("rw");
    std::fs::create_dir(&rw).unwrap();
    user.give(&rw);
    as_user(&["mount", &user_cid, rw.to_str().unwrap()]);
    let mut rw_mount = Mount::adopt(&rw);
    user_sh(&user, &format!("cd {}; {changes}", rw.display()));
    // The override xattr can't be set through the mount, on a copied-up file or a new one.
    for f in ["tmp", "tmp/new"] {
        let p = format!("{}/{f}", rw.display());
        let out = user.command("setfattr", &["-n", OVERRIDE, "-v", "0:0:0644:file", &p]).output().unwrap();
        assert!(!out.status.success(), "setfattr {f} succeeded");
    }
    let shown = user_sh(&user, &format!("cd {}; {STAT} tmp tmp/new tmp/fifo", rw.display()));
    let (u, g) = (user.uid, user.gid);
    assert_eq!(
        shown,
        format!(
            "tmp 0 0 1777 directory 0 0\ntmp/new {u} {g} 4750 regular file 0 0\ntmp/fifo {u} {g} 644 fifo 0 0\n"
        )
    );
    user.ok(&["umount", rw.to_str().unwrap()]);
    rw_mount.forget();

    let root_cid = as_root(&["create", "--name", "c", "owners:1"]).trim().to_string();
    let root_rw = root.path("rw");
    std::fs::create_dir(&root_rw).unwrap();
    as_root(&["mount", &root_cid, root_rw.to_str().unwrap()]);
    let mut root_mount = Mount::adopt(&root_rw);
    sh(&format!(
        "cd {}; umask 022; {changes}; chown {u}:{g} tmp/new tmp/fifo; chown -h {u}:{g} tmp/link; chmod 4750 tmp/new",
        root_rw.display()
    ));
    as_root(&["umount", root_rw.to_str().unwrap()]);
    root_mount.forget();

    let user_image = as_user(&["commit", "c", "owners:2"]);
    let root_image = as_root(&["commit", "c", "owners:2"]);
    let (user_layers, root_layers) =
        (diff_ids(&as_user(&["inspect", "owners:2"])), diff_ids(&as_root(&["inspect", "owners:2"])));
    assert_eq!(user_layers.len(), 2);
    assert_eq!(user_layers, root_layers, "the committed layers differ");
    let export = user.path("committed.tar");
    as_user(&["export", "-o", export.to_str().unwrap(), "owners:2"]);
    let list = listing(&export);
    assert!(list.lines().any(|l| l.starts_with("drwxrwxrwt 0/0 ") && l.ends_with(" tmp/")), "{list}");
    // Saved in every format: the same bytes as root's save of its commit.
    assert_eq!(user_image, root_image, "image ids differ");
    for format in ["docker-archive", "oci-archive"] {
        let (a, b) = (user.path(&format!("{format}.tar")), root.path(&format!("{format}.tar")));
        as_user(&["save", "--format", format, "-o", a.to_str().unwrap(), "owners:2"]);
        as_root(&["save", "--format", format, "-o", b.to_str().unwrap(), "owners:2"]);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{format}: saves differ");
        let members = listing(&a);
        assert!(!members.is_empty());
    }
    let (a, b) = (user.path("oci-dir"), root.path("oci-dir"));
    as_user(&["save", "--format", "oci-dir", "-o", a.to_str().unwrap(), "owners:2"]);
    as_root(&["save", "--format", "oci-dir", "-o", b.to_str().unwrap(), "owners:2"]);
    let blobs = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(blobs(&a), blobs(&b));
    // Pushed to a loopback registry: the same manifest digest.
    let registry = Registry::start(Auth::None);
    let digest = |out: &str| out.lines().find_map(|l| l.split(": digest: ").nth(1)).map(str::to_string);
    let (user_ref, root_ref) =
        (format!("{}/user/owners:2", registry.host()), format!("{}/root/owners:2", registry.host()));
    as_user(&["tag", "owners:2", &user_ref]);
    as_root(&["tag", "owners:2", &root_ref]);
    let (pushed_user, pushed_root) = (as_user(&["push", &user_ref]), as_root(&["push", &root_ref]));
    assert!(digest(&pushed_user).is_some(), "{pushed_user}");
    assert_eq!(digest(&pushed_user), digest(&pushed_root));
    // No layer blob the user saved carries the xattr.
    let layer_tar = user.path("layer.tar");
    for blob in blobs(&a) {
        let p = a.join("blobs/sha256").join(&blob);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("(zcat -f {} > {}) 2>/dev/null", p.display(), layer_tar.display()))
            .status()
            .unwrap();
        assert!(out.success());
        let bytes = std::fs::read(&layer_tar).unwrap();
        assert!(
            !bytes.windows(OVERRIDE.len()).any(|w| w == OVERRIDE.as_bytes()),
            "blob {blob} has the xattr"
        );
    }
}

/// With a subordinate range the mount daemon serves from outside the namespace: owners recorded
/// in override xattrs are shown through the namespace's mapping, and a chown or chmod made from
/// the namespace that the daemon can't make for real (it may not chown to subordinate ids) is
/// recorded in the namespace's own ids: a commit has them. fuse-overlayfs, mounting the same
/// stack inside the namespace as Podman does, shows the same owners.
#[test]
fn chown_and_chmod_through_a_rootless_mount_are_recorded() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::with_subids() else { return };
    let tar = owners_tar(&user, true);
    user.ok(&["import", &tar, "owners:1"]);
    let cid = user.ok(&["create", "owners:1"]).trim().to_string();
    let rw = user.path("rw");
    std::fs::create_dir(&rw).unwrap();
    user.give(&rw);
    user.ok(&["mount", &cid, rw.to_str().unwrap()]);
    let mut rw_mount = Mount::adopt(&rw);
    let r = rw.display();
    let (u, s) = (user.uid, SUB_START);
    // Outside: a recorded owner through the mapping (image gid 6 is subordinate id 5), an owner
    // beyond the range as it is.
    assert_eq!(
        user_sh(&user, &format!("cd {r}; {STAT} dev/sda far")),
        format!("dev/sda {u} {} 660 block special file 8 0\nfar 70000 70001 644 regular file 0 0\n", s + 5)
    );
    let inside = |script: &str| user.ok(&["unshare", "sh", "-euc", script]);
    assert_eq!(inside(&format!("cd {r}; {STAT} dev/sda")), "dev/sda 0 6 660 block special file 8 0\n");
    // The daemon serves from the namespace: a 0600 file of image uid 1000 (subordinate id 999,
    // in a 0700 directory of that owner) reads through the mount from the namespace.
    assert_eq!(inside(&format!("cat {r}/home/u/notes")), "mine\n");
    let daemon =
        std::fs::read_to_string(user.store().join("containers").join(&cid).join("mount.json")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&daemon).unwrap()["pid"].as_i64().unwrap();
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(lines(&uid_map)[0], ["0", &u.to_string(), "1"]);
    inside(&format!(
        "cd {r}; chmod 0600 dev/sda; echo x > tmp/new; chown 1:2 tmp/new; chmod 4755 tmp/new; \
         mkdir tmp/d; chown 33:33 tmp/d"
    ));
    assert_eq!(
        inside(&format!("cd {r}; {STAT} dev/sda tmp/new tmp/d")),
        "dev/sda 0 6 600 block special file 8 0\ntmp/new 1 2 4755 regular file 0 0\ntmp/d 33 33 755 directory 0 0\n"
    );
    assert_eq!(
        user_sh(&user, &format!("cd {r}; {STAT} tmp/new")),
        format!("tmp/new {s} {} 4755 regular file 0 0\n", s + 1)
    );
    // A device node can't be made through any FUSE mount but by root in the initial namespace:
    // the kernel refuses it (EPERM) before the daemon could record one.
    let out = user.strata(&["unshare", "mknod", &format!("{r}/tmp/null"), "c", "1", "3"]).output().unwrap();
    assert!(!out.status.success(), "mknod through a rootless mount succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    // The upper keeps them in the xattr, in the namespace's ids; the files stay the user's.
    let upper = user.store().join("containers").join(&cid).join("upper");
    let recorded =
        |rel: &str| xattr::get(upper.join(rel), OVERRIDE).unwrap().map(|v| String::from_utf8(v).unwrap());
    assert_eq!(recorded("tmp/new").as_deref(), Some("1:2:4755:file"));
    assert_eq!(recorded("dev/sda").as_deref(), Some("0:6:0600:block-8-0"));
    assert_eq!(std::fs::metadata(upper.join("tmp/new")).unwrap().uid(), u);

    // fuse-overlayfs, in the namespace (its own mount there), over the same stack.
    let layer = layer_fs(&user, "owners:1");
    let (fo, work) = (user.path("fo"), user.path("fo-work"));
    for d in [&fo, &work] {
        std::fs::create_dir(d).unwrap();
        user.give(d);
    }
    let script = format!(
        "fuse-overlayfs -o lowerdir={},upperdir={},workdir={} {} </dev/null >/dev/null 2>&1; \
         cd {}; {OWNERS} dev/sda tmp/new tmp/d usr/bin/su; cd /; fusermount3 -u {}",
        layer.display(),
        upper.display(),
        work.display(),
        fo.display(),
        fo.display(),
        fo.display()
    );
    // Owners and modes: fuse-overlayfs 1.10 reads no file type (dev/sda is a plain file there).
    let strata_view = inside(&format!("cd {r}; {OWNERS} dev/sda tmp/new tmp/d usr/bin/su"));
    user.ok(&["umount", rw.to_str().unwrap()]);
    rw_mount.forget();
    assert_eq!(inside(&script), strata_view);

    // Committed in the namespace: the recorded owners and modes are the tar's.
    user.ok(&["commit", &cid, "owners:2"]);
    let export = user.path("committed.tar");
    user.ok(&["export", "-o", export.to_str().unwrap(), "owners:2"]);
    let list = listing(&export);
    for (mode, owner, name) in [
        ("brw-------", "0/6", "dev/sda"),
        ("-rwsr-xr-x", "1/2", "tmp/new"),
        ("drwxr-xr-x", "33/33", "tmp/d/"),
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(mode)
                && l.contains(&format!(" {owner} "))
                && l.ends_with(&format!(" {name}"))),
            "{mode} {owner} {name} not in\n{list}"
        );
    }
}

/// fuse-overlayfs with `-o xattr_permissions=2` (run by a user without a subordinate range over
/// a strata layer) writes `user.fuseoverlayfs.override_stat` in its upper; strata-overlay mounts
/// that stack and shows what fuse-overlayfs showed.
#[test]
fn strata_mounts_a_stack_fuse_overlayfs_wrote_with_override_xattrs() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::without_subids() else { return };
    let tar = owners_tar(&user, true);
    user.ok(&["import", &tar, "owners:1"]);
    let layer = layer_fs(&user, "owners:1");
    let dirs: Vec<_> = ["upper", "w1", "w2", "fo", "so"].iter().map(|d| user.path(d)).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        user.give(d);
    }
    let [upper, w1, w2, fo, so] = [&dirs[0], &dirs[1], &dirs[2], &dirs[3], &dirs[4]];
    // Not dev/null: fuse-overlayfs 1.10 reads only UID:GID:MODE and shows the empty file that
    // stands for the device (strata shows the device, as later fuse-overlayfs do).
    let shown = "tmp tmp/new tmp/d usr/bin/su etc/shadow";
    let fo_view = {
        let _guard = Mount::adopt(fo);
        user_sh(
            &user,
            &format!(
                "fuse-overlayfs -o xattr_permissions=2,lowerdir={},upperdir={},workdir={} {} </dev/null >/dev/null 2>&1
                 cd {}; umask 022; echo x > tmp/new; chmod 4711 tmp/new; mkdir tmp/d; chmod 0700 tmp/d
                 {STAT} {shown}; cd /; fusermount3 -u {}",
                layer.display(),
                upper.display(),
                w1.display(),
                fo.display(),
                fo.display(),
                fo.display()
            ),
        )
    };
    let written = Command::new("getfattr").args(["-R", "-d", "-m", "-"]).arg(upper).output().unwrap();
    let written = String::from_utf8_lossy(&written.stdout);
    assert!(written.contains("user.fuseoverlayfs.override_stat"), "{written}");
    let opts = format!("lowerdir={},upperdir={},workdir={}", layer.display(), upper.display(), w2.display());
    let so_view = {
        let _guard = Mount::adopt(so);
        user_sh(
            &user,
            &format!(
                "{} -o {opts} {} </dev/null >/dev/null 2>&1; cd {}; {STAT} {shown}; cd /; fusermount3 -u {}",
                env!("CARGO_BIN_EXE_strata-overlay"),
                so.display(),
                so.display(),
                so.display()
            ),
        )
    };
    assert_eq!(so_view, fo_view, "upper's xattrs:\n{written}");
}

/// `strata run` as a user with a subordinate range, with runc and crun: the container's root is
/// the user, its other ids the range (as the layers were unpacked); a file the container makes
/// is root's in the committed layer; `strata build` of a small Dockerfile gives its files the
/// owners root's build gives them; cgroup limits without a delegated cgroup v2 subtree are
/// ignored with one line that says so.
#[test]
fn rootless_run_with_runc_and_crun() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::with_subids() else { return };
    let rootfs = user.path("bb");
    common::strata::busybox_rootfs(&rootfs);
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/id")).unwrap();
    let tar = user.path("bb.tar");
    tar_dir(&rootfs, &tar, "plain");
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    user.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    let (u, s) = (user.uid.to_string(), SUB_START.to_string());
    for runtime in ["runc", "crun"] {
        let id = user.ok(&["run", "--rm", "--runtime", runtime, "bb:1", "id"]);
        assert!(id.starts_with("uid=0(root) gid=0"), "{runtime}: {id}");
        assert_eq!(
            lines(&user.ok(&["run", "--rm", "--runtime", runtime, "bb:1", "cat", "/proc/self/uid_map"])),
            [["0", &u, "1"], ["1", &s, &SUB_COUNT.to_string()]],
            "{runtime}"
        );
        let name = format!("made-{runtime}");
        user.ok(&[
            "run",
            "--name",
            &name,
            "--runtime",
            runtime,
            "bb:1",
            "sh",
            "-c",
            "echo hi > /made; mkdir /d",
        ]);
        user.ok(&["commit", &name, &format!("bb:{runtime}")]);
        let export = user.path(&format!("{runtime}.tar"));
        user.ok(&["export", "-o", export.to_str().unwrap(), &format!("bb:{runtime}")]);
        let list = listing(&export);
        for name in ["made", "d/"] {
            assert!(
                list.lines().any(|l| l.contains(" 0/0 ") && l.ends_with(&format!(" {name}"))),
                "{runtime}: {name} not root's in\n{list}"
            );
        }
    }
    // build: RUN as the container's root, COPY's owners recorded where the user can't chown.
    let ctx = user.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "file\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nRUN id -u > /who\nCOPY f /f\nCOPY --chown=33:33 f /g\nRUN ln -s f /l\n",
    )
    .unwrap();
    sh(&format!("chmod -R a+rX {}", ctx.display()));
    user.ok(&["build", "-q", "-t", "bb:built", ctx.to_str().unwrap()]);
    let built = user.path("built.tar");
    user.ok(&["export", "-o", built.to_str().unwrap(), "bb:built"]);
    let list = listing(&built);
    for (owner, name) in [("0/0", "who"), ("0/0", "f"), ("33/33", "g"), ("0/0", "l -> f")] {
        assert!(
            list.lines().any(|l| l.contains(&format!(" {owner} ")) && l.ends_with(&format!(" {name}"))),
            "{owner} {name} not in\n{list}"
        );
    }
    assert_eq!(user.ok(&["run", "--rm", "bb:built", "cat", "/who", "/g"]), "0\nfile\n");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
    tar_dir(&rootfs, &tar, "plain");
    user.ok(&["import", tar.to_str().unwrap(), "bb:sleep"]);
    user.ok(&["run", "-d", "--name", "up", "bb:sleep", "sleep", "30"]);
    removes_a_running_container_at_once(&user);

    let out = user.run(&["run", "--rm", "--memory", "64m", "--pids-limit", "50", "bb:1", "echo", "limited"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "limited\n");
    let err = String::from_utf8_lossy(&out.stderr);
    // A subtree is delegated to the user when the user owns it (the test runs in the cgroup
    // the user's strata starts in).
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim();
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let delegated = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == user.uid);
    if !delegated {
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("rootless") && err.contains("ignored") && err.contains("memory"), "{err}");
    }
}

/// `strata run` as a user without a subordinate range, with runc and crun, as rootless Podman
/// runs one: only 0 → the user is mapped, so `id` says root, a chown to another id fails, and
/// what the container makes is root's in the committed layer (`ls`, `export`, `save`); `create`
/// + `start`, `exec` and a build's `RUN` go the same way; another user is refused with a message.
#[test]
fn rootless_run_without_subordinate_ids() {
    if !dev_fuse_for_users() {
        return;
    }
    let Some(user) = TestUser::without_subids() else { return };
    let rootfs = user.path("bb");
    common::strata::busybox_rootfs(&rootfs);
    for applet in ["id", "chown", "ln", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tar = user.path("bb.tar");
    tar_dir(&rootfs, &tar, "plain");
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    user.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    let u = user.uid.to_string();
    for runtime in ["runc", "crun"] {
        let id = user.ok(&["run", "--rm", "--runtime", runtime, "bb:1", "id"]);
        assert!(id.starts_with("uid=0(root) gid=0"), "{runtime}: {id}");
        assert_eq!(
            lines(&user.ok(&["run", "--rm", "--runtime", runtime, "bb:1", "cat", "/proc/self/uid_map"])),
            [["0", &u, "1"]],
            "{runtime}"
        );
        let name = format!("made-{runtime}");
        let script = "echo hi > /made; mkdir /d; ln -s made /l; touch /etc/new; \
                      if chown 1000 /made 2>/dev/null; then echo chowned; fi; stat -c '%u %g' /made /etc/new";
        let out = user.ok(&["run", "--name", &name, "--runtime", runtime, "bb:1", "sh", "-c", script]);
        assert_eq!(out, "0 0\n0 0\n", "{runtime}");
        user.ok(&["commit", &name, &format!("bb:{runtime}")]);
        let ls = user.ok(&["ls", "-l", &format!("bb:{runtime}"), "/"]);
        for entry in ["made", "d", "l -> made"] {
            assert!(
                ls.lines()
                    .any(|l| l.split_whitespace().nth(2) == Some("0") && l.ends_with(&format!(" {entry}"))),
                "{runtime}: {entry} not root's in\n{ls}"
            );
        }
        let export = user.path(&format!("{runtime}.tar"));
        user.ok(&["export", "-o", export.to_str().unwrap(), &format!("bb:{runtime}")]);
        let list = listing(&export);
        for entry in ["made", "d/", "l -> made", "etc/new"] {
            assert!(
                list.lines().any(|l| l.contains(" 0/0 ") && l.ends_with(&format!(" {entry}"))),
                "{runtime}: {entry} not root's in\n{list}"
            );
        }
        // The committed layer in a saved archive: root's owners, no override xattr.
        let saved = user.path(&format!("{runtime}-saved"));
        user.ok(&["save", "--format", "oci-dir", "-o", saved.to_str().unwrap(), &format!("bb:{runtime}")]);
        let top = newest_layer_blob(&saved);
        let list = listing(&top);
        assert!(list.lines().any(|l| l.contains(" 0/0 ") && l.ends_with(" made")), "{runtime}:\n{list}");
        let out = Command::new("tar")
            .arg("--xattrs")
            .arg("--xattrs-include=*")
            .arg("-tvvf")
            .arg(&top)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("override_stat"), "{runtime}");
    }
    // create + start, exec into a running container.
    user.ok(&["create", "--name", "c", "bb:1", "sh", "-c", "id -u > /x; cat /x"]);
    assert_eq!(user.ok(&["start", "-a", "c"]), "0\n");
    user.ok(&["run", "-d", "--name", "up", "bb:1", "sleep", "30"]);
    assert!(user.ok(&["exec", "up", "id"]).starts_with("uid=0(root)"));
    let err = user.fails(&["exec", "-u", "33", "up", "id"]);
    assert!(err.contains("uid 33") && err.contains("/etc/subuid"), "{err}");
    removes_a_running_container_at_once(&user);
    let err = user.fails(&["run", "--rm", "-u", "33", "bb:1", "id"]);
    assert!(err.contains("uid 33") && err.contains("usermod --add-subuids"), "{err}");
    // build: RUN as the container's root; its file is root's.
    let ctx = user.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN id -u > /who\n").unwrap();
    sh(&format!("chmod -R a+rX {}", ctx.display()));
    user.ok(&["build", "-q", "-t", "bb:built", ctx.to_str().unwrap()]);
    let built = user.path("built.tar");
    user.ok(&["export", "-o", built.to_str().unwrap(), "bb:built"]);
    let list = listing(&built);
    assert!(list.lines().any(|l| l.contains(" 0/0 ") && l.ends_with(" who")), "{list}");
    assert_eq!(user.ok(&["run", "--rm", "bb:built", "cat", "/who"]), "0\n");
}

/// `rm -f` of the running container `up` kills it at once: without a delegated cgroup the
/// runtime can't find its processes for `kill --all` (runc failed, and `rm -f` waited for the
/// process to end by itself).
fn removes_a_running_container_at_once(user: &TestUser) {
    let start = std::time::Instant::now();
    user.ok(&["rm", "-f", "up"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "rm -f took {:?}", start.elapsed());
    assert!(!user.ok(&["ps", "-a"]).contains(" up\n"));
}

/// The last layer blob of the one image in an OCI layout `dir`.
fn newest_layer_blob(dir: &Path) -> std::path::PathBuf {
    let blob = |d: &str| dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    blob(layers.last().unwrap()["digest"].as_str().unwrap())
}

/// `strata-overlay` mounted by `user` (through fusermount3) over a lower dir `l` holding `files`,
/// with `u` and `w` as upper and work dirs: the mountpoint, unmounted when the guard drops.
fn mount_as(user: &TestUser, files: &[(&str, &[u8])]) -> (std::path::PathBuf, Mount) {
    for d in ["l", "u", "w", "mnt"] {
        std::fs::create_dir(user.path(d)).unwrap();
        user.give(&user.path(d));
    }
    for (name, data) in files {
        std::fs::write(user.path("l").join(name), data).unwrap();
        user.give(&user.path("l").join(name));
    }
    let mnt = user.path("mnt");
    let mounted = Mount::adopt(&mnt);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        user.path("l").display(),
        user.path("u").display(),
        user.path("w").display()
    );
    let out = user
        .command(common::mount::BIN, &["-o", &opts, mnt.to_str().unwrap()])
        .env("STRATA_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "strata-overlay as the user: {}", String::from_utf8_lossy(&out.stderr));
    (mnt, mounted)
}

/// A user's mount serves file data from the daemon (no passthrough without CAP_SYS_ADMIN), whose
/// splice pipes are held to `/proc/sys/fs/pipe-max-size`: reads as the user at odd offsets and
/// sizes, the largest READ (1 MiB, too big for the user's pipe: answered through a buffer),
/// across and past the end of the file, and a whole buffered read, all return the file's bytes.
#[test]
fn rootless_reads_at_odd_offsets_and_sizes() {
    let Some(user) = TestUser::without_subids() else { return };
    if !dev_fuse_for_users() {
        return;
    }
    let data = common::registry::noise((3 << 20) + 12345, 3);
    std::fs::create_dir(user.path("out")).unwrap();
    user.give(&user.path("out"));
    let (mnt, mut mounted) = mount_as(&user, &[("big", &data)]);
    let cases = common::mount::read_cases(data.len() as u64);
    let mut script = format!("cat {m}/big > out/all\n", m = mnt.display());
    for (i, (off, n)) in cases.iter().enumerate() {
        script += &format!(
            "dd if={m}/big of=out/{i} iflag=direct,skip_bytes,count_bytes skip={off} count={n} bs={n} status=none\n",
            m = mnt.display()
        );
    }
    let run = user.command("sh", &["-euc", &script]).output().unwrap();
    assert!(run.status.success(), "reads as the user: {}", String::from_utf8_lossy(&run.stderr));
    mounted.unmount();
    assert!(std::fs::read(user.path("out/all")).unwrap() == data, "a whole buffered read");
    for (i, (off, n)) in cases.iter().enumerate() {
        let got = std::fs::read(user.path(&format!("out/{i}"))).unwrap();
        let (start, end) = ((*off as usize).min(data.len()), (*off as usize + n).min(data.len()));
        assert_eq!(got.len(), end - start, "read {n} at {off}: length");
        assert!(got == data[start..end], "read {n} at {off}: wrong bytes");
    }
}

/// Writes through a rootless `strata-overlay` (no passthrough for a user: every WRITE reaches
/// the daemon, and the daemon clears suid/sgid, `FUSE_HANDLE_KILLPRIV_V2`): pieces of odd sizes
/// at odd offsets written back to front, appends, O_DIRECT at an odd offset; a write and a
/// truncate or fallocate by the user (no CAP_FSETID) clear the setuid bit, and the setgid bit of a
/// group-executable file, and the mount shows it at once (`stat -c %a` asks for the mode alone,
/// which the kernel answers from its cache).
#[test]
fn rootless_writes_at_odd_offsets_and_the_suid_bits_they_clear() {
    let Some(user) = TestUser::without_subids() else { return };
    if !dev_fuse_for_users() {
        return;
    }
    let data = common::registry::noise((2 << 20) + 4321, 5);
    std::fs::write(user.path("src"), &data).unwrap();
    user.give(&user.path("src"));
    let (mnt, mut mounted) = mount_as(&user, &[]);
    let (m, src) = (mnt.display(), user.path("src"));
    let src = src.display();
    let cuts = [0usize, 1, 4095, 4097, 70_001, 1 << 20, (1 << 20) + 3, (2 << 20) + 1, data.len()];
    let mut script = String::new();
    for w in cuts.windows(2).rev() {
        script += &format!(
            "dd if={src} of={m}/new bs={n} count=1 skip={o} seek={o} iflag=skip_bytes oflag=seek_bytes \
             conv=notrunc status=none\n",
            n = w[1] - w[0],
            o = w[0]
        );
    }
    script += &format!(
        "cat {src} >> {m}/app; printf x >> {m}/app; cat {src} >> {m}/app\n\
         dd if={src} of={m}/new bs=777777 count=1 seek=5 oflag=direct,seek_bytes conv=notrunc status=none\n\
         for f in su sg sg-noexec tr fa; do printf 12345 > {m}/$f; done\n\
         chmod 4755 {m}/su; chmod 2775 {m}/sg; chmod 2745 {m}/sg-noexec; chmod 6755 {m}/tr {m}/fa\n\
         for f in su sg sg-noexec; do printf x >> {m}/$f; done\n\
         truncate -s 2 {m}/tr; fallocate -l 8192 {m}/fa\n\
         for f in su sg sg-noexec tr; do echo $f $(stat -c %a {m}/$f) $(cat {m}/$f); done\n\
         echo fa $(stat -c %a {m}/fa) $(stat -c %s {m}/fa)\n"
    );
    let run = user.command("sh", &["-euc", &script]).output().unwrap();
    assert!(run.status.success(), "writes as the user: {}", String::from_utf8_lossy(&run.stderr));
    mounted.unmount();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "su 755 12345x\nsg 775 12345x\nsg-noexec 2745 12345x\ntr 755 12\nfa 755 8192\n",
        "modes after the user's writes"
    );
    let mut expect = data.clone();
    expect[5..777_782].copy_from_slice(&data[..777_777]);
    assert!(std::fs::read(user.path("u/new")).unwrap() == expect, "the written file in the upper");
    let mut app = data.clone();
    app.push(b'x');
    app.extend_from_slice(&data);
    assert!(std::fs::read(user.path("u/app")).unwrap() == app, "the appended file in the upper");
}
