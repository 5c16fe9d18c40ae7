//! `pull`, `push`, `login`, `logout`, `search`: arguments and Docker-shaped output; the work is in
//! `crate::registry`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::output::{Format, Row, print_table};
use super::{Global, open_store};
use crate::oci::Reference;
use crate::oci::image::Platform;
use crate::oci::reference::DEFAULT_REGISTRY;
use crate::registry::endpoint::normalize_registry;
use crate::registry::login::{login as do_login, logout as do_logout};
use crate::registry::{ClientOptions, Credentials, Progress, PullOptions};

#[derive(Args)]
pub struct PullArgs {
    /// Platform to pull from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the image reference at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// Allow plain HTTP and unverified TLS (always allowed for loopback registries and those listed
    /// in $XDG_CONFIG_HOME/strata/registries.json as {"insecure-registries": ["host:port"]}).
    #[arg(long)]
    pub insecure: bool,
    /// Image to pull: [REGISTRY/]REPOSITORY[:TAG|@DIGEST].
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub reference: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Print only the manifest digest at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// Allow plain HTTP and unverified TLS (always allowed for loopback registries and those listed
    /// in $XDG_CONFIG_HOME/strata/registries.json as {"insecure-registries": ["host:port"]}).
    #[arg(long)]
    pub insecure: bool,
    /// How to compress layers stored uncompressed (loaded from a docker-archive, imported from a
    /// plain tar): gzip or zstd, done once (the image then keeps the compressed layers); none sends
    /// them as stored.
    #[arg(long, value_name = "gzip|zstd|none", default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Image to push: [REGISTRY/]REPOSITORY[:TAG], as tagged in the store.
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Registry (default: docker.io).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// Username (asked on the terminal when absent).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Allow plain HTTP and unverified TLS (always allowed for loopback registries and those listed
    /// in $XDG_CONFIG_HOME/strata/registries.json as {"insecure-registries": ["host:port"]}).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry (default: docker.io).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Args)]
pub struct SearchArgs {
    /// Substring of repository names to look for; `HOST/TERM` searches HOST.
    pub term: String,
    /// Registry whose catalog to search.
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// At most this many repositories.
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// `json`, or a template with {{.Name}} and {{.Tags}}.
    #[arg(long)]
    pub format: Option<String>,
    /// Allow plain HTTP and unverified TLS (always allowed for loopback registries and those listed
    /// in $XDG_CONFIG_HOME/strata/registries.json as {"insecure-registries": ["host:port"]}).
    #[arg(long)]
    pub insecure: bool,
}

fn parse_ref(input: &str) -> Result<Reference> {
    Ok(Reference::parse(input)?)
}

pub fn pull(g: &Global, a: PullArgs) -> Result<ExitCode> {
    let given = parse_ref(&a.reference)?;
    if given.tag.is_none() && given.digest.is_none() && !a.quiet {
        writeln!(std::io::stdout(), "Using default tag: latest")?;
    }
    let reference = given.with_default_tag();
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let opts = PullOptions { platform, client: ClientOptions { insecure: a.insecure, ..Default::default() } };
    let progress = Progress::new(a.quiet);
    let open = |mode| open_store(g, mode);
    let pulled = crate::registry::pull(&open, &reference, &opts, &progress)
        .with_context(|| format!("pull {}", reference.familiar()))?;
    drop(progress);
    if !a.quiet {
        writeln!(std::io::stdout(), "Digest: {}", pulled.digest)?;
        let status = if pulled.up_to_date { "Image is up to date for" } else { "Downloaded newer image for" };
        writeln!(std::io::stdout(), "Status: {status} {}", pulled.reference.familiar())?;
    }
    writeln!(std::io::stdout(), "{}", pulled.reference)?;
    Ok(ExitCode::SUCCESS)
}

pub fn push(g: &Global, a: PushArgs) -> Result<ExitCode> {
    let reference = parse_ref(&a.reference)?.with_default_tag();
    let opts = ClientOptions { insecure: a.insecure, ..Default::default() };
    let progress = Progress::new(a.quiet);
    let open = |mode| open_store(g, mode);
    let compression = a.compression.parse()?;
    let pushed = crate::registry::push(&open, &reference, &opts, compression, &progress)
        .with_context(|| format!("push {}", reference.familiar()))?;
    drop(progress);
    if a.quiet {
        writeln!(std::io::stdout(), "{}", pushed.digest)?;
    } else {
        let tag = pushed.reference.tag.as_deref().unwrap_or("latest");
        writeln!(std::io::stdout(), "{tag}: digest: {} size: {}", pushed.digest, pushed.size)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn login(_g: &Global, a: LoginArgs) -> Result<ExitCode> {
    let server = a.server.as_deref().map(normalize_registry).unwrap_or_else(|| DEFAULT_REGISTRY.to_string());
    let what = || format!("login {server}");
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ", true).with_context(what)?,
    };
    if username.is_empty() {
        bail!("login {server}: a username is required");
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        prompt("Password: ", false).with_context(what)?
    };
    if password.is_empty() {
        bail!("login {server}: a password is required");
    }
    let registry = do_login(&server, Credentials { username, password }, a.insecure).with_context(what)?;
    tracing::info!(
        "credentials for {registry} saved in {}",
        crate::registry::credentials::auth_file().display()
    );
    writeln!(std::io::stdout(), "Login Succeeded")?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; the password without echo.
fn prompt(label: &str, echo: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("cannot prompt: stdin is not a terminal (give -u USER and --password-stdin)");
    }
    eprint!("{label}");
    std::io::stderr().flush()?;
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = if echo { None } else { Some(tcgetattr(&stdin)?) };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        tcsetattr(&stdin, SetArg::TCSANOW, t)?;
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn logout(_g: &Global, a: LogoutArgs) -> Result<ExitCode> {
    let server = a.server.as_deref().unwrap_or(DEFAULT_REGISTRY);
    let (registry, removed) = do_logout(server).with_context(|| format!("logout {server}"))?;
    if removed {
        writeln!(std::io::stdout(), "Removing login credentials for {registry}")?;
    } else {
        writeln!(std::io::stdout(), "Not logged in to {registry}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn search(_g: &Global, a: SearchArgs) -> Result<ExitCode> {
    // `HOST/TERM` like docker search, else --registry, else docker.io.
    let (registry, term) = match (&a.registry, a.term.split_once('/')) {
        (Some(r), _) => (normalize_registry(r), a.term.clone()),
        (None, Some((host, rest))) if host.contains(['.', ':']) || host == "localhost" => {
            (normalize_registry(host), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), a.term.clone()),
    };
    let format = a.format.as_deref().map(|f| Format::parse(f, &["Name", "Tags"])).transpose()?;
    let opts = ClientOptions { insecure: a.insecure, ..Default::default() };
    let found = crate::registry::search(&registry, &term, a.limit, &opts)
        .with_context(|| format!("search {registry} for {term:?}"))?;
    let mut out = std::io::stdout().lock();
    if let Some(Format::Json) = format {
        for f in &found {
            writeln!(out, "{}", serde_json::json!({"Name": f.name, "Tags": f.tags}))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = found
        .iter()
        .map(|f| {
            let mut r = Row::new();
            r.insert("Name", f.name.clone());
            r.insert("Tags", f.tags.join(", "));
            r
        })
        .collect();
    match format {
        Some(f) => f.render(&mut out, &rows, &|f| f.to_uppercase())?,
        None => print_table(&mut out, &[("Name", "NAME"), ("Tags", "TAGS")], &rows)?,
    }
    Ok(ExitCode::SUCCESS)
}
