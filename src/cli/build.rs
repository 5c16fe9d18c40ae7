//! `strata build` and `strata builder prune`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::images::{fixed_time, parse_tag};
use super::output::human_size;
use super::{Global, open_store};
use crate::build::builder::{Builder, Cancelled, Options, StepFailed};
use crate::build::context::{self, Stdin};
use crate::build::progress::Progress;
use crate::oci::image::Platform;
use crate::store::{LockMode, Store};

#[derive(Args)]
#[command(after_help = "Reproducible ids: with SOURCE_DATE_EPOCH set, history and config times are that \
    time and file mtimes newer than it are clamped to it.\n\
    Progress is BuildKit's plain output on stderr (auto and tty print the same).")]
pub struct BuildArgs {
    /// Name and optionally a tag (NAME[:TAG]); repeatable.
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile); - reads it from stdin.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable: KEY=VALUE, or KEY to take it from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (and the stages it needs) only.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull base images, even when they are in the store.
    #[arg(long)]
    pub pull: bool,
    /// Networking for RUN: host (the default), none.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Set a label on the image (KEY=VALUE); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Progress output: auto, plain, tty (all plain), quiet.
    #[arg(long, value_name = "TYPE", default_value = "auto")]
    pub progress: String,
    /// Platform of the base images (this machine's by default; RUN cannot emulate another).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// The build context: a directory, or - for a tar (or a lone Dockerfile) on stdin.
    #[arg(value_name = "PATH|-")]
    pub context: String,
}

