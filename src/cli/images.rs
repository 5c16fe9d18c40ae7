//! Image commands: import, images, tag, rmi, inspect, history, image prune, system df.

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::output::{self, Format, Row, human_size, time_ago, usage_bail};
use super::{Global, open_store};
use crate::oci::image::HistoryEntry;
use crate::oci::{Reference, time};
use crate::progress::Progress;
use crate::store::derive::Derivation;
use crate::store::layers::LayerExpectation;
use crate::store::{ImageRecord, LockMode, Store};

#[derive(Args)]
#[command(after_help = "Reproducible ids: with SOURCE_DATE_EPOCH set, it is used as the creation time.")]
pub struct ImportArgs {
    /// Rootfs tarball (plain tar, gzip or zstd, detected by content), or - for stdin.
    pub file: PathBuf,
    /// Name for the new image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Commit message for the history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME).
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
}

/// A fixed creation time for new images, if the user asked for one: `--created` first, else
/// SOURCE_DATE_EPOCH (reproducible builds). Image configs hold RFC 3339 times: years 1970 to 9999.
pub(crate) fn fixed_time(created: Option<i64>) -> Result<Option<i64>> {
    const LAST: i64 = 253_402_300_799;
    let (secs, what) = match (created, std::env::var("SOURCE_DATE_EPOCH")) {
        (Some(c), _) => (c, format!("--created {c}")),
        (None, Ok(v)) => {
            let secs = v
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?;
            (secs, format!("SOURCE_DATE_EPOCH={v:?}"))
        }
        (None, Err(_)) => return Ok(None),
    };
    if !(0..=LAST).contains(&secs) {
        bail!("{what} is out of range (0 to {LAST}, years 1970 to 9999)");
    }
    Ok(Some(secs))
}

/// Parses a user-given `REPO[:TAG]` for naming an image (no digests).
pub(crate) fn parse_tag(s: &str) -> Result<Reference> {
    let r = Reference::parse_with_default_tag(s)?;
    if r.digest.is_some() {
        bail!("invalid reference format {s:?}: cannot name an image with a digest");
    }
    Ok(r)
}

pub fn import(g: &Global, a: ImportArgs) -> Result<ExitCode> {
    let tags: Vec<Reference> = a.reference.as_deref().map(parse_tag).transpose()?.into_iter().collect();
    let created = fixed_time(None)?.unwrap_or_else(output::now_unix);
    let stdin = a.file.as_os_str() == "-";
    let source = if stdin { "stdin".to_string() } else { a.file.display().to_string() };
    let (input, size): (Box<dyn Read>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {source}"))?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(f), size)
    };
    let store = open_store(g, LockMode::Exclusive)?;
    // Bytes and rate on a terminal (stderr), nothing in a pipe: stdout is the new image's id.
    let progress = Progress::on_terminal(false);
    let label = a.file.file_name().map_or("stdin".into(), |n| n.to_string_lossy().into_owned());
    let input = progress.item(&label, "Waiting").reader("Importing", size, input, "Imported");
    let layer = store
        .ingest_layer(input, &LayerExpectation::default(), "import")
        .with_context(|| format!("importing {source}"))?;
    let history = HistoryEntry {
        created,
        created_by: format!("strata import {source}"),
        comment: Some(a.message.unwrap_or_else(|| format!("Imported from {source}"))),
        ..Default::default()
    };
    let id =
        store.derive_image(Derivation { base: None, layer, history, changes: &a.changes, tags: &tags })?;
    drop(progress);
    writeln!(std::io::stdout(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag), or matching this pattern (`debian:app*`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Show all images (intermediate images of commits are hidden by default).
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: dangling=true|false, before=IMAGE, since=IMAGE, reference=PATTERN, label=KEY[=VALUE].
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Go-template-like format (`table {{.ID}}\t{{.Repository}}`) or `json`.
    /// Fields: ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size, Containers.
    #[arg(long)]
    pub format: Option<String>,
}

const IMAGE_FIELDS: &[&str] =
    &["ID", "Repository", "Tag", "Digest", "CreatedSince", "CreatedAt", "Size", "Containers"];

fn image_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        other => other.to_uppercase(),
    }
}

