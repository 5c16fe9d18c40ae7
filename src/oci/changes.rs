//! Docker's `--change` instructions (`import -c`, `commit -c`) applied to an image config.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

/// Applies one instruction such as `CMD ["sh"]`, `ENV A=b`, `EXPOSE 80/tcp` to `config`.
pub fn apply(config: &mut Value, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = |why: &str| anyhow::anyhow!("invalid change {change:?}: {why}");
    if rest.is_empty() {
        return Err(bad("missing arguments"));
    }
    let cfg = config
        .as_object_mut()
        .context("image config is not a JSON object")?
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("image config field `config` is not an object")?;
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), command(rest, true));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), command(rest, true));
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), rest.into());
        }
        "USER" => {
            cfg.insert("User".into(), rest.into());
        }
        "ENV" => {
            let env = cfg
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .context("config Env is not a list")?;
            for (k, v) in key_values(rest).map_err(&bad)? {
                env.retain(|e| {
                    e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek) != Some(k.as_str())
                });
                env.push(format!("{k}={v}").into());
            }
        }
        "LABEL" => {
            let labels = object(cfg, "Labels")?;
            for (k, v) in key_values(rest).map_err(&bad)? {
                labels.insert(k, v.into());
            }
        }
        "EXPOSE" => {
            let ports = object(cfg, "ExposedPorts")?;
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
                    return Err(bad("EXPOSE takes PORT[/tcp|udp|sctp]"));
                }
                ports.insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let vols = object(cfg, "Volumes")?;
            let list = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(l) => l,
                Err(_) => rest.split_whitespace().map(str::to_string).collect(),
            };
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        other => bail!(
            "invalid change {change:?}: {other} is not one of CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME"
        ),
    }
    Ok(())
}

fn object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Map<String, Value>> {
    cfg.entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .with_context(|| format!("config {key} is not an object"))
}

/// JSON array form `["a","b"]`, else shell form wrapped in `/bin/sh -c`.
fn command(rest: &str, shell_form: bool) -> Value {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v.into(),
        Err(_) if shell_form => json!(["/bin/sh", "-c", rest]),
        Err(_) => json!([rest]),
    }
}

/// `K=V K2="v 2"` or the legacy single `K V` form.
fn key_values(rest: &str) -> Result<Vec<(String, String)>, &'static str> {
    if !rest.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).ok_or("expected KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err("expected KEY=VALUE pairs");
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.peek() {
                        value.push(*n);
                    }
                }
                _ => value.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("unterminated quote");
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_dockers_instructions() {
        let mut c = json!({});
        for ch in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "LABEL maintainer=me version=2",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
        ] {
            apply(&mut c, ch).unwrap();
        }
        let cfg = &c["config"];
        assert_eq!(cfg["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/init"]));
        assert_eq!(cfg["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(cfg["WorkingDir"], "/srv");
        assert_eq!(cfg["User"], "1000:1000");
        assert_eq!(cfg["Labels"]["version"], "2");
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Volumes"], json!({"/data": {}}));
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        let mut c = json!({});
        assert!(apply(&mut c, "RUN rm -rf /").is_err());
        assert!(apply(&mut c, "EXPOSE http").is_err());
        assert!(apply(&mut c, "ENV").is_err());
        assert!(apply(&mut c, "ENV A=\"x").is_err());
    }
}
