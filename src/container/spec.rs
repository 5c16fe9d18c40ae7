//! A container's [`RunConfig`] from its image's config and the `run`/`create` flags, with Docker's
//! rules: `--entrypoint` replaces the image's Entrypoint and drops its Cmd, a command replaces
//! Cmd; Env from the image, then `--env-file`, then `-e` (later wins; `-e KEY` takes the host's
//! value); Docker's PATH when none; HOSTNAME; the image's WorkingDir, User and StopSignal.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::oneshot::DEFAULT_PATH;
use crate::store::containers::{MountSpec, RunConfig};

/// The `run`/`create` flags, parsed but not yet applied.
#[derive(Clone, Debug, Default)]
pub struct RunFlags {
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    /// `HOST:CTR[:ro|rw]`.
    pub volumes: Vec<String>,
    /// `PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub network: Option<String>,
    pub runtime: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub memory: Option<String>,
    pub pids_limit: Option<i64>,
    pub init: bool,
    pub tty: bool,
    pub interactive: bool,
    pub rm: bool,
    /// COMMAND [ARG…] after the image.
    pub command: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// `512m`, `1g`, `100k`, `1048576` (bytes) → bytes.
pub fn parse_memory(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 =
        num.parse().map_err(|_| anyhow::anyhow!("invalid --memory {s:?}: a size such as 512m or 1g"))?;
    let bytes = n.checked_mul(mult).with_context(|| format!("invalid --memory {s:?}: too large"))?;
    if bytes < 6 << 20 {
        bail!("invalid --memory {s:?}: the minimum is 6m, as with Docker");
    }
    Ok(bytes)
}

/// One `--env-file`: `KEY=VALUE` lines, `#` comments and blank lines skipped, `KEY` alone takes
/// the host's value.
fn env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --env-file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Applies `KEY=VALUE` (or `KEY`: the host's value, dropped when unset) over `env`.
fn set_env(env: &mut Vec<String>, item: &str) -> Result<()> {
    let (key, value) = match item.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => match std::env::var(item) {
            Ok(v) => (item.to_string(), v),
            Err(_) => return Ok(()),
        },
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        bail!("invalid environment variable {item:?}");
    }
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(format!("{key}={value}"));
    Ok(())
}

fn volume(v: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts[..] {
        [s, d] => (s, d, "rw"),
        [s, d, m] => (s, d, m),
        _ => bail!("invalid volume {v:?}: HOST:CONTAINER[:ro|rw]"),
    };
    if !src.starts_with('/') {
        bail!("invalid volume {v:?}: strata has no named volumes; the host path must be absolute");
    }
    if !dst.starts_with('/') {
        bail!("invalid volume {v:?}: the container path must be absolute");
    }
    let rw = match mode {
        "rw" => true,
        "ro" => false,
        m => bail!("invalid volume {v:?}: unknown mode {m:?} (ro or rw)"),
    };
    if !Path::new(src).exists() {
        bail!("invalid volume {v:?}: bind source path does not exist: {src}");
    }
    Ok(MountSpec { kind: "bind".into(), source: PathBuf::from(src), destination: dst.into(), rw })
}

/// The container's config: the image's (`config` is the image config JSON) under the flags.
/// Without `need_command`, an image with no command gives a container that can be mounted but
/// not started (`strata create IMAGE` of a bare rootfs).
pub fn run_config(image: &Value, f: &RunFlags, id: &str, need_command: bool) -> Result<RunConfig> {
    let c = &image["config"];
    let (entrypoint, cmd) = match &f.entrypoint {
        Some(ep) if ep.is_empty() => (Vec::new(), f.command.clone()),
        Some(ep) => (vec![ep.clone()], f.command.clone()),
        None if f.command.is_empty() => (strings(&c["Entrypoint"]), strings(&c["Cmd"])),
        None => (strings(&c["Entrypoint"]), f.command.clone()),
    };
    let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if args.is_empty() && need_command {
        bail!("no command specified: the image has no Entrypoint or Cmd; give one after the image");
    }
    let network = f.network.clone().unwrap_or_else(|| "host".into());
    if network != "host" && network != "none" {
        bail!(
            "invalid --network {network:?}: strata has no bridge network; use --network host (the default) or none"
        );
    }
    let hostname = match &f.hostname {
        Some(h) => h.clone(),
        None if network == "host" => super::oneshot::host_name(),
        None => id.get(..12).unwrap_or(id).to_string(),
    };
    let mut env = strings(&c["Env"]);
    for file in &f.env_files {
        for item in env_file(file)? {
            set_env(&mut env, &item)?;
        }
    }
    for item in &f.env {
        set_env(&mut env, item)?;
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    let working_dir =
        f.workdir.clone().unwrap_or_else(|| c["WorkingDir"].as_str().unwrap_or_default().to_string());
    if !working_dir.is_empty() {
        super::init_layer::container_path(&working_dir)
            .with_context(|| format!("invalid working directory {working_dir:?}"))?;
    }
    let mut mounts: Vec<MountSpec> = f.volumes.iter().map(|v| volume(v)).collect::<Result<_>>()?;
    for t in &f.tmpfs {
        let dest = t.split(':').next().unwrap_or_default();
        super::init_layer::container_path(dest).with_context(|| format!("invalid --tmpfs {t:?}"))?;
        mounts.push(MountSpec {
            kind: "tmpfs".into(),
            source: PathBuf::new(),
            destination: dest.into(),
            rw: true,
        });
    }
    let memory = f.memory.as_deref().map(parse_memory).transpose()?.unwrap_or(0);
    let runtime = f.runtime.clone().unwrap_or_else(|| "runc".into());
    let mut cfg = RunConfig {
        args,
        entrypoint,
        cmd,
        env,
        working_dir,
        user: f.user.clone().unwrap_or_else(|| c["User"].as_str().unwrap_or_default().to_string()),
        hostname,
        network,
        mounts,
        read_only: f.read_only,
        runtime,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        privileged: f.privileged,
        memory,
        pids_limit: f.pids_limit.unwrap_or(0).max(0),
        init: f.init,
        tty: f.tty,
        open_stdin: f.interactive,
        auto_remove: f.rm,
        stop_signal: c["StopSignal"].as_str().unwrap_or("SIGTERM").to_string(),
    };
    super::bundle::capabilities(&cfg)?;
    if cfg.init {
        let tini = super::bundle::init_binary()?;
        cfg.mounts.push(MountSpec {
            kind: "bind".into(),
            source: tini,
            destination: super::bundle::INIT_PATH.into(),
            rw: false,
        });
        cfg.args.splice(0..0, [super::bundle::INIT_PATH.to_string(), "--".into()]);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn entrypoint_and_cmd_follow_docker_rules() {
        let img = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a", "b"], "Env": ["PATH=/x", "K=1"]}});
        let f = RunFlags::default();
        assert_eq!(run_config(&img, &f, ID, true).unwrap().args, ["/ep", "a", "b"]);
        let f = RunFlags { command: vec!["c".into()], ..RunFlags::default() };
        assert_eq!(run_config(&img, &f, ID, true).unwrap().args, ["/ep", "c"]);
        let f = RunFlags { entrypoint: Some("/other".into()), ..RunFlags::default() };
        assert_eq!(run_config(&img, &f, ID, true).unwrap().args, ["/other"]);
        let f =
            RunFlags { entrypoint: Some(String::new()), command: vec!["x".into()], ..RunFlags::default() };
        assert_eq!(run_config(&img, &f, ID, true).unwrap().args, ["x"]);
        let f = RunFlags {
            env: vec!["K=2".into(), "NEW=3".into()],
            network: Some("none".into()),
            ..RunFlags::default()
        };
        let cfg = run_config(&img, &f, ID, true).unwrap();
        assert_eq!(cfg.env, ["PATH=/x", "K=2", "NEW=3", "HOSTNAME=0123456789ab"]);
        assert!(run_config(&json!({}), &RunFlags::default(), ID, true).is_err());
        let f = RunFlags { network: Some("bridge".into()), ..RunFlags::default() };
        assert!(format!("{:#}", run_config(&img, &f, ID, true).unwrap_err()).contains("--network host"));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert!(parse_memory("1k").is_err());
        assert!(parse_memory("lots").is_err());
    }
}