/// When the image says it was created (config), else when it entered the store.
fn created_of(store: &Store, img: &ImageRecord) -> i64 {
    store
        .image_config(img)
        .ok()
        .and_then(|c| c.get("created").and_then(|v| v.as_str()).and_then(|s| time::parse_rfc3339(s).ok()))
        .unwrap_or(img.added)
}

fn display_id(id: &crate::oci::Digest, no_trunc: bool) -> String {
    if no_trunc { id.to_string() } else { id.short().to_string() }
}

struct ImageFilters {
    dangling: Option<bool>,
    before: Option<i64>,
    since: Option<i64>,
    references: Vec<String>,
    /// `label=KEY` or `label=KEY=VALUE`: every one must match the image config's Labels.
    labels: Vec<(String, Option<String>)>,
}

impl ImageFilters {
    fn parse(store: &Store, filters: &[String]) -> Result<Self> {
        let mut f = ImageFilters {
            dangling: None,
            before: None,
            since: None,
            references: Vec::new(),
            labels: Vec::new(),
        };
        for spec in filters {
            let Some((k, v)) = spec.split_once('=') else {
                usage_bail!("invalid filter {spec:?}: expected KEY=VALUE")
            };
            match k {
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => usage_bail!("invalid filter {spec:?}: dangling takes true or false"),
                    })
                }
                "before" => f.before = Some(created_of(store, &store.resolve_image(v)?)),
                "since" => f.since = Some(created_of(store, &store.resolve_image(v)?)),
                "reference" => f.references.push(v.to_string()),
                "label" => f.labels.push(match v.split_once('=') {
                    Some((key, value)) => (key.to_string(), Some(value.to_string())),
                    None => (v.to_string(), None),
                }),
                _ => usage_bail!(
                    "invalid filter {k:?}: supported are dangling, before, since, reference, label"
                ),
            }
        }
        Ok(f)
    }

    /// The label filters against an image's config.
    fn labels_match(&self, store: &Store, img: &ImageRecord) -> bool {
        if self.labels.is_empty() {
            return true;
        }
        let cfg = store.image_config(img).unwrap_or_default();
        let labels = cfg.pointer("/config/Labels");
        self.labels.iter().all(|(k, want)| match labels.and_then(|l| l.get(k)).and_then(|v| v.as_str()) {
            Some(have) => want.as_deref().is_none_or(|w| w == have),
            None => false,
        })
    }
}

/// A positional `images` argument with glob characters is a pattern (`debian:app*`), as Docker
/// reads it; without, a repository and optional tag.
fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

