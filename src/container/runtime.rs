//! The OCI runtime that does the isolation: runc (the default) or crun, found in PATH or given
//! as a path. Its state lives inside the store (`runtime/<name>`), so two stores never mix.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

#[derive(Clone, Debug)]
pub struct Runtime {
    /// `runc` or `crun` (what its command line looks like).
    pub name: String,
    pub path: PathBuf,
    /// Its `--root`: `<store>/runtime/<name>`.
    pub state_root: PathBuf,
    /// crun refuses a cgroup v1 host that also mounts cgroup v2 at /sys/fs/cgroup/unified: it runs
    /// in its own mount namespace without that mount.
    private_cgroup_ns: bool,
}

/// What a runtime failing to start a process means, as Docker's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// 127: the command was not found.
    NotFound = 127,
    /// 126: it can't be invoked (permission denied, a directory…).
    CannotInvoke = 126,
    /// 125: anything else (strata or the runtime failed).
    Other = 125,
}

/// Classifies a runtime's error message the way Docker does.
pub fn classify(msg: &str) -> StartFailure {
    let m = msg.to_ascii_lowercase();
    let exec = m.contains("exec") || m.contains("executable");
    if exec && (m.contains("not found") || m.contains("no such file")) {
        StartFailure::NotFound
    } else if exec
        && (m.contains("permission denied") || m.contains("is a directory") || m.contains("exec format"))
    {
        StartFailure::CannotInvoke
    } else {
        StartFailure::Other
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

impl Runtime {
    /// `runc`, `crun` (looked up in PATH) or a path to either (the file name tells which).
    pub fn find(spec: &str, store_root: &Path) -> Result<Runtime> {
        let spec = if spec.is_empty() { "runc" } else { spec };
        let path = if spec.contains('/') {
            let p = PathBuf::from(spec);
            if !p.is_file() {
                bail!("runtime {spec} does not exist");
            }
            p
        } else {
            match which(spec) {
                Some(p) => p,
                None => match spec {
                    "runc" | "crun" => bail!(
                        "the OCI runtime {spec} is not installed (not found in PATH): install the Debian package {spec} (apt-get install {spec})"
                    ),
                    _ => bail!(
                        "unknown runtime {spec:?}: strata runs containers with runc or crun (or a path to one)"
                    ),
                },
            }
        };
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let name = if file.contains("crun") { "crun" } else { "runc" }.to_string();
        let private_cgroup_ns = name == "crun"
            && crate::fs::mount::mount_type(Path::new("/sys/fs/cgroup/unified")).ok().flatten().as_deref()
                == Some("cgroup2")
            && crate::fs::mount::mount_type(Path::new("/sys/fs/cgroup/memory")).ok().flatten().is_some();
        let state_root = store_root.join("runtime").join(&name);
        private_dir(&state_root)?;
        Ok(Runtime { state_root, name, path, private_cgroup_ns })
    }

    /// runc reads `config.json` once, as it starts; crun opens it a second time later. Only the
    /// first can be started before its bundle is written (see `config_pipe`).
    pub fn reads_config_once(&self) -> bool {
        self.name == "runc"
    }

    /// Rootless crun on a hybrid cgroup host runs inside strata's user namespace (see
    /// [`Runtime::command`]): the container then gets no user namespace of its own.
    pub fn in_user_namespace(&self) -> bool {
        self.private_cgroup_ns && super::rootless::rootless()
    }

    /// The runtime with its global flags: `--root`, and `--log` (JSON lines) when given.
    pub fn command(&self, log: Option<&Path>) -> Command {
        // Rootless: no mount namespace of its own to make (that needs privileges); crun leaves
        // cgroups alone unless a delegated subtree is there (see `rootless`).
        let rootless = super::rootless::rootless();
        let root_only =
            || super::rootless::id_maps().map(|m| super::rootless::root_only(&m)).unwrap_or(false);
        let mut c = if self.in_user_namespace() && root_only() {
            // Without a subordinate range strata has no namespace of its own: util-linux's
            // unshare maps the user alone to root, which needs no setuid helper.
            let mut c = Command::new("unshare");
            c.args(["--user", "--map-root-user", "--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t tmpfs tmpfs /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
                .arg(&self.path);
            c
        } else if self.in_user_namespace() {
            // That mount namespace takes a user namespace for a user: strata's own, where the
            // container then needs none (`rootless::adapt`); cgroup2 is covered, not unmounted
            // (a mount inherited from a more privileged namespace is locked).
            let store = self.state_root.parent().and_then(Path::parent).unwrap_or(Path::new("."));
            let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("strata")));
            c.arg("--root")
                .arg(store)
                .args(["unshare", "sh", "-c"])
                .arg("mount -t tmpfs tmpfs /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
                .arg(&self.path);
            c
        } else if self.private_cgroup_ns {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
                .arg(&self.path);
            c
        } else {
            Command::new(&self.path)
        };
        c.arg("--root").arg(&self.state_root);
        if rootless && self.name == "crun" && !super::rootless::cgroup_delegated() {
            c.arg("--cgroup-manager=disabled");
        }
        if let Some(log) = log {
            if self.name == "crun" {
                c.arg(format!("--log=file:{}", log.display())).arg("--log-format=json");
            } else {
                c.arg("--log").arg(log).args(["--log-format", "json"]);
            }
        }
        c
    }

    /// Forgets a container the runtime may still know (a killed monitor's): kills what is left
    /// of it and deletes its state. Errors are ignored: usually there is nothing to delete.
    pub fn delete(&self, runtime_id: &str) {
        // Both keep a container's state in `<root>/<id>`: nothing there, nothing to delete.
        if !self.state_root.join(runtime_id).exists() {
            return;
        }
        let _ = self
            .command(None)
            .args(["delete", "--force", runtime_id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Sends `signal` to the container's processes (`all`: every one, not just the first).
    pub fn kill(&self, runtime_id: &str, signal: &str, all: bool) -> Result<()> {
        let mut c = self.command(None);
        c.arg("kill");
        // `--all` finds the processes through the container's cgroup, which a rootless one has
        // only under a delegated subtree (runc fails without: "lstat : no such file"). The
        // container has a pid namespace of its own: SIGKILL to its first process ends them all.
        if all && (!super::rootless::rootless() || super::rootless::cgroup_delegated()) {
            c.arg("--all");
        }
        let out = c.arg(runtime_id).arg(signal).stdin(std::process::Stdio::null()).output()?;
        if !out.status.success() {
            bail!("{} kill {signal}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

/// Creates `dir` (and missing parents) closed to other users, whatever the umask.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
}

/// The last error a runtime wrote to its JSON log.
pub fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .find_map(|v| v["msg"].as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_runtime_errors_as_docker_does() {
        let runc = r#"runc run failed: unable to start container process: exec: "/bin/nosuch": stat /bin/nosuch: no such file or directory"#;
        assert_eq!(classify(runc), StartFailure::NotFound);
        assert_eq!(
            classify("executable file `nosuch` not found in $PATH: No such file or directory"),
            StartFailure::NotFound
        );
        assert_eq!(classify(r#"exec: "/etc/passwd": permission denied"#), StartFailure::CannotInvoke);
        assert_eq!(classify("cgroup: no such controller"), StartFailure::Other);
    }
}
