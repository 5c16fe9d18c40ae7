//! Images in and out of archives: load, save.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::{Global, open_store};
use crate::archive::{self, LoadSource, SaveFormat, SaveTarget};
use crate::progress::Progress;
use crate::store::LockMode;

#[derive(Args)]
#[command(
    after_help = "Formats are detected by content: docker-archive (docker save, incl. legacy layouts), \
    OCI archive (a tarred OCI layout), either of them gzip- or zstd-compressed."
)]
pub struct LoadArgs {
    /// Read from an archive file (or `oci:DIR[:TAG]`) instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<String>,
    /// Load from an OCI image layout directory (`DIR` or `DIR:TAG`).
    #[arg(long, value_name = "DIR[:TAG]", conflicts_with = "input")]
    pub oci: Option<String>,
    /// Suppress the "Loaded image" lines.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn load(g: &Global, a: LoadArgs) -> Result<ExitCode> {
    let source = match (&a.oci, &a.input) {
        (Some(dir), _) => LoadSource::oci_dir(dir),
        (None, Some(input)) => LoadSource::parse(input),
        (None, None) => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is a terminal: use -i FILE or pipe an archive");
            }
            LoadSource::Stdin
        }
    };
    let store = open_store(g, LockMode::Exclusive)?;
    let progress = Progress::on_terminal(a.quiet);
    let loaded = archive::load_with(&store, source, &progress)?;
    drop(progress);
    if !a.quiet {
        for l in loaded {
            if l.tags.is_empty() {
                writeln!(std::io::stdout(), "Loaded image ID: {}", l.id)?;
            }
            for t in l.tags {
                writeln!(std::io::stdout(), "Loaded image: {}", t.familiar())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SaveArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Write to a file (a directory for oci-dir) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (like docker save), oci-archive, or oci-dir.
    #[arg(long, default_value = "docker-archive")]
    pub format: SaveFormat,
}

pub fn save(g: &Global, a: SaveArgs) -> Result<ExitCode> {
    let target = match (&a.output, a.format) {
        (Some(dir), SaveFormat::OciDir) => SaveTarget::Dir(dir.clone()),
        (None, SaveFormat::OciDir) => bail!("--format oci-dir needs -o DIR"),
        (Some(file), _) => SaveTarget::File(file.clone()),
        (None, _) => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal: use -o FILE or redirect stdout");
            }
            SaveTarget::Writer(Box::new(std::io::stdout().lock()))
        }
    };
    let store = open_store(g, LockMode::Shared)?;
    remove_partials_on_signal(archive::partial_dirs(&target));
    archive::save_with(&store, &a.images, a.format, target, &Progress::on_terminal(false))?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, SIGTERM or SIGHUP during a save to a file or directory removes the hidden partial
/// files it was writing, then exits as the signal would (128 + its number). SIGKILL cannot be
/// caught: the next save removes what such a process left.
fn remove_partials_on_signal(dirs: Vec<PathBuf>) {
    use nix::sys::signal::{SigSet, Signal};
    if dirs.is_empty() {
        return;
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    // Blocked here, and so in every thread started from now on: only the watcher takes them.
    if let Err(e) = set.thread_block() {
        tracing::warn!("cannot block signals ({e}): an interrupted save may leave a partial file");
        return;
    }
    std::thread::spawn(move || {
        let Ok(signal) = set.wait() else { return };
        for d in &dirs {
            archive::remove_partials(d, archive::Owner::Me);
        }
        eprintln!("strata: save interrupted by {signal}: partial output removed");
        std::process::exit(128 + signal as i32);
    });
}
