//! strata's user configuration directory (`$XDG_CONFIG_HOME/strata`, else `~/.config/strata`) and
//! `registries.json` there: `{"insecure-registries": ["host:port", …]}`, like Docker's daemon.json.

use std::path::PathBuf;

use anyhow::{Context, Result};

pub fn config_dir() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("strata"),
        _ => home().join(".config/strata"),
    }
}

pub fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
}

pub fn registries_file() -> PathBuf {
    config_dir().join("registries.json")
}

/// Registries the user allows over plain HTTP / unverified TLS (missing file: none).
pub fn insecure_registries() -> Result<Vec<String>> {
    let path = registries_file();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_insecure(&bytes).with_context(|| format!("{}", path.display()))
}

/// Parses `registries.json`; names are normalised like references' registries.
pub fn parse_insecure(bytes: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default, rename = "insecure-registries")]
        insecure: Vec<String>,
    }
    let f: File =
        serde_json::from_slice(bytes).context("expected {\"insecure-registries\": [\"host:port\", …]}")?;
    Ok(f.insecure.iter().map(|h| super::endpoint::normalize_registry(h)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_list_parses_and_normalises() {
        let l = parse_insecure(br#"{"insecure-registries": ["http://Reg.Lan:5000/", "10.0.0.2"]}"#).unwrap();
        assert_eq!(l, vec!["reg.lan:5000".to_string(), "10.0.0.2".to_string()]);
        assert!(parse_insecure(b"{}").unwrap().is_empty());
        assert!(parse_insecure(b"[1]").is_err());
    }
}
