//! strata-overlay: fuse-overlayfs' command line over strata's union filesystem.
//!
//! `strata-overlay [-f] [-d] -o lowerdir=A:B:C[,upperdir=U,workdir=W][,ro][,allow_other] MOUNTPOINT`
//! `strata-overlay SOURCE MOUNTPOINT -o OPTIONS` (as run by `mount -t fuse.strata-overlay`)
//!
//! lowerdir lists the TOP layer first. Without upperdir the mount is read-only. `io_uring`
//! (the default, or `STRATA_IO_URING`) serves through FUSE over io_uring when the kernel offers
//! it, `noio_uring` never does; `nopassthrough`, `threads=N` as for `strata mount`. Harmless
//! options strata does not implement are accepted with a log line; others are refused.
//! Run as root it turns `allow_other` on by itself, as fuse-overlayfs does (tools mounting
//! through `mount -t fuse.strata-overlay` for other users rely on it); permission checks stay
//! the kernel's (`default_permissions`).

use std::path::PathBuf;
use std::process::ExitCode;

use strata::fs::MountOptions;
use strata::sys::fuse_mount;

const USAGE: &str =
    "usage: strata-overlay [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,ro][,allow_other] MOUNTPOINT
       strata-overlay SOURCE MOUNTPOINT -o OPTIONS";

/// Options accepted and ignored: they change nothing strata does, or only mount bookkeeping.
const IGNORED: &[&str] = &[
    "relatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "lazytime",
    "nolazytime",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "volatile",
    "userxattr",
    "noacl",
    "default_permissions",
    "silent",
    "loud",
    "nonempty",
];
/// Prefixes of `key=value` options accepted and ignored.
const IGNORED_KEYS: &[&str] = &[
    "comment=",
    "x-",
    "context=",
    "fscontext=",
    "defcontext=",
    "rootcontext=",
    "fsync=",
    "index=",
    "redirect_dir=",
    "metacopy=",
    "xino=",
    "nfs_export=",
    "timeout=",
    "max_read=",
    "blksize=",
];

#[derive(Debug, Default)]
struct Args {
    foreground: bool,
    debug: bool,
    opts: Vec<String>,
    positional: Vec<String>,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let s = &argv[i];
        match s.as_str() {
            "-f" => a.foreground = true,
            "-d" | "--debug" => {
                a.foreground = true;
                a.debug = true;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            "-V" | "--version" => {
                println!("strata-overlay {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-o" => {
                i += 1;
                a.opts.push(argv.get(i).ok_or("-o needs an argument")?.clone());
            }
            "--" => {
                a.positional.extend(argv[i + 1..].iter().cloned());
                break;
            }
            o if o.starts_with("-o") => a.opts.push(o[2..].to_string()),
            o if o.starts_with('-') && o.len() > 1 => return Err(format!("unknown flag {o}\n{USAGE}")),
            _ => a.positional.push(s.clone()),
        }
        i += 1;
    }
    Ok(a)
}

/// Splits on `sep`; `\` + `sep` stands for `sep` itself (other escapes are kept for the next
/// split).
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let (Some(n), Some(l)) = (chars.next(), out.last_mut()) {
                if n != sep {
                    l.push('\\');
                }
                l.push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else if let Some(l) = out.last_mut() {
            l.push(c);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn build(a: &Args) -> Result<(MountOptions, PathBuf), String> {
    let mountpoint = match a.positional.as_slice() {
        [mp] => mp,
        [_source, mp] => mp,
        _ => return Err(format!("expected MOUNTPOINT or SOURCE MOUNTPOINT\n{USAGE}")),
    };
    let mut m = MountOptions {
        fsname: "strata-overlay".into(),
        subtype: "strata-overlay".into(),
        ..MountOptions::default()
    };
    let mut lower = None;
    for opt in a.opts.iter().flat_map(|o| split_escaped(o, ',')) {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (k, v) {
            ("lowerdir", Some(v)) => {
                lower = Some(split_escaped(v, ':').into_iter().map(PathBuf::from).collect::<Vec<_>>())
            }
            ("upperdir", Some(v)) => m.upper = Some(PathBuf::from(v)),
            ("workdir", Some(v)) => m.work = Some(PathBuf::from(v)),
            ("fsname", Some(v)) => m.fsname = v.to_string(),
            ("subtype", Some(v)) => m.subtype = v.to_string(),
            ("ro", None) => m.read_only = true,
            ("rw", None) => {}
            ("allow_other", None) => m.allow_other = true,
            ("nopassthrough", None) => m.passthrough = false,
            ("io_uring", None) => m.io_uring = true,
            ("noio_uring", None) => m.io_uring = false,
            ("threads", Some(v)) => m.threads = v.parse().map_err(|_| format!("bad threads={v}"))?,
            (f, None) if fuse_mount::flag(f).is_some() => m.flags.push(f.to_string()),
            (f, None) if IGNORED.contains(&f) => tracing::info!("option {f} accepted and ignored"),
            _ if IGNORED_KEYS.iter().any(|p| opt.starts_with(p)) => {
                tracing::info!("option {opt} accepted and ignored")
            }
            _ => return Err(format!("unsupported option {opt:?}")),
        }
    }
    m.lowers = lower.ok_or("missing lowerdir=")?;
    if m.lowers.is_empty() {
        return Err("lowerdir= is empty".into());
    }
    if m.upper.is_some() && m.work.is_none() && !m.read_only {
        return Err("upperdir= needs workdir=".into());
    }
    if m.upper.is_none() {
        m.read_only = true;
    }
    if running_as_root() {
        m.allow_other = true;
    }
    Ok((m, PathBuf::from(mountpoint)))
}

/// fuse-overlayfs' rule: a root mount is for every user (the kernel still checks permissions).
fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn main() -> ExitCode {
    strata::sys::daemon::note_inherited();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let default = if args.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    let (opts, mountpoint) = match build(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("strata-overlay: {e}");
            return ExitCode::from(2);
        }
    };
    let res = if args.foreground {
        strata::fs::mount_foreground(&opts, &mountpoint)
    } else {
        // One fork: this process exits as soon as the mount answers, so the daemon needs no
        // intermediate process to be adopted by init.
        strata::fs::mount::spawn_daemon(&opts, &mountpoint).and_then(|p| p.wait()).map(|_| ())
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-overlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn both_forms() {
        let (m, mp) =
            build(&args(&["-o", "lowerdir=/a:/b,upperdir=/u,workdir=/w,noatime,rw", "/mnt"])).unwrap();
        assert_eq!(m.lowers, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(m.upper, Some(PathBuf::from("/u")));
        assert!(!m.read_only);
        assert_eq!(mp, PathBuf::from("/mnt"));
        let (m, mp) = build(&args(&["overlay", "/mnt", "-o", "lowerdir=/a\\:x"])).unwrap();
        assert_eq!(m.lowers, vec![PathBuf::from("/a:x")]);
        assert!(m.read_only);
        assert_eq!(mp, PathBuf::from("/mnt"));
        assert!(build(&args(&["-o", "lowerdir=/a,squash_to_root", "/mnt"])).is_err());
        assert!(build(&args(&["-o", "lowerdir=/a,upperdir=/u", "/mnt"])).is_err());
    }

    #[test]
    fn allow_other_follows_root() {
        let (m, _) = build(&args(&["-o", "lowerdir=/a", "/mnt"])).unwrap();
        assert_eq!(m.allow_other, running_as_root());
        let (m, _) = build(&args(&["-o", "lowerdir=/a,allow_other", "/mnt"])).unwrap();
        assert!(m.allow_other);
    }
}
