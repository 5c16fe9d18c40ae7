//! Every command's help is complete: `strata --help` and `strata <cmd> --help` for every
//! subcommand (found in the help itself, nested `image …` and `system …` included) exit 0 and
//! start with a non-empty about line.

mod common;

use common::strata::Strata;

/// The command names of a help text's `Commands:` section (`help` left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Entries are indented two spaces; wrapped about lines are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Runs `strata <path> --help`, checks it, and returns the help text.
fn help(s: &Strata, path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = s.run(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "strata {args:?} exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let about = text.lines().next().unwrap_or_default().trim();
    assert!(!about.is_empty() && !about.starts_with("Usage:"), "strata {args:?} has no about line:\n{text}");
    assert!(text.contains("Usage: strata"), "strata {args:?} has no usage line:\n{text}");
    text
}

#[test]
fn every_command_has_help_with_an_about_line() {
    let s = Strata::new();
    let top = help(&s, &[]);
    let mut todo: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    assert!(todo.len() >= 20, "too few commands found in strata --help:\n{top}");
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        let text = help(&s, &path);
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        seen.push(path.join(" "));
    }
    for nested in ["image ls", "image prune", "image save", "system df"] {
        assert!(seen.iter().any(|p| p == nested), "{nested} not reached; saw {seen:?}");
    }
}

#[test]
fn help_subcommand_and_version_exit_zero() {
    let s = Strata::new();
    let out = s.run(&["help", "image", "prune"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Remove dangling images"));
    let out = s.run(&["--version"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("strata "));
}
