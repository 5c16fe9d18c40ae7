//! `strata build` harness: contexts written from (path, content) lists, builds run for real, and
//! the built image read back (config from the store, merged tree as `strata export` writes it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::strata::Strata;

/// Writes a build context: `path` → content (a path ending in `/` is a directory).
pub fn context(s: &Strata, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (p, content) in files {
        let full = dir.join(p);
        if p.ends_with('/') {
            std::fs::create_dir_all(&full).unwrap();
            continue;
        }
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
    }
    dir
}

/// Runs `strata build ARGS` (extra env given), stdin from `stdin` if any.
pub fn build_with(s: &Strata, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    let mut c = s.command(&all);
    c.env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        c.env(k, v);
    }
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run strata build");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A successful build: (stdout, stderr).
pub fn build_ok(s: &Strata, args: &[&str]) -> (String, String) {
    let out = build_with(s, args, &[], None);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "strata build {args:?} failed:\n{e}\n{o}");
    (o, e)
}

/// A failed build: its exit code and stderr.
pub fn build_fails(s: &Strata, args: &[&str]) -> (i32, String) {
    let out = build_with(s, args, &[], None);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "strata build {args:?} should fail:\n{e}");
    assert!(!e.contains("panicked"), "strata panicked: {e}");
    (out.status.code().unwrap_or(-1), e)
}

/// The image config JSON (`config` blob) of IMAGE.
pub fn config(s: &Strata, image: &str) -> serde_json::Value {
    let store = strata::store::Store::open(&s.root(), strata::store::LockMode::Shared).unwrap();
    let img = store.resolve_image(image).unwrap();
    store.image_config(&img).unwrap()
}

/// One entry of a merged tree: (kind, mode, uid, gid, content or link target).
pub type Facts = (char, u32, u64, u64, String);

/// The merged tree of IMAGE via `strata export`: path → facts (root excluded).
pub fn tree(s: &Strata, image: &str) -> BTreeMap<String, Facts> {
    let out = s.command(&["export", image]).output().unwrap();
    assert!(out.status.success(), "export {image}: {}", String::from_utf8_lossy(&out.stderr));
    let mut a = tar::Archive::new(&out.stdout[..]);
    let mut map = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path =
            e.path().unwrap().to_string_lossy().trim_end_matches('/').trim_start_matches("./").to_string();
        if path.is_empty() || path == "." {
            continue;
        }
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        let mut content = String::new();
        if kind == 'l' {
            content = h.link_name().unwrap().unwrap().to_string_lossy().into_owned();
        } else if kind == 'f' {
            std::io::Read::read_to_string(&mut e, &mut content).unwrap_or_default();
        }
        map.insert(path, (kind, h.mode().unwrap() & 0o7777, h.uid().unwrap(), h.gid().unwrap(), content));
    }
    map
}

/// Paths of a merged tree under `prefix` (not the prefix itself).
pub fn under(tree: &BTreeMap<String, Facts>, prefix: &str) -> Vec<String> {
    let p = format!("{prefix}/");
    tree.keys().filter(|k| k.starts_with(&p)).cloned().collect()
}

/// Steps reported CACHED in a build's progress, by title (`COPY a /a`).
pub fn cached_steps(progress: &str) -> Vec<String> {
    let mut titles: BTreeMap<String, String> = BTreeMap::new();
    let mut cached = Vec::new();
    for line in progress.lines() {
        let Some(rest) = line.strip_prefix('#') else { continue };
        let Some((n, text)) = rest.split_once(' ') else { continue };
        if text == "CACHED" {
            if let Some(t) = titles.get(n) {
                cached.push(t.clone());
            }
        } else if text.starts_with('[') {
            let title = text.split_once("] ").map(|(_, t)| t.to_string()).unwrap_or_default();
            titles.insert(n.to_string(), title);
        }
    }
    cached
}

/// Writes a Dockerfile into `dir`.
pub fn dockerfile(dir: &Path, text: &str) {
    std::fs::write(dir.join("Dockerfile"), text).unwrap();
}