pub fn build(g: &Global, a: BuildArgs) -> Result<ExitCode> {
    let tags = a.tags.iter().map(|t| parse_tag(t)).collect::<Result<Vec<_>>>()?;
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                // Docker: KEY alone takes the value from the environment, or is left unset.
                if let Ok(v) = std::env::var(b) {
                    build_args.insert(b.clone(), v);
                }
            }
        }
    }
    let mut labels = Vec::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid --label {l:?}: expected KEY=VALUE");
        }
        labels.push((k.to_string(), v.to_string()));
    }
    let quiet = match a.progress.as_str() {
        "auto" | "plain" | "tty" => a.quiet,
        "quiet" => true,
        other => bail!("invalid --progress {other:?}: auto, plain, tty or quiet"),
    };
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    if let Some(p) = &platform {
        if !Platform::host().matches(p) {
            bail!("--platform {p}: strata builds for this machine ({}) only", Platform::host());
        }
    }
    let epoch = fixed_time(None)?;
    let stdin_file = a.file.as_ref().is_some_and(|f| f.as_os_str() == "-");
    if stdin_file && a.context == "-" {
        bail!("the Dockerfile and the context cannot both come from stdin (-f - with context -)");
    }
    let progress = Progress::new(quiet);
    let step = progress.step("[internal] load build definition from Dockerfile");
    // Keeps a stdin context's temporary directory alive for the build.
    let mut _tmp = None;
    let (context_dir, dockerfile_name, dockerfile) = if a.context == "-" {
        match context::read_stdin(std::io::stdin().lock())? {
            Stdin::Tar(dir) => {
                let (name, text) =
                    context::dockerfile(&dir.0, a.file.as_deref().map(|f| dir.0.join(f)).as_deref())?;
                let p = dir.0.clone();
                _tmp = Some(dir);
                (p, name, text)
            }
            Stdin::Dockerfile(text, dir) => {
                let p = dir.0.clone();
                _tmp = Some(dir);
                (p, "Dockerfile".to_string(), text)
            }
        }
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            bail!("unable to prepare context: path {:?} not found or not a directory", a.context);
        }
        if stdin_file {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
                .context("reading the Dockerfile from stdin")?;
            (dir, "-".to_string(), text)
        } else {
            let (name, text) = context::dockerfile(&dir, a.file.as_deref())?;
            (dir, name, text)
        }
    };
    step.status(&format!("transferring dockerfile: {}B done", dockerfile.len()));
    step.done();
    let step = progress.step("[internal] load .dockerignore");
    let df_path = if stdin_file { None } else { a.file.clone() };
    let ignore = context::ignore_file(&context_dir, df_path.as_deref())?;
    step.done();
    let opts = Options {
        dockerfile_name,
        dockerfile,
        context: context_dir,
        ignore,
        tags,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        pull: a.pull,
        network: a.network,
        labels,
        platform,
        epoch,
        cancel: Default::default(),
    };
    let builder = Builder::new(&opts, &progress)?;
    let root = g.root.clone().unwrap_or_else(Store::default_root);
    let open = |mode| Store::open(&root, mode);
    builder.fetch_images(&open)?;
    let store = open(LockMode::Exclusive)?;
    let signal = cancel_on_signals(&opts.cancel);
    let built = match builder.build(store) {
        Ok(b) => b,
        Err(e) => {
            if let Some(f) = e.downcast_ref::<StepFailed>() {
                eprintln!("ERROR: failed to solve: {f}");
                return Ok(ExitCode::FAILURE);
            }
            if let Some(c) = e.downcast_ref::<Cancelled>() {
                eprintln!("ERROR: failed to solve: {c}");
                let n = signal.load(std::sync::atomic::Ordering::SeqCst);
                return Ok(ExitCode::from(128 + n.clamp(1, 127) as u8));
            }
            return Err(e);
        }
    };
    if let Some(f) = &a.iidfile {
        std::fs::write(f, built.image.to_string())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if a.quiet {
        writeln!(std::io::stdout(), "{}", built.image)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, SIGTERM or SIGHUP cancels the build as BuildKit does: a running RUN is killed and
/// its container removed, no later step runs, the steps before stay cached; the exit status is
/// 128 + the signal. A second signal leaves at once (what the next writer clears then).
/// Returns the signal that cancelled (0 until one does).
fn cancel_on_signals(
    cancel: &std::sync::Arc<crate::container::Cancel>,
) -> std::sync::Arc<std::sync::atomic::AtomicI32> {
    use nix::sys::signal::{SigSet, Signal};
    use std::sync::atomic::{AtomicI32, Ordering};
    let got = std::sync::Arc::new(AtomicI32::new(0));
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    // Blocked here, and so in every thread started from now on: only the watcher takes them
    // (the runtime and other children start with an empty mask). The watcher waits in sigwait
    // holding nothing, so a RUN's mount daemon can still be forked beside it.
    if let Err(e) = set.thread_block() {
        tracing::warn!("cannot block signals ({e}): Ctrl-C will not clean up a RUN step");
        return got;
    }
    let (cancel, seen) = (cancel.clone(), got.clone());
    let spawned = std::thread::Builder::new().name("build-signals".into()).spawn(move || {
        while let Ok(signal) = set.wait() {
            if seen.swap(signal as i32, Ordering::SeqCst) != 0 {
                eprintln!("strata: {signal} again: leaving without cleaning up");
                std::process::exit(128 + signal as i32);
            }
            eprintln!("strata: {signal}: cancelling the build");
            cancel.cancel();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no signal thread ({e}): Ctrl-C will not clean up a RUN step");
        let _ = set.thread_unblock();
    }
    got
}

#[derive(Args)]
pub struct BuilderPruneArgs {
    /// Do not ask for confirmation (strata never asks; accepted for Docker compatibility).
    #[arg(short, long)]
    pub force: bool,
    /// Remove all build cache (the only mode: accepted for Docker compatibility).
    #[arg(short, long)]
    pub all: bool,
}

pub fn builder_prune(g: &Global, _a: BuilderPruneArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Exclusive)?;
    let p = crate::build::cache::prune(&store)?;
    let mut out = std::io::stdout().lock();
    // Docker's output: the objects deleted (when there are any), then the total.
    if !p.ids.is_empty() {
        writeln!(out, "Deleted build cache objects:")?;
        for id in &p.ids {
            writeln!(out, "{}", id.get(..25).unwrap_or(id))?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(p.bytes))?;
    Ok(ExitCode::SUCCESS)
}
