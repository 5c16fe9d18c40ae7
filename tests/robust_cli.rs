//! Odd command-line input: a one-line `strata: error:` naming the input, never a panic, and the
//! store unchanged.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Output;

use common::strata::{Strata, store_with_image};

/// Asserts a failure with exactly one `strata: error:` line containing every needle.
fn one_line_error(args: &dyn std::fmt::Debug, out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "strata {args:?} should fail; stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "strata {args:?} panicked: {err}");
    assert!(err.starts_with("strata: error: "), "strata {args:?}: {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "strata {args:?}: one line expected, got {err:?}");
    for n in needles {
        assert!(err.contains(n), "strata {args:?}: {n:?} expected in {err:?}");
    }
    err
}

fn fails_naming(s: &Strata, args: &[&str], needles: &[&str]) -> String {
    one_line_error(&args, &s.run(args), needles)
}

#[test]
fn rmi_of_odd_names_changes_nothing() {
    let s = Strata::new();
    store_with_image(&s);
    let before = s.snapshot();
    for (input, needle) in [
        ("sha256:", "invalid image id \"sha256:\""),
        ("sha256:zz", "invalid image id \"sha256:zz\""),
        ("sha256:abc", "invalid image id \"sha256:abc\""),
        ("", "\"\": empty name"),
        (":", "\":\""),
        ("@", "\"@\""),
        ("foo@sha256:", "\"foo@sha256:\""),
        ("FOO", "\"FOO\""),
        ("foo:1:2", "\"foo:1:2\""),
        ("abcd", "no such image: abcd"),
    ] {
        fails_naming(&s, &["rmi", input], &[needle]);
        fails_naming(&s, &["inspect", input], &[needle]);
        assert_eq!(s.snapshot(), before, "rmi {input:?} changed the store");
    }
    // A bad name among good ones: the bad one is reported, the good one still removed.
    let out = s.run(&["rmi", "sha256:", "foo:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("\"sha256:\"") && !err.contains("panicked"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: foo:1"));
}

#[test]
fn container_prefixes_resolve_or_are_named() {
    let s = Strata::new();
    store_with_image(&s);
    let id = s.ok(&["create", "--name", "box", "foo:1"]).trim().to_string();
    let before = s.snapshot();
    let other = if id.starts_with("fff") { "eee" } else { "fff" };
    fails_naming(&s, &["rm", other], &[&format!("no such container: {other}")]);
    fails_naming(&s, &["rm", ""], &["no such container: "]);
    assert_eq!(s.snapshot(), before);
    // Any unique prefix names the container, 3 characters included (as with Docker).
    s.ok(&["rm", &id[..3]]);
    assert!(!s.root().join("containers").join(&id).exists());
}

#[test]
fn format_edge_cases_are_errors_naming_the_template() {
    let s = Strata::new();
    store_with_image(&s);
    for cmd in [&["images"][..], &["image", "ls"][..], &["ps", "-a"][..]] {
        for f in
            ["{{", "{{ .ID ", "table", "table   ", "", "{{.}}", "{{json}}", "{{.Nope}}", "table {{.ID}}\\t{{"]
        {
            let mut args = cmd.to_vec();
            args.extend(["--format", f]);
            fails_naming(&s, &args, &[&format!("invalid --format {f:?}")]);
        }
    }
    // A lone `}}` is text, as in Go templates.
    let out = s.ok(&["images", "--format", "}}{{.Tag}}}}"]);
    assert_eq!(out, "}}1}}\n");
    let out = s.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]);
    assert_eq!(out, "REPOSITORY   TAG\nfoo          1\n");
}

#[test]
fn extremely_long_names_are_refused_by_name() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let before = s.snapshot();
    let long = "a".repeat(300);
    fails_naming(&s, &["tag", "foo:1", &long], &["longer than 255"]);
    let long_tag = format!("foo:{}", "t".repeat(129));
    fails_naming(&s, &["tag", "foo:1", &long_tag], &[&long_tag]);
    let huge = "x".repeat(100_000);
    fails_naming(&s, &["inspect", &huge], &["longer than 255"]);
    fails_naming(&s, &["rmi", &huge], &["longer than 255"]);
    fails_naming(&s, &["history", &format!("{id}{id}")], &["no such image"]);
    let bad_name = format!("{long}/x");
    fails_naming(
        &s,
        &["create", "--name", &bad_name, "foo:1"],
        &[&format!("invalid container name {bad_name:?}")],
    );
    assert_eq!(s.snapshot(), before);
}

#[test]
fn non_utf8_arguments_are_named() {
    let s = Strata::new();
    store_with_image(&s);
    let before = s.snapshot();
    let raw = OsStr::from_bytes(b"foo\xff\xfe:1");
    for cmd in [&["inspect"][..], &["rmi"][..], &["tag", "foo:1"][..], &["images"][..], &["history"][..]] {
        let out = s.command(cmd).arg(raw).output().unwrap();
        one_line_error(&(cmd, raw), &out, &["foo\u{fffd}\u{fffd}:1", "not valid UTF-8"]);
    }
    assert_eq!(s.snapshot(), before);
    // A path may be any bytes: import of a missing non-UTF-8 file names the file.
    let out = s.command(&["import"]).arg(OsStr::from_bytes(b"/nonexistent/\xff.tar")).output().unwrap();
    one_line_error(&"import", &out, &["/nonexistent/\u{fffd}.tar"]);
    assert_eq!(s.snapshot(), before);
}

#[test]
fn usage_errors_are_one_line() {
    let s = Strata::new();
    fails_naming(&s, &["images", "--bogus"], &["'--bogus'", "strata images --help"]);
    fails_naming(&s, &["import"], &["<FILE>", "strata import --help"]);
    fails_naming(&s, &["frobnicate"], &["'frobnicate'"]);
    fails_naming(&s, &["system", "df", "--format", "table"], &["\"table\""]);
    fails_naming(&s, &["images", "-f", "dangling=maybe"], &["dangling=maybe"]);
    fails_naming(&s, &["images", "-f", "nokey"], &["\"nokey\""]);
}

#[test]
fn a_reader_that_goes_away_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let s = Strata::new();
    store_with_image(&s);
    // Far more than a pipe buffer holds, so strata is still writing when the reader leaves.
    let many = vec!["foo:1"; 500];
    let mut child =
        s.command(&["inspect"]).args(&many).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
    assert!(!out.status.success());
}

#[test]
fn source_date_epoch_out_of_range_is_named() {
    let s = Strata::new();
    store_with_image(&s);
    let before = s.snapshot();
    let tar = s.path("rootfs.tar");
    for v in ["-1", "9223372036854775807", "99999999999999", "soon"] {
        let out = s
            .command(&["import", tar.to_str().unwrap(), "bar:1"])
            .env("SOURCE_DATE_EPOCH", v)
            .output()
            .unwrap();
        one_line_error(&v, &out, &[&format!("SOURCE_DATE_EPOCH={v:?}")]);
        assert_eq!(s.snapshot(), before);
    }
}
