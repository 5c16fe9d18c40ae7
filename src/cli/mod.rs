//! The command line: clap definitions, one file per group of commands.

mod build;
mod containers;
mod images;
mod info;
mod inspect;
pub mod output;
mod ps_filter;
mod registry;
mod run;
mod system;
mod template;
mod transfer;
mod unshare;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, FromArgMatches, Parser, Subcommand};

use crate::store::{LockMode, Store};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Container image layers without a daemon: a content-addressed store, a FUSE union mount, commit, inspect and transport",
    long_about = None,
    after_help = "Store: --root DIR or STRATA_ROOT (default /var/lib/strata as root, else $XDG_DATA_HOME/strata)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Store directory.
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    pub log_level: String,
    /// More logging (-v info, -vv debug, -vvv trace), given before the command; overrides --log-level.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an image from a rootfs tarball (plain, gzip or zstd), like `docker import`.
    Import(images::ImportArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(images::TagArgs),
    /// Remove images (untag, then delete what no tag or container holds).
    Rmi(images::RmiArgs),
    /// Show low-level information on images as JSON.
    Inspect(images::InspectArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Load images from a docker-archive, OCI archive or OCI layout.
    Load(transfer::LoadArgs),
    /// Save images to a docker-archive, OCI archive or OCI layout directory.
    Save(transfer::SaveArgs),
    /// Download an image from a registry.
    Pull(registry::PullArgs),
    /// Upload an image to a registry.
    Push(registry::PushArgs),
    /// Log in to a registry (credentials are checked, then saved 0600 in $XDG_CONFIG_HOME/strata/auth.json).
    Login(registry::LoginArgs),
    /// Forget the saved credentials for a registry.
    Logout(registry::LogoutArgs),
    /// Search a registry's catalog for repositories.
    Search(registry::SearchArgs),
    /// Create a container: a writable layer over an image, and the process to run in it; prints its id.
    Create(run::CreateArgs),
    /// Run a command in a new container (runc or crun over strata's union mount).
    Run(run::RunArgs),
    /// Start stopped containers (-a: attached, returning the exit code).
    Start(run::StartArgs),
    /// Stop running containers: the stop signal, then SIGKILL after -t seconds.
    Stop(run::StopArgs),
    /// Stop, then start containers.
    Restart(run::RestartArgs),
    /// Send a signal to running containers.
    Kill(run::KillArgs),
    /// Wait for containers to stop; prints their exit codes.
    Wait(run::WaitArgs),
    /// Run a command in a running container.
    Exec(run::ExecArgs),
    /// Show a container's output (json-file log).
    Logs(run::LogsArgs),
    /// Show a running container's processes.
    Top(run::TopArgs),
    /// List containers (running or mounted ones; -a for all).
    Ps(containers::PsArgs),
    /// Remove containers and their writable layers.
    Rm(containers::RmArgs),
    /// Mount a container read-write (-o ro: read-only), or an image read-only, with strata's FUSE union filesystem; no arguments: list the mounts.
    Mount(containers::MountArgs),
    /// Unmount a container, an image or a mountpoint and wait until everything is written (-l: detach a busy one lazily).
    Umount(containers::UmountArgs),
    /// Show the changes of a container's writable layer, or between two images (A added, C changed, D deleted).
    Diff(containers::DiffArgs),
    /// List a directory of an image's or container's merged tree, without mounting.
    Ls(inspect::LsArgs),
    /// Print files of an image's or container's merged tree (symlinks followed inside it only).
    Cat(inspect::CatArgs),
    /// Write an image's or container's merged tree as one tar (no whiteouts).
    Export(inspect::ExportArgs),
    /// Show what each layer adds, changes and removes, and the space later layers waste.
    Analyze(inspect::AnalyzeArgs),
    /// Create a new image from a container's changes.
    Commit(containers::CommitArgs),
    /// Show strata's version.
    Version(info::VersionArgs),
    /// Show the store and what the kernel offers (FUSE passthrough, io_uring).
    Info(info::InfoArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Store-wide information.
    #[command(subcommand)]
    System(SystemCommand),
    /// Run a command (default: a shell) in the user namespace strata uses rootless, as `podman unshare`.
    Unshare(unshare::UnshareArgs),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache: step results (layers no image uses), cache mounts.
    Prune(build::BuilderPruneArgs),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// List images (same as `strata images`).
    Ls(images::ImagesArgs),
    /// Remove images (same as `strata rmi`).
    Rm(images::RmiArgs),
    /// Remove dangling images (with -a: every image no container uses), then unused layers and blobs.
    Prune(images::PruneArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Show low-level information on images as JSON.
    Inspect(images::InspectArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(images::TagArgs),
    /// Create an image from a rootfs tarball.
    Import(images::ImportArgs),
    /// Load images from an archive.
    Load(transfer::LoadArgs),
    /// Save images to an archive.
    Save(transfer::SaveArgs),
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show disk usage: images, layers, containers; shared base layers counted once.
    Df(images::DfArgs),
    /// Check the store: blob digests, image records, layer trees, tags, containers, mounts; exit 0 only when sound.
    Check(system::CheckArgs),
    /// Show the store and what the kernel offers (same as `strata info`).
    Info(info::InfoArgs),
    /// Rootless: end the process that keeps your user namespace between commands (the next command makes a new one), as `podman system migrate`.
    Migrate(unshare::MigrateArgs),
}

impl Cli {
    /// Parses the command line. clap's derive builds every command's arguments before it looks at
    /// one (about a third of a short command's start: 100 of its 300 page faults, heap for the
    /// whole tree), so the commands scripts run in loops (mount, umount) are tried first against
    /// a tree holding only them; whatever that tree does not accept (help, --version, another
    /// command, a mistake) is parsed again with the whole tree, so every message stays the same.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let mut cli = match Cli::parse_plain(&args, std::env::var_os("STRATA_ROOT")) {
            Some(cli) => cli,
            None => Cli::parse_quick(&args).or_else(|_| Cli::try_parse_from(&args))?,
        };
        // An absolute store path: a container's monitor and a mount daemon leave the caller's
        // working directory (they chdir to /), and bundles name paths in the store.
        if let Some(root) = cli.global.root.as_mut() {
            if let Ok(abs) = std::path::absolute(&*root) {
                *root = abs;
            }
        }
        Ok(cli)
    }

    /// The plain forms of `mount` and `umount` that scripts loop over, read without clap (whose
    /// smallest tree still costs a tenth of a millisecond to build and match):
    /// `[--root DIR] [--log-level L] [-v…] mount [-o OPTS]… [-f] TARGET MOUNTPOINT` and
    /// `… umount [-l] TARGET`, options before the command in those spellings only. Anything
    /// else (`=` forms, globals after the command, `--`, a value starting with `-`, help, an
    /// error) is `None`, and clap parses it as before: the same result, or its own message.
    fn parse_plain(args: &[std::ffi::OsString], env_root: Option<std::ffi::OsString>) -> Option<Cli> {
        let mut words = Vec::with_capacity(args.len());
        for a in args.iter().skip(1) {
            words.push(a.to_str().filter(|w| !w.is_empty())?);
        }
        let mut global = Global { root: None, log_level: "warn".into(), verbose: 0 };
        let (mut i, mut set_level) = (0, false);
        let command = loop {
            let step = match *words.get(i)? {
                "--root" if global.root.is_none() => {
                    global.root = Some(PathBuf::from(value(&words, i)?));
                    2
                }
                "--log-level" if !set_level => {
                    global.log_level = value(&words, i)?.to_string();
                    set_level = true;
                    2
                }
                "-v" | "--verbose" => {
                    global.verbose = global.verbose.saturating_add(1);
                    1
                }
                "-vv" => {
                    global.verbose = global.verbose.saturating_add(2);
                    1
                }
                c @ ("mount" | "umount") => break c,
                _ => return None,
            };
            i += step;
        };
        if global.root.is_none() {
            // clap's `env`: a variable set, and not empty, gives the store.
            match env_root {
                Some(r) if r.is_empty() => return None,
                r => global.root = r.map(PathBuf::from),
            }
        }
        let (mut options, mut flag, mut positional) = (Vec::new(), false, Vec::new());
        let mut j = i + 1;
        while let Some(&w) = words.get(j) {
            match (command, w) {
                ("mount", "-o") => {
                    options.push(value(&words, j)?.to_string());
                    j += 1;
                }
                ("mount", "-f" | "--foreground") | ("umount", "-l" | "--lazy") if !flag => flag = true,
                (_, w) if w.starts_with('-') => return None,
                (_, w) => positional.push(w),
            }
            j += 1;
        }
        let command = match (command, &positional[..]) {
            ("mount", [target, mountpoint]) => Command::Mount(containers::MountArgs {
                target: Some(target.to_string()),
                mountpoint: Some(PathBuf::from(mountpoint)),
                options,
                foreground: flag,
            }),
            ("umount", [target]) => {
                Command::Umount(containers::UmountArgs { target: target.to_string(), lazy: flag })
            }
            _ => return None,
        };
        return Some(Cli { global, command });

        /// The value after option `words[i]`, unless it looks like an option itself.
        fn value<'a>(words: &[&'a str], i: usize) -> Option<&'a str> {
            words.get(i + 1).copied().filter(|v| !v.starts_with('-'))
        }
    }

    /// The command line against the tree of the quick commands only.
    fn parse_quick(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        let tree = Global::augment_args(clap::Command::new("strata"))
            .subcommand_required(true)
            .subcommand(containers::MountArgs::augment_args(clap::Command::new("mount")))
            .subcommand(containers::UmountArgs::augment_args(clap::Command::new("umount")));
        Cli::from_arg_matches(&tree.try_get_matches_from(args)?)
    }
}

