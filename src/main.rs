//! strata: parse arguments, set up logging, run, map errors to exit codes — nothing else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = strata::cli::Cli::parse();
    strata::cli::init_logging(&cli.global);
    match strata::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "loading x.tar: layer 2: bad gzip".
            eprintln!("strata: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
