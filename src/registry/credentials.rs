//! Saved registry credentials: strata's own `auth.json` (mode 0600, in [`config_dir`]) in Docker's
//! format (`{"auths": {"host:port": {"auth": base64("user:pass")}}}`), and, read-only, Docker's
//! `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`) `auths`. strata's file wins.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::base64;
use super::config::{config_dir, home};
use super::endpoint::normalize_registry;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization` header value for basic auth.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", base64::encode(format!("{}:{}", self.username, self.password).as_bytes()))
    }
}

pub fn auth_file() -> PathBuf {
    config_dir().join("auth.json")
}

pub fn docker_config_file() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("config.json"),
        _ => home().join(".docker/config.json"),
    }
}

/// The credentials for `registry` (a reference's registry name), from strata's file, else Docker's.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    let want = normalize_registry(registry);
    for path in [auth_file(), docker_config_file()] {
        if let Some(c) = lookup_in(&path, &want)? {
            tracing::debug!("credentials for {want} from {}", path.display());
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn lookup_in(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let Some(doc) = read_json(path)? else { return Ok(None) };
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else { return Ok(None) };
    for (key, entry) in auths {
        if normalize_registry(key) != registry {
            continue;
        }
        if let Some(encoded) = entry.get("auth").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            let decoded =
                base64::decode(encoded).and_then(|b| String::from_utf8(b).ok()).with_context(|| {
                    format!("{}: auths.{key}.auth is not base64 of user:password", path.display())
                })?;
            let Some((u, p)) = decoded.split_once(':') else {
                bail!("{}: auths.{key}.auth is not base64 of user:password", path.display());
            };
            return Ok(Some(Credentials { username: u.into(), password: p.into() }));
        }
        let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_string);
        if let (Some(username), Some(password)) = (field("username"), field("password")) {
            return Ok(Some(Credentials { username, password }));
        }
        if entry.get("identitytoken").is_some() {
            tracing::warn!("{}: identity tokens for {key} are not supported; ignored", path.display());
        }
    }
    Ok(None)
}

/// Saves credentials for `registry` in strata's file (created 0600, written atomically).
pub fn save(registry: &str, creds: &Credentials) -> Result<()> {
    let path = auth_file();
    let mut doc = read_json(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
    let auth = base64::encode(format!("{}:{}", creds.username, creds.password).as_bytes());
    let Some(obj) = doc.as_object_mut() else { bail!("{} is not a JSON object", path.display()) };
    let auths = obj.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let Some(auths) = auths.as_object_mut() else { bail!("{}: auths is not an object", path.display()) };
    auths.insert(normalize_registry(registry), serde_json::json!({ "auth": auth }));
    write_private(&path, &serde_json::to_vec_pretty(&doc)?)
}

/// Removes saved credentials for `registry` from strata's file; returns whether there were any.
pub fn remove(registry: &str) -> Result<bool> {
    let path = auth_file();
    let Some(mut doc) = read_json(&path)? else { return Ok(false) };
    let want = normalize_registry(registry);
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else { return Ok(false) };
    let keys: Vec<String> = auths.keys().filter(|k| normalize_registry(k) == want).cloned().collect();
    for k in &keys {
        auths.remove(k);
    }
    if keys.is_empty() {
        return Ok(false);
    }
    write_private(&path, &serde_json::to_vec_pretty(&doc)?)?;
    Ok(true)
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory, then renames it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("credential file has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".auth.json.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_forms_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let doc = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": base64::encode(b"hub:pw:with:colons")},
            "http://127.0.0.1:5000": {"username": "u", "password": "p"},
            "ghcr.io": {"identitytoken": "x"},
        }});
        std::fs::write(&path, doc.to_string()).unwrap();
        let hub = lookup_in(&path, "docker.io").unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub", "pw:with:colons"));
        let local = lookup_in(&path, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.basic_header(), format!("Basic {}", base64::encode(b"u:p")));
        assert!(lookup_in(&path, "ghcr.io").unwrap().is_none());
        assert!(lookup_in(&dir.path().join("missing.json"), "docker.io").unwrap().is_none());
        std::fs::write(&path, r#"{"auths": {"x.io": {"auth": "!!"}}}"#).unwrap();
        assert!(lookup_in(&path, "x.io").unwrap_err().to_string().contains("not base64"));
    }

    #[test]
    fn private_writes_are_0600_in_a_0700_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        write_private(&path, br#"{"auths":{},"other":1}"#).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