pub fn init_logging(g: &Global) {
    let level = match g.verbose {
        0 => g.log_level.as_str(),
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // strata is the only crate of the build that emits `tracing` events, so a maximum level is
    // the filter `strata=LEVEL` was, without an env filter's directive parsing at every start.
    let max = level
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    crate::logging::init(max);
}

/// Opens the store chosen by `--root` / `STRATA_ROOT` / the default.
pub(crate) fn open_store(g: &Global, mode: LockMode) -> Result<Store> {
    let root = g.root.clone().unwrap_or_else(Store::default_root);
    unshare::check_store_owner(&root)?;
    Store::open(&root, mode)
}

pub fn run(mut cli: Cli) -> Result<ExitCode> {
    // The re-executed child of `unshare::in_user_namespace` enters the namespace here, before any
    // thread exists; every other process goes on at once.
    crate::sys::userns::enter_if_reexecuted()?;
    if runs_in_user_namespace(&cli.command) {
        if let Some(code) = unshare::in_user_namespace(&mut cli.global)? {
            return Ok(code);
        }
    }
    let g = &cli.global;
    if matches!(cli.command, Command::Mount(_)) {
        unshare::check_rootless_mount()?;
    }
    match cli.command {
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(g, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::images(g, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(g, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::rmi(g, a),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => images::inspect(g, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(g, a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(g, a),
        Command::Create(a) => run::create(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Start(a) => run::start(g, a),
        Command::Stop(a) => run::stop(g, a),
        Command::Restart(a) => run::restart(g, a),
        Command::Kill(a) => run::kill(g, a),
        Command::Wait(a) => run::wait(g, a),
        Command::Exec(a) => run::exec(g, a),
        Command::Logs(a) => run::logs(g, a),
        Command::Top(a) => run::top(g, a),
        Command::Ps(a) => containers::ps(g, a),
        Command::Rm(a) => containers::rm(g, a),
        Command::Mount(a) => containers::mount(g, a),
        Command::Umount(a) => containers::umount(g, a),
        Command::Diff(a) => containers::diff(g, a),
        Command::Commit(a) => containers::commit(g, a),
        Command::Ls(a) => inspect::ls(g, a),
        Command::Cat(a) => inspect::cat(g, a),
        Command::Export(a) => inspect::export(g, a),
        Command::Analyze(a) => inspect::analyze(g, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => transfer::load(g, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => transfer::save(g, a),
        Command::System(SystemCommand::Df(a)) => images::df(g, a),
        Command::System(SystemCommand::Check(a)) => system::check(g, a),
        Command::System(SystemCommand::Migrate(a)) => unshare::migrate(g, a),
        Command::Pull(a) => registry::pull(g, a),
        Command::Push(a) => registry::push(g, a),
        Command::Login(a) => registry::login(g, a),
        Command::Logout(a) => registry::logout(g, a),
        Command::Search(a) => registry::search(g, a),
        Command::Unshare(a) => unshare::unshare(g, a),
        Command::Version(a) => info::version(g, a),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => info::info(g, a),
        Command::Build(a) => build::build(g, a),
        Command::Builder(BuilderCommand::Prune(a)) => build::builder_prune(g, a),
    }
}

/// Rootless, the commands that create, read or delete layer files run in the user namespace
/// (where the image's owners are real); mounts are served from outside it, where fusermount3
/// works, and commands that touch no layer file stay outside too.
fn runs_in_user_namespace(c: &Command) -> bool {
    matches!(
        c,
        Command::Import(_)
            | Command::Load(_)
            | Command::Pull(_)
            | Command::Commit(_)
            | Command::Rmi(_)
            | Command::Ls(_)
            | Command::Cat(_)
            | Command::Export(_)
            | Command::Analyze(_)
            | Command::Diff(_)
            | Command::Image(
                ImageCommand::Import(_)
                    | ImageCommand::Load(_)
                    | ImageCommand::Rm(_)
                    | ImageCommand::Prune(_)
            )
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// What the quick tree parses, it parses as the whole tree does; the rest it refuses.
    #[test]
    fn quick_parse_agrees_with_the_whole_tree() {
        use super::{Cli, Command};
        use clap::Parser;
        let argv = |s: &str| s.split(' ').map(std::ffi::OsString::from).collect::<Vec<_>>();
        let seen = |c: &Cli| {
            let g = (&c.global.root, c.global.log_level.clone(), c.global.verbose);
            let cmd = match &c.command {
                Command::Mount(a) => {
                    format!("mount {:?} {:?} {:?} {}", a.target, a.mountpoint, a.options, a.foreground)
                }
                Command::Umount(a) => format!("umount {} {}", a.target, a.lazy),
                _ => "other".to_string(),
            };
            format!("{g:?} {cmd}")
        };
        for line in [
            "strata mount",
            "strata --root /s mount c /mnt",
            "strata -vv mount -o ro,allow_other -f c /mnt --log-level debug",
            "strata mount c /mnt --root /s -o rw",
            "strata umount /mnt",
            "strata --log-level info umount -l c --root /s",
        ] {
            let quick = Cli::parse_quick(&argv(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
            let whole = Cli::try_parse_from(argv(line)).unwrap();
            assert_eq!(seen(&quick), seen(&whole), "{line}");
        }
        // The plain reading (no clap) agrees with the whole tree on what it takes, and leaves
        // everything else to clap.
        for line in [
            "strata mount c /mnt",
            "strata --root /s mount c /mnt",
            "strata -vv --log-level debug mount -o ro,allow_other -f c /mnt",
            "strata -v -v mount c -o rw /mnt -o ro",
            "strata --verbose --root /s umount /mnt",
            "strata umount -l c",
            "strata umount --lazy mount",
            "strata mount --foreground umount /mnt",
        ] {
            let plain = Cli::parse_plain(&argv(line), None).unwrap_or_else(|| panic!("{line}: not taken"));
            let whole = Cli::try_parse_from(argv(line)).unwrap();
            assert_eq!(seen(&plain), seen(&whole), "{line}");
        }
        let env = Cli::parse_plain(&argv("strata umount /mnt"), Some("/env".into())).unwrap();
        assert_eq!(env.global.root.as_deref(), Some(std::path::Path::new("/env")));
        let given = Cli::parse_plain(&argv("strata --root /s umount /mnt"), Some("/env".into())).unwrap();
        assert_eq!(given.global.root.as_deref(), Some(std::path::Path::new("/s")));
        for line in [
            "strata",
            "strata mount",
            "strata mount c",
            "strata mount c /mnt /x",
            "strata mount c /mnt --root /s",
            "strata --root=/s mount c /mnt",
            "strata --root /s --root /t mount c /mnt",
            "strata mount -f -f c /mnt",
            "strata mount -o c /mnt",
            "strata mount -o=ro c /mnt",
            "strata mount --help",
            "strata umount",
            "strata umount -x /mnt",
            "strata umount -- -x",
            "strata umount -l -l /mnt",
            "strata -vvvv umount /mnt",
            "strata ps",
            "strata --version",
        ] {
            assert!(Cli::parse_plain(&argv(line), None).is_none(), "{line}");
        }
        assert!(Cli::parse_plain(&argv("strata umount /mnt"), Some("".into())).is_none());
        for line in [
            "strata",
            "strata --version",
            "strata --help",
            "strata mount --help",
            "strata umount",
            "strata mount c",
            "strata ps",
            "strata umount -x /mnt",
        ] {
            assert!(Cli::parse_quick(&argv(line)).is_err(), "{line}");
        }
    }
}