pub fn images(g: &Global, a: ImagesArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let format = a.format.as_deref().map(|f| Format::parse(f, IMAGE_FIELDS)).transpose()?;
    let mut filters = ImageFilters::parse(&store, &a.filters)?;
    let wanted = match a.reference.as_deref() {
        Some(p) if is_pattern(p) => {
            filters.references.push(p.to_string());
            None
        }
        other => other.map(Reference::parse).transpose()?,
    };
    let all = store.images()?;
    let parents: HashSet<_> = all.iter().filter_map(|i| i.parent.clone()).collect();
    let containers = store.containers()?;
    let now = output::now_unix();
    let mut rows: Vec<(i64, Row)> = Vec::new();
    for img in &all {
        let tags = store.tags_of(&img.id)?;
        let created = created_of(&store, img);
        if filters.dangling.is_some_and(|d| d != tags.is_empty())
            || filters.before.is_some_and(|b| created >= b)
            || filters.since.is_some_and(|s| created <= s)
            || (tags.is_empty() && !a.all && parents.contains(&img.id) && filters.dangling.is_none())
            || !filters.labels_match(&store, img)
        {
            continue;
        }
        let names: Vec<Option<Reference>> = if tags.is_empty() {
            vec![None]
        } else {
            tags.iter().map(|t| Reference::parse(t).ok()).collect()
        };
        for name in names {
            if let Some(w) = &wanted {
                let Some(n) = &name else { continue };
                if n.name() != w.name() || (w.tag.is_some() && n.tag != w.tag) {
                    continue;
                }
            }
            if !filters.references.is_empty() {
                let Some(n) = &name else { continue };
                let (repo, full) = (n.familiar_name(), n.familiar());
                if !filters.references.iter().any(|p| glob_match(p, &repo) || glob_match(p, &full)) {
                    continue;
                }
            }
            let repo = name.as_ref().map_or("<none>".to_string(), Reference::familiar_name);
            let digest = name
                .as_ref()
                .and_then(|n| {
                    img.repo_digests
                        .iter()
                        .find_map(|d| d.strip_prefix(&format!("{}@", n.name())).map(str::to_string))
                })
                .unwrap_or_else(|| "<none>".into());
            let mut row = Row::new();
            row.insert("ID", display_id(&img.id, a.no_trunc));
            row.insert("Repository", repo);
            row.insert("Tag", name.as_ref().and_then(|n| n.tag.clone()).unwrap_or_else(|| "<none>".into()));
            row.insert("Digest", digest);
            row.insert("CreatedSince", time_ago(created, now));
            row.insert("CreatedAt", time::format_rfc3339(created));
            row.insert("Size", human_size(store.image_size(img)));
            row.insert("Containers", containers.iter().filter(|c| c.image == img.id).count().to_string());
            rows.push((created, row));
        }
    }
    // Newest first, like Docker.
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"])?;
        }
    } else if let Some(f) = format {
        f.render(&mut out, &rows, &image_header)?;
    } else {
        let mut cols = vec![("Repository", "REPOSITORY"), ("Tag", "TAG")];
        if a.digests {
            cols.push(("Digest", "DIGEST"));
        }
        cols.extend([("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("Size", "SIZE")]);
        output::print_table(&mut out, &cols, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Go's `path.Match`: `*` and `?` do not cross `/`; `[...]` classes.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                (0..=n.len()).take_while(|&i| i == 0 || n[i - 1] != '/').any(|i| rec(&p[1..], &n[i..]))
            }
            Some('?') => !n.is_empty() && n[0] != '/' && rec(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else { return false };
                let Some(&c) = n.first() else { return false };
                let (negate, class) = match p[1..end].first() {
                    Some('^') => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                crate::build::ignore::class_matches(class, c) != negate && rec(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && rec(&p[1..], &n[1..]),
        }
    }
    rec(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub fn tag(g: &Global, a: TagArgs) -> Result<ExitCode> {
    let target = parse_tag(&a.target)?;
    let store = open_store(g, LockMode::Exclusive)?;
    let img = store.resolve_image(&a.source)?;
    store.tag(&img.id, &target)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RmiArgs {
    /// Images by name[:tag], short or long id, or name@digest.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Remove an image referenced by several tags; untag an image a container uses.
    #[arg(short, long)]
    pub force: bool,
}

pub fn rmi(g: &Global, a: RmiArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Exclusive)?;
    let mut code = ExitCode::SUCCESS;
    for input in &a.images {
        match store.remove_image(input, a.force) {
            Ok(lines) => {
                for l in lines {
                    writeln!(std::io::stdout(), "{l}")?;
                }
            }
            Err(e) => {
                eprintln!("strata: error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "NAME|ID")]
    pub images: Vec<String>,
    /// Go template over each object's JSON (`{{.Id}}`, `{{json .Config}}`, `{{index .RepoTags 0}}`).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only objects of this type: image or container (default: a container by that name or id,
    /// else an image, as Docker looks).
    #[arg(long = "type", value_name = "TYPE", value_parser = ["image", "container"])]
    pub kind: Option<String>,
}

/// `inspect` of images and containers: Docker-shaped JSON, or a Go template rendered per object.
/// Objects found are printed even when another name is not; the exit status is then 1.
pub fn inspect(g: &Global, a: InspectArgs) -> Result<ExitCode> {
    let template = a.format.as_deref().map(super::template::Template::parse).transpose()?;
    let store = open_store(g, LockMode::Shared)?;
    let mut docs = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for input in &a.images {
        let container = match a.kind.as_deref() {
            Some("image") => None,
            _ => store.resolve_container(input).ok(),
        };
        let found = match (container, a.kind.as_deref()) {
            (Some(c), _) => Ok(crate::container::inspect::describe(&store, &c)),
            (None, Some("container")) => Err(anyhow::anyhow!("no such container: {input}")),
            (None, _) => store.resolve_image(input).and_then(|img| image_json(&store, &img)),
        };
        match found {
            Ok(doc) => docs.push(doc),
            Err(e) => {
                eprintln!("strata: error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match template {
        Some(t) => {
            for d in &docs {
                writeln!(out, "{}", t.render(d)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?,
    }
    Ok(code)
}

/// An image as `docker inspect` shows one.
fn image_json(store: &Store, img: &ImageRecord) -> Result<serde_json::Value> {
    let cfg = store.image_config(img)?;
    let tags: Vec<String> = store
        .tags_of(&img.id)?
        .iter()
        .map(|t| Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone()))
        .collect();
    let comment = cfg
        .pointer("/history")
        .and_then(|h| h.as_array())
        .and_then(|h| h.last())
        .and_then(|h| h.get("comment"))
        .cloned();
    let layers: Vec<String> = img.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let dirs: Vec<String> =
        img.layers.iter().map(|l| store.layer_fs(&l.diff_id).display().to_string()).collect();
    let mut doc = json!({
        "Id": img.id.to_string(),
        "RepoTags": tags,
        "RepoDigests": img.repo_digests,
        "Parent": img.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
        "Comment": comment.unwrap_or(json!("")),
        "Created": cfg.get("created").cloned().unwrap_or(json!(time::format_rfc3339(img.added))),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": cfg.get("config").cloned().unwrap_or(json!({})),
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
        "Variant": cfg.get("variant").cloned(),
        "Os": cfg.get("os").cloned().unwrap_or(json!("")),
        "Size": store.image_size(img),
        "RootFS": {"Type": "layers", "Layers": layers},
        "Manifest": {"Digest": img.manifest.to_string(), "MediaType": img.manifest_media_type},
        "GraphDriver": {"Name": "strata", "Data": {"LowerDirs": dirs.into_iter().rev().collect::<Vec<_>>()}},
    });
    if doc["Variant"].is_null() {
        doc.as_object_mut().map(|m| m.remove("Variant"));
    }
    Ok(doc)
}

#[derive(Args)]
pub struct HistoryArgs {
    pub image: String,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes and dates in a human readable format.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Go-template-like format (`table {{.ID}}\t{{.CreatedBy}}`) or `json`.
    /// Fields: ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment.
    #[arg(long)]
    pub format: Option<String>,
}

const HISTORY_FIELDS: &[&str] = &["ID", "CreatedSince", "CreatedAt", "CreatedBy", "Size", "Comment"];

pub fn history(g: &Global, a: HistoryArgs) -> Result<ExitCode> {
    let format = a.format.as_deref().map(|f| Format::parse(f, HISTORY_FIELDS)).transpose()?;
    let store = open_store(g, LockMode::Shared)?;
    let img = store.resolve_image(&a.image)?;
    let cfg = store.image_config(&img)?;
    let entries = cfg.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let now = output::now_unix();
    let mut layers = img.layers.iter();
    let mut rows = Vec::new();
    for h in &entries {
        let empty = h.get("empty_layer").and_then(|v| v.as_bool()).unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map_or(0, |l| store.layer_meta(&l.diff_id).map(|m| m.data_bytes).unwrap_or(0))
        };
        let created = h.get("created").and_then(|v| v.as_str()).and_then(|s| time::parse_rfc3339(s).ok());
        let text = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let created_by = text("created_by");
        let mut row = Row::new();
        row.insert(
            "CreatedSince",
            created.map_or("<missing>".into(), |c| {
                if a.human { time_ago(c, now) } else { time::format_rfc3339(c) }
            }),
        );
        row.insert("CreatedAt", created.map_or(String::new(), time::format_rfc3339));
        // A template gets the whole text unless it asks for truncation, as Docker's does.
        let whole = a.no_trunc || format.is_some();
        row.insert("CreatedBy", if whole { created_by } else { output::ellipsis(&created_by, 45) });
        row.insert("Size", if a.human { human_size(size) } else { size.to_string() });
        row.insert("Comment", text("comment"));
        rows.push(row);
    }
    // Layers the history does not describe (configs without history) still get rows.
    for l in layers {
        let mut row = Row::new();
        row.insert("CreatedSince", "<missing>".into());
        row.insert("Size", human_size(store.layer_meta(&l.diff_id).map(|m| m.data_bytes).unwrap_or(0)));
        rows.push(row);
    }
    rows.reverse();
    for (i, r) in rows.iter_mut().enumerate() {
        r.insert("ID", if i == 0 { display_id(&img.id, a.no_trunc) } else { "<missing>".into() });
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"])?;
        }
    } else if let Some(f) = format {
        let header = |f: &str| match f {
            "ID" => "IMAGE".to_string(),
            "CreatedSince" => "CREATED".into(),
            "CreatedAt" => "CREATED AT".into(),
            "CreatedBy" => "CREATED BY".into(),
            other => other.to_uppercase(),
        };
        f.render(&mut out, &rows, &header)?;
    } else {
        let cols = [
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ];
        output::print_table(&mut out, &cols, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn prune(g: &Global, a: PruneArgs) -> Result<ExitCode> {
    // As Docker: without -f, ask and read the answer from stdin whatever it is (a pipe, a file);
    // anything but yes, end of input included, deletes nothing.
    if !a.force {
        let what = if a.all { "all images without at least one container" } else { "all dangling images" };
        let mut out = std::io::stdout().lock();
        write!(out, "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("cannot read the answer from stdin")?;
        // A terminal echoed the answer and its newline; a pipe did not.
        if !std::io::stdin().is_terminal() {
            writeln!(out)?;
        }
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = open_store(g, LockMode::Exclusive)?;
    let before = store.usage()?;
    let used: HashSet<_> = store.containers()?.into_iter().map(|c| c.image).collect();
    let mut lines = Vec::new();
    for img in store.images()? {
        let tags = store.tags_of(&img.id)?;
        if used.contains(&img.id) || (!a.all && !tags.is_empty()) {
            continue;
        }
        for t in tags {
            store.untag(&t)?;
            lines.push(format!("untagged: {}", Reference::parse(&t).map(|r| r.familiar()).unwrap_or(t)));
        }
        lines.extend(store.remove_image(&img.id.to_string(), true)?.into_iter().filter_map(|r| match r {
            crate::store::remove::Removal::Deleted(d) => Some(format!("deleted: {d}")),
            crate::store::remove::Removal::Untagged(_) => None,
        }));
    }
    let collected = store.collect_garbage()?;
    lines.extend(collected.layers.iter().map(|l| format!("deleted: {l}")));
    let after = store.usage()?;
    let reclaimed =
        (before.layers_size + before.blobs_size).saturating_sub(after.layers_size + after.blobs_size);
    if !lines.is_empty() {
        writeln!(std::io::stdout(), "Deleted Images:")?;
        for l in &lines {
            writeln!(std::io::stdout(), "{l}")?;
        }
        writeln!(std::io::stdout())?;
    }
    writeln!(std::io::stdout(), "Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DfArgs {
    /// Show per-image and per-container detail (shared vs unique size), and the store's own
    /// breakdown (unpacked layers, blobs, unused).
    #[arg(short, long)]
    pub verbose: bool,
    /// `json` for one JSON object per row.
    #[arg(long)]
    pub format: Option<String>,
}

pub fn df(g: &Global, a: DfArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let u = store.usage()?;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let mut summary = Vec::new();
    let mut add = |kind: &str, total: usize, active: usize, size: u64, reclaim: u64| {
        let mut r = Row::new();
        r.insert("Type", kind.to_string());
        r.insert("TotalCount", total.to_string());
        r.insert("Active", active.to_string());
        r.insert("Size", human_size(size));
        r.insert("Reclaimable", format!("{} ({}%)", human_size(reclaim), pct(reclaim, size)));
        summary.push(r);
    };
    // Docker's rows. Images: the unpacked layers images use, each counted once (what Docker's
    // SIZE counts); the compressed blobs kept for push and save, and what no image uses, are in
    // the -v breakdown. strata has no volumes.
    let active_images = u.images.iter().filter(|i| i.containers > 0).count();
    add("Images", u.images.len(), active_images, u.images_size, u.images_reclaimable);
    let csize: u64 = u.containers.iter().map(|c| c.size).sum();
    let mounted = u.containers.iter().filter(|c| c.record.mount.is_some()).count();
    let idle: u64 = u.containers.iter().filter(|c| c.record.mount.is_none()).map(|c| c.size).sum();
    add("Containers", u.containers.len(), mounted, csize, idle);
    add("Local Volumes", 0, 0, 0, 0);
    // As Docker prints it: what only the build cache holds, all of it reclaimable (no build
    // runs while `df` holds the store lock), without a percentage.
    let cache = crate::build::cache::usage(&store)?;
    let mut r = Row::new();
    r.insert("Type", "Build Cache".to_string());
    r.insert("TotalCount", cache.records.len().to_string());
    r.insert("Active", "0".to_string());
    r.insert("Size", human_size(cache.size));
    r.insert("Reclaimable", human_size(cache.size));
    summary.push(r);
    let mut out = std::io::stdout().lock();
    if a.format.as_deref() == Some("json") {
        for r in &summary {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &a.format {
        usage_bail!("invalid --format {f:?}: only json is supported here");
    }
    let cols = [
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ];
    output::print_table(&mut out, &cols, &summary)?;
    if a.verbose {
        writeln!(out, "\nImages space usage:\n")?;
        let now = output::now_unix();
        let mut rows = Vec::new();
        for i in &u.images {
            let tags = store.tags_of(&i.image.id)?;
            let name = tags.first().and_then(|t| Reference::parse(t).ok());
            let mut r = Row::new();
            r.insert("Repository", name.as_ref().map_or("<none>".into(), Reference::familiar_name));
            r.insert("Tag", name.and_then(|n| n.tag).unwrap_or_else(|| "<none>".into()));
            r.insert("ID", i.image.id.short().to_string());
            r.insert("CreatedSince", time_ago(created_of(&store, &i.image), now));
            r.insert("Size", human_size(i.size));
            r.insert("SharedSize", human_size(i.shared));
            r.insert("UniqueSize", human_size(i.size - i.shared));
            r.insert("Containers", i.containers.to_string());
            rows.push(r);
        }
        let cols = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("Containers", "CONTAINERS"),
        ];
        output::print_table(&mut out, &cols, &rows)?;
        writeln!(out, "\nContainers space usage:\n")?;
        let rows: Vec<Row> = u
            .containers
            .iter()
            .map(|c| {
                let mut r = Row::new();
                r.insert("ID", c.record.short_id().to_string());
                r.insert("Image", c.record.image_name.clone());
                r.insert("Size", human_size(c.size));
                r.insert("CreatedSince", time_ago(c.record.created, now));
                r.insert("Names", c.record.name.clone());
                r.insert(
                    "Mounted",
                    c.record.mount.as_ref().map_or(String::new(), |m| m.mountpoint.display().to_string()),
                );
                r
            })
            .collect();
        let cols = [
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("Mounted", "MOUNTPOINT"),
            ("Names", "NAMES"),
        ];
        output::print_table(&mut out, &cols, &rows)?;
        writeln!(out, "\nBuild cache usage: {}\n", human_size(cache.size))?;
        let rows: Vec<Row> = cache
            .records
            .iter()
            .map(|c| {
                let mut r = Row::new();
                r.insert("ID", c.id.get(..25).unwrap_or(&c.id).to_string());
                r.insert("Kind", c.kind.to_string());
                r.insert("Size", human_size(c.size));
                r.insert("CreatedSince", time_ago(c.created, now));
                r.insert("Shared", c.shared.to_string());
                r
            })
            .collect();
        let cols = [
            ("ID", "CACHE ID"),
            ("Kind", "CACHE TYPE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("Shared", "SHARED"),
        ];
        output::print_table(&mut out, &cols, &rows)?;
        writeln!(out, "\nStore space usage:\n")?;
        let mut rows = Vec::new();
        let mut part = |what: &str, count: String, size: u64, note: &str| {
            let mut r = Row::new();
            r.insert("What", what.to_string());
            r.insert("Count", count);
            r.insert("Size", human_size(size));
            r.insert("Note", note.to_string());
            rows.push(r);
        };
        part(
            "Unpacked layers",
            format!("{}/{}", u.layers_active, u.layer_count),
            u.layers_size,
            "trees the mounts stack (in use / all); the Images row counts those images use",
        );
        part(
            "Blobs",
            String::new(),
            u.blobs_size,
            "compressed layers, configs, manifests, kept byte-exact for push and save",
        );
        part(
            "Unused",
            String::new(),
            u.orphan_bytes,
            "of the two above, what no image uses: image prune removes it",
        );
        let cols = [("What", "TYPE"), ("Count", "COUNT"), ("Size", "SIZE"), ("Note", "")];
        output::print_table(&mut out, &cols, &rows)?;
        let on_disk = u.layers_size + u.blobs_size + csize;
        writeln!(out, "\nOn disk in all: {} ({})", human_size(on_disk), store.root().display())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("*/*", "a/b"));
        assert!(glob_match("b?sybox:[0-9]*", "busybox:1.36"));
        assert!(!glob_match("b[^u]sybox", "busybox"));
    }
}
