//! Inspect commands: ls, cat, export, analyze, and `diff IMAGE IMAGE` — presentation only; the
//! work is in `crate::inspect`.

use std::io::{BufWriter, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::output::{human_size, usage_bail};
use super::{Global, open_store};
use crate::inspect::analyze::{self, Analysis};
use crate::inspect::limits::{self, Limits};
use crate::inspect::ls::{self, Group, Item};
use crate::inspect::view::View;
use crate::inspect::{change, export, image_diff, node};
use crate::oci::time::format_rfc3339;
use crate::store::LockMode;

const LS_HELP: &str = "\
Layers are numbered bottom first, as in the config's rootfs.diff_ids (0 = base); a
container's writable layer is `upper`. Names are printed as raw bytes; times are UTC.
A directory merged from several layers shows 1 link, as through the mount (overlayfs).

--format json prints one object per entry, one per line:
  path, name         absolute path in the image, and the listed name (non-UTF-8 bytes
                     replaced; the exact bytes then also in path_hex / name_hex)
  type               file, dir, symlink, char, block, fifo or socket
  mode               permission bits with setuid/setgid/sticky (a number)
  mode_string        as ls -l shows it
  nlink, uid, gid, size
  major, minor       device numbers (char and block devices only)
  mtime, mtime_nsec  modification time: unix seconds, nanoseconds
  target             symlink target (symlinks only; target_hex when not UTF-8)
  layer, diff_id     the layer the entry comes from: its index and diff_id,
                     or \"upper\" and null";

#[derive(Args)]
#[command(after_help = LS_HELP)]
pub struct LsArgs {
    /// An image, or a container (its writable layer over its image).
    #[arg(value_name = "IMAGE|CONTAINER")]
    pub target: String,
    /// Path in the merged tree.
    #[arg(default_value = "/")]
    pub path: PathBuf,
    /// Long listing: mode, links, owner (numeric), size or major,minor, mtime, name, -> target.
    #[arg(short = 'l')]
    pub long: bool,
    /// List directories below too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Show the layer (index:short diff_id, or upper) each entry comes from.
    #[arg(long)]
    pub layer: bool,
    /// `json`: one object per entry (schema below).
    #[arg(long)]
    pub format: Option<String>,
}

pub fn ls(g: &Global, a: LsArgs) -> Result<ExitCode> {
    let json = parse_json_format(a.format.as_deref())?;
    let store = open_store(g, LockMode::Shared)?;
    let view = View::open(&store, &a.target)?;
    let groups = ls::list(&view, &a.path, a.long, a.recursive)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        for grp in &groups {
            for i in &grp.items {
                writeln!(out, "{}", ls::to_json(i))?;
            }
        }
    } else {
        for (n, grp) in groups.iter().enumerate() {
            // `ls -R` names each directory above its listing.
            if a.recursive {
                if let Some(d) = &grp.dir {
                    if n > 0 {
                        out.write_all(b"\n")?;
                    }
                    out.write_all(d.as_os_str().as_bytes())?;
                    out.write_all(b":\n")?;
                }
            }
            print_group(&mut out, grp, a.long, a.layer)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `ls -l --time-style=long-iso`-like lines, columns aligned within the group.
fn print_group(out: &mut dyn Write, grp: &Group, long: bool, layer: bool) -> Result<()> {
    let cells: Vec<[String; 6]> = grp.items.iter().map(long_cells).collect();
    let mut w = [0usize; 6];
    for c in &cells {
        for (k, s) in c.iter().enumerate() {
            w[k] = w[k].max(s.len());
        }
    }
    let lw = grp.items.iter().map(|i| i.origin.label().len()).max().unwrap_or(0);
    for (i, c) in grp.items.iter().zip(&cells) {
        if long {
            write!(
                out,
                "{} {:>w1$} {:<w2$} {:<w3$} {:>w4$} {} ",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            )?;
        }
        if layer {
            write!(out, "{:<lw$} ", i.origin.label())?;
        }
        out.write_all(i.name.as_bytes())?;
        if let (true, Some(t)) = (long, &i.target) {
            out.write_all(b" -> ")?;
            out.write_all(t)?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn long_cells(i: &Item) -> [String; 6] {
    let size = match i.rdev {
        Some((major, minor)) => format!("{major}, {minor}"),
        None => i.size.to_string(),
    };
    let t = format_rfc3339(i.mtime);
    let when = format!("{} {}", &t[..10], &t[11..16]);
    [ls::mode_string(i.mode), i.nlink.to_string(), i.uid.to_string(), i.gid.to_string(), size, when]
}

fn parse_json_format(f: Option<&str>) -> Result<bool> {
    match f {
        None => Ok(false),
        Some("json") => Ok(true),
        Some(f) => usage_bail!("invalid --format {f:?}: only json is supported"),
    }
}

#[derive(Args)]
#[command(after_help = "\
Symlinks are followed inside the image only: an absolute target starts at the image
root and `..` never leaves it, so a link to /etc/passwd reads the image's file, never
the host's. A path that is missing, a directory or not a regular file is an error; the
other paths are still printed, and the exit status is 1.

--format json prints one object per path: path (as given), resolved (the file read),
size, sha256, and content (text) when it is UTF-8, else content_hex.")]
pub struct CatArgs {
    /// An image, or a container (its writable layer over its image).
    #[arg(value_name = "IMAGE|CONTAINER")]
    pub target: String,
    /// Files in the merged tree.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// `json`: one object per path (schema below).
    #[arg(long)]
    pub format: Option<String>,
}

pub fn cat(g: &Global, a: CatArgs) -> Result<ExitCode> {
    let json = parse_json_format(a.format.as_deref())?;
    let store = open_store(g, LockMode::Shared)?;
    let view = View::open(&store, &a.target)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut code = ExitCode::SUCCESS;
    for p in &a.paths {
        if let Err(e) = cat_one(&view, p, json, &mut out) {
            out.flush()?;
            eprintln!("strata: error: {}: {e:#}", p.display());
            code = ExitCode::FAILURE;
        }
    }
    out.flush()?;
    Ok(code)
}

fn cat_one(view: &View, path: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let e = view
        .stack
        .resolve(path, true)
        .with_context(|| format!("resolving {}", path.display()))?
        .with_context(|| format!("no such file or directory in {}", view.name))?;
    if e.is_dir() {
        bail!("is a directory");
    }
    if !node::is_reg(&e) {
        bail!("not a regular file (a {})", node::type_name(e.stat.st_mode));
    }
    let mut f = node::open(&view.stack, &e)?;
    if !json {
        std::io::copy(&mut f, out)?;
        return Ok(());
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let mut v = json!({
        "path": path.to_string_lossy(),
        "resolved": node::shown(&e).to_string_lossy(),
        "size": data.len(),
        "sha256": crate::oci::Digest::of_bytes(&data).to_string(),
    });
    match std::str::from_utf8(&data) {
        Ok(s) => v["content"] = s.into(),
        Err(_) => v["content_hex"] = hex::encode(&data).into(),
    }
    writeln!(out, "{v}")?;
    Ok(())
}

#[derive(Args)]
#[command(after_help = "\
The tar is deterministic (entries sorted, numeric owners, no atimes, PAX only where
needed, xattrs as SCHILY.xattr.*) and holds no whiteouts; names of one inode in one
layer become hard-link entries. The root directory itself is not an entry.")]
pub struct ExportArgs {
    /// An image, or a container (its writable layer over its image).
    #[arg(value_name = "IMAGE|CONTAINER")]
    pub target: String,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn export(g: &Global, a: ExportArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let view = View::open(&store, &a.target)?;
    match &a.output {
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tar to a terminal: use -o FILE or redirect stdout");
            }
            let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            export::export(&view, out)?;
        }
        Some(path) => {
            let f =
                std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            if let Err(e) = export::export(&view, BufWriter::with_capacity(1 << 20, f)) {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata diff IMAGE IMAGE`.
pub fn diff_images(g: &Global, a: &str, b: &str, format: Option<&str>) -> Result<ExitCode> {
    let json = parse_json_format(format)?;
    let store = open_store(g, LockMode::Shared)?;
    let ia = store.resolve_image(a)?;
    let ib = store.resolve_image(b)?;
    let changes = image_diff::image_changes(&View::image(&store, &ia, a)?, &View::image(&store, &ib, b)?)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        change::print_json(&mut out, &changes)?;
    } else {
        change::print(&mut out, &changes)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

const ANALYZE_HELP: &str = "\
Per layer (bottom first; created_by from the config history, empty_layer entries skipped):
  size      bytes of regular-file data the layer stores (hard links once)
  added     files (non-directories) at paths the layers below do not have; their bytes
  modified  files replacing a file of the layers below; their (new) bytes
  removed   files of the layers below this layer deletes (by whiteout, opaque directory,
            or a file put where a directory was, or the reverse); the bytes they held
For the image:
  total size      sum of the layer sizes
  wasted bytes    bytes of lower-layer files that later layers overwrite or delete
  wasted percent  wasted bytes / total size x 100
  efficiency      dive's score: every path has versions across layers (a deletion is a
                  0-byte version); efficiency = sum of each path's smallest version /
                  sum of all versions (1 when there is no data)
  wasted paths    paths by wasted bytes (every hidden version counts), largest first
Bytes are regular-file sizes (symlinks, devices, fifos: 0); hard links count per name.

--ci checks the limits and exits 1, naming each limit crossed on stderr. With no limit
given, dive's defaults apply: --lowest-efficiency 0.9 --highest-wasted-percent 10.
Sizes take decimal (kB, MB, GB) or binary (KiB, MiB, GiB) suffixes.

--json (or --format json) prints one object:
  image, id, total_size, wasted_bytes, wasted_percent, efficiency,
  layers: [{index, diff_id, created_by, size, added: {files, bytes}, modified: {..},
            removed: {..}}],
  wasted_paths: [{path, path_hex (when not UTF-8), count, bytes}],
  ci: {pass, crossed: [sentences]}   (with --ci only)";

/// `strata diff --help`: what the image form compares.
pub const DIFF_HELP: &str = "\
With two images, prints what turns the first image's merged tree into the second's.
An entry is changed (C) when its type, mode, owner, device number, xattrs or symlink
target differ, or for non-directories its size, mtime or content; content is hashed only
when all else matches and the two come from different layers. A deleted directory is one
D line; an added one is A for it and everything below; a directory with changes below is
C, as in container diff. Sorted by path, bytewise; names printed as raw bytes.

--format json prints one object per change: {\"Kind\": \"A\"|\"C\"|\"D\", \"Path\": \"/x\"}.";

#[derive(Args)]
#[command(after_help = ANALYZE_HELP)]
pub struct AnalyzeArgs {
    pub image: String,
    /// Print JSON (schema below).
    #[arg(long)]
    pub json: bool,
    /// `json`: same as --json.
    #[arg(long)]
    pub format: Option<String>,
    /// How many wasted paths to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Check the limits; exit 1 when one is crossed.
    #[arg(long)]
    pub ci: bool,
    /// Fail when the efficiency score is below X (0..1).
    #[arg(long, value_name = "X", requires = "ci")]
    pub lowest_efficiency: Option<f64>,
    /// Fail when more than N bytes are wasted.
    #[arg(long, value_name = "N", requires = "ci", value_parser = parse_size)]
    pub highest_wasted_bytes: Option<u64>,
    /// Fail when more than P percent of the image is wasted (0..100).
    #[arg(long, value_name = "P", requires = "ci")]
    pub highest_wasted_percent: Option<f64>,
}

pub fn analyze(g: &Global, a: AnalyzeArgs) -> Result<ExitCode> {
    let json = a.json || parse_json_format(a.format.as_deref())?;
    let store = open_store(g, LockMode::Shared)?;
    let image = store.resolve_image(&a.image)?;
    let result = analyze::analyze(&store, &image, &a.image, a.top)?;
    let mut limits = Limits {
        lowest_efficiency: a.lowest_efficiency,
        highest_wasted_bytes: a.highest_wasted_bytes,
        highest_wasted_percent: a.highest_wasted_percent,
    };
    if a.lowest_efficiency.is_none() && a.highest_wasted_bytes.is_none() && a.highest_wasted_percent.is_none()
    {
        limits.lowest_efficiency = Some(0.9);
        limits.highest_wasted_percent = Some(10.0);
    }
    let crossed = if a.ci { limits::crossed(&result, &limits) } else { Vec::new() };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let mut v = serde_json::to_value(&result)?;
        if a.ci {
            v["ci"] = json!({"pass": crossed.is_empty(), "crossed": crossed});
        }
        writeln!(out, "{v}")?;
    } else {
        print_analysis(&mut out, &result)?;
    }
    out.flush()?;
    if !crossed.is_empty() {
        for c in &crossed {
            eprintln!("strata: analyze {}: {c}", a.image);
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_analysis(out: &mut dyn Write, a: &Analysis) -> Result<()> {
    writeln!(out, "Image: {} ({})", a.image, a.id.short())?;
    writeln!(out, "Total size: {} ({} bytes)", human_size(a.total_size), a.total_size)?;
    writeln!(
        out,
        "Wasted: {} ({} bytes, {:.2}%)",
        human_size(a.wasted_bytes),
        a.wasted_bytes,
        a.wasted_percent
    )?;
    writeln!(out, "Efficiency: {:.4}", a.efficiency)?;
    writeln!(out)?;
    let count = |c: &analyze::Count| format!("{} ({})", c.files, human_size(c.bytes));
    let cols = [
        ("Layer", "LAYER"),
        ("DiffID", "DIFF ID"),
        ("Size", "SIZE"),
        ("Added", "ADDED"),
        ("Modified", "MODIFIED"),
        ("Removed", "REMOVED"),
        ("CreatedBy", "CREATED BY"),
    ];
    let rows: Vec<super::output::Row> = a
        .layers
        .iter()
        .map(|l| {
            let mut r = super::output::Row::new();
            r.insert("Layer", l.index.to_string());
            r.insert("DiffID", l.diff_id.short().to_string());
            r.insert("Size", human_size(l.size));
            r.insert("Added", count(&l.added));
            r.insert("Modified", count(&l.modified));
            r.insert("Removed", count(&l.removed));
            r.insert("CreatedBy", super::output::ellipsis(l.created_by.as_deref().unwrap_or(""), 60));
            r
        })
        .collect();
    super::output::print_table(out, &cols, &rows)?;
    if !a.wasted_paths.is_empty() {
        writeln!(out)?;
        let cols = [("Count", "COUNT"), ("Wasted", "WASTED"), ("Path", "PATH")];
        let rows: Vec<super::output::Row> = a
            .wasted_paths
            .iter()
            .map(|w| {
                let mut r = super::output::Row::new();
                r.insert("Count", w.count.to_string());
                r.insert("Wasted", human_size(w.bytes));
                r.insert("Path", w.path.clone());
                r
            })
            .collect();
        super::output::print_table(out, &cols, &rows)?;
    }
    Ok(())
}

/// `1000`, `20MB`, `1.5GB`, `10KiB` → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        u => return Err(format!("unknown size unit {u:?} in {s:?} (use B, kB, MB, GB, KiB, MiB, GiB)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: expected a number like 20MB"))?;
    Ok((n * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("1000"), Ok(1000));
        assert_eq!(super::parse_size("20MB"), Ok(20_000_000));
        assert_eq!(super::parse_size("1.5kB"), Ok(1500));
        assert_eq!(super::parse_size("2KiB"), Ok(2048));
        assert!(super::parse_size("3XB").is_err());
        assert!(super::parse_size("MB").is_err());
    }
}
