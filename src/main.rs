//! strata: parse arguments, set up logging, run, map errors to exit codes — nothing else.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::{Error, ErrorKind};

fn main() -> ExitCode {
    strata::sys::daemon::note_inherited();
    let cli = match strata::cli::Cli::parse_args() {
        Ok(cli) => cli,
        // --help and --version print to stdout and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        // `strata` or `strata image` alone lists the commands, on stdout and with status 0, as Docker.
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print!("{}", e.render());
            return ExitCode::SUCCESS;
        }
        // `strata --root DIR` and nothing else: the command list too.
        Err(e) if e.kind() == ErrorKind::MissingSubcommand => {
            print!("{}", <strata::cli::Cli as clap::CommandFactory>::command().render_help());
            return ExitCode::SUCCESS;
        }
        // Docker's CLI exits 125 when the failure is its own (a bad flag or argument).
        Err(e) => {
            eprintln!("strata: error: {}", usage_error(&e, std::env::args_os()));
            return ExitCode::from(125);
        }
    };
    strata::cli::init_logging(&cli.global);
    match strata::cli::run(cli) {
        Ok(code) => code,
        // A reader that went away (`strata images | head -1`) is not worth a message.
        Err(e) if is_broken_pipe(&e) => ExitCode::FAILURE,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "loading x.tar: layer 2: bad gzip".
            eprintln!("strata: error: {e:#}");
            if e.chain().any(|c| c.is::<strata::cli::output::UsageError>()) {
                ExitCode::from(125)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A clap usage error on one line: clap's first line, naming the offending argument, plus where
/// to read more (`see 'strata import --help'`) instead of its multi-line usage block.
fn usage_error(e: &Error, args: impl Iterator<Item = OsString>) -> String {
    if e.kind() == ErrorKind::InvalidUtf8 {
        let bad = args.skip(1).find(|a| a.to_str().is_none()).unwrap_or_default();
        return format!("argument {:?} is not valid UTF-8", bad.to_string_lossy());
    }
    let text = e.render().to_string();
    // The first paragraph is the message; a list of missing arguments continues it indented.
    let paragraph: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let joined = paragraph.join(" ");
    let message = joined.strip_prefix("error: ").unwrap_or(&joined);
    let command: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| u.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect())
        .unwrap_or_default();
    if command.is_empty() {
        message.to_string()
    } else {
        format!("{message} (see '{} --help')", command.join(" "))
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
