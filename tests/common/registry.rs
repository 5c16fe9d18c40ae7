//! A real CNCF distribution registry (`docker-registry serve CONFIG`) on 127.0.0.1 with a config and
//! storage of its own, optionally behind htpasswd (bcrypt) or token auth; plus OCI fixtures built with
//! umoci and pushed with skopeo. Dropping a [`Registry`] kills its process.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::token_issuer::TokenIssuer;

pub enum Auth<'a> {
    None,
    /// htpasswd file with one bcrypt entry.
    Basic {
        user: &'a str,
        password: &'a str,
    },
    /// Token auth against a running issuer.
    Token(&'a TokenIssuer),
}

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry must be installed (scripts/test.sh installs it)"
        );
        let dir = tempfile::Builder::new().prefix("strata-registry-").tempdir().expect("tempdir");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Basic { user, password } => {
                let out =
                    Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("run htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n", path.display())
            }
            Auth::Token(issuer) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                issuer.realm(),
                super::token_issuer::SERVICE,
                super::token_issuer::ISSUER,
                issuer.cert().display()
            ),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: strata-test-secret\n{auth_yaml}",
                dir.path().join("storage").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            match wait_ready(child, port, &dir) {
                Ok(child) => return Registry { child, port, dir },
                Err(log) => eprintln!("docker-registry on port {port} did not start:\n{log}"),
            }
        }
        panic!("docker-registry did not start after 5 tries");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's stderr: access log lines and errors.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log request lines (`GET /v2/x/blobs/sha256:… 200`), oldest first. Waits a moment so
    /// lines for requests just answered are written.
    pub fn requests(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        self.log()
            .lines()
            .filter_map(|l| {
                let start = l.find("] \"")? + 3;
                let rest = &l[start..];
                let end = rest.find('"')?;
                let status = rest[end + 1..].split_whitespace().next().unwrap_or("");
                let mut parts = rest[..end].split_whitespace();
                Some(format!("{} {} {status}", parts.next()?, parts.next()?))
            })
            .collect()
    }

    /// Blob downloads (`GET …/blobs/sha256:…`) among `requests`.
    pub fn blob_gets(requests: &[String]) -> Vec<String> {
        requests.iter().filter(|r| r.starts_with("GET ") && r.contains("/blobs/sha256:")).cloned().collect()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the port answers; on failure kills the process and returns its log.
fn wait_ready(mut child: Child, port: u16, dir: &tempfile::TempDir) -> Result<Child, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default())
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An OCI image layout built with umoci.
pub struct Layout {
    pub path: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Layout {
    /// `umoci init --layout PATH`.
    pub fn init(path: &Path) -> Layout {
        run(Command::new("umoci").arg("init").arg("--layout").arg(path));
        Layout { path: path.to_path_buf() }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path.display())
    }

    /// `umoci new --image L:TAG` (an image with no layers).
    pub fn new_image(&self, tag: &str) {
        run(Command::new("umoci").args(["new", "--image", &self.image(tag)]));
    }

    /// `umoci tag`: `to` names the same manifest as `from`.
    pub fn tag(&self, from: &str, to: &str) {
        run(Command::new("umoci").args(["tag", "--image", &self.image(from), to]));
    }

    /// Adds one layer to `tag`: unpack, let `change` edit the rootfs, repack.
    pub fn add_layer(&self, tag: &str, change: impl FnOnce(&Path)) {
        let bundle = self.path.with_extension(format!("bundle-{tag}"));
        let _ = std::fs::remove_dir_all(&bundle);
        run(Command::new("umoci").args(["unpack", "--image", &self.image(tag)]).arg(&bundle));
        change(&bundle.join("rootfs"));
        run(Command::new("umoci").args(["repack", "--image", &self.image(tag)]).arg(&bundle));
        std::fs::remove_dir_all(&bundle).unwrap();
    }

    /// `umoci unpack` into `bundle`; returns its rootfs.
    pub fn unpack(&self, tag: &str, bundle: &Path) -> PathBuf {
        run(Command::new("umoci").args(["unpack", "--image", &self.image(tag)]).arg(bundle));
        bundle.join("rootfs")
    }

    /// `skopeo copy oci:L:TAG docker://DEST` (`format`: "oci" or "v2s2").
    pub fn push(&self, tag: &str, dest: &str, format: &str) {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "-f",
            format,
            &format!("oci:{}", self.image(tag)),
            &format!("docker://{dest}"),
        ]));
    }
}

/// `skopeo inspect --raw` of a registry image: the manifest bytes as served.
pub fn skopeo_raw(image: &str, creds: Option<&str>) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--creds", cr]);
    }
    let out = c.arg(format!("docker://{image}")).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect {image}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Deterministic incompressible bytes (xorshift), for layers big enough to take a while.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.write_all(&x.to_le_bytes()).unwrap();
    }
    out.truncate(len);
    out
}

/// Runs strata with `HOME` and `XDG_CONFIG_HOME` inside the test's temp dir, so no real user's
/// credentials or registries.json are read or written.
pub fn strata_cmd(s: &super::strata::Strata, args: &[&str]) -> Command {
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = s.command(args);
    c.env("HOME", &home).env("XDG_CONFIG_HOME", home.join(".config")).env_remove("DOCKER_CONFIG");
    c
}

/// Runs and asserts success; returns stdout.
pub fn ok(s: &super::strata::Strata, args: &[&str]) -> String {
    super::strata::expect_ok(strata_cmd(s, args).output().expect("run strata"), args)
}

/// Runs and asserts a one-line error without a panic; returns stderr.
pub fn fails(s: &super::strata::Strata, args: &[&str]) -> String {
    super::strata::expect_failure(strata_cmd(s, args).output().expect("run strata"), args)
}

/// What a tree holds, path by path: kind, permissions, owner, size, content hash, link target
/// (mtimes left out). `.wh.` whiteouts are applied when layers are merged with [`merge_layers`].
pub type Tree = std::collections::BTreeMap<PathBuf, String>;

pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Tree) {
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let t = m.file_type();
        let what = if t.is_dir() {
            "dir".to_string()
        } else if t.is_symlink() {
            format!("link->{}", std::fs::read_link(&p).unwrap().display())
        } else if t.is_file() {
            use sha2::Digest;
            format!("file {} {}", m.size(), hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())))
        } else {
            format!("special {:o} {}", m.mode() & 0o170000, m.rdev())
        };
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        out.insert(rel, format!("{what} mode={:o} owner={}:{}", m.mode() & 0o7777, m.uid(), m.gid()));
        if t.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// The merged view of unpacked layer trees, bottom first: upper entries win, `.wh.NAME` hides
/// NAME below, `.wh..wh..opq` hides everything below in its directory.
pub fn merge_layers(layers: &[PathBuf]) -> Tree {
    let mut acc = Tree::new();
    for layer in layers {
        let t = tree(layer);
        for path in t.keys() {
            let name = path.file_name().unwrap().to_string_lossy();
            let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
            if name == ".wh..wh..opq" {
                acc.retain(|p, _| !(p.starts_with(&parent) && p != &parent));
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = parent.join(hidden);
                acc.retain(|p, _| !p.starts_with(&gone));
            }
        }
        for (path, what) in t {
            if !path.file_name().unwrap().to_string_lossy().starts_with(".wh.") {
                acc.insert(path, what);
            }
        }
    }
    acc
}
