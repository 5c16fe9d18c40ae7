//! `strata diff IMAGE IMAGE` on images with known differences: shared base layers, a modified file,
//! whiteouts of a file and a directory, an opaque directory, type changes, equal content from
//! different layers, and the container form still working.

mod common;

use common::images::{Member, oci_layout, tar_of};
use common::strata::Strata;

fn load(s: &Strata, name: &str, layers: &[Vec<u8>]) -> String {
    let layout = s.path(name);
    oci_layout(&layout, layers, None, "t", |_| {});
    let out = s.ok(&["load", "--oci", &format!("{}:t", layout.display())]);
    // A bare-tag layout is named DIR:TAG (umoci's convention).
    assert_eq!(out, format!("Loaded image: {name}:t\n"));
    s.ok(&["images", "-q", "--no-trunc", &format!("{name}:t")]).trim().to_string()
}

fn base() -> Vec<u8> {
    tar_of(&[
        Member::File("a", b"aaaa"),
        Member::File("b", b"bb"),
        Member::File("keep", b"keep!"),
        Member::Dir("d/"),
        Member::File("d/x", b"x"),
        Member::File("d/y", b"y"),
        Member::Dir("o/"),
        Member::File("o/p", b"p"),
        Member::File("o/q", b"q"),
    ])
}

fn change() -> Vec<u8> {
    tar_of(&[
        Member::File("a", b"AAAAA"),
        Member::File(".wh.b", b""),
        Member::File("n", b"new"),
        Member::Dir("o/"),
        Member::File("o/.wh..wh..opq", b""),
        Member::File("o/r", b"r"),
    ])
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn image_diff_reports_known_changes() {
    let s = Strata::new();
    let a = load(&s, "a", &[base()]);
    let b = load(&s, "b", &[base(), change()]);
    let c = load(&s, "c", &[base(), change(), tar_of(&[Member::File(".wh.d", b"")])]);
    assert_eq!(
        lines(&s.ok(&["diff", &a, &b])),
        ["C /a", "D /b", "A /n", "C /o", "D /o/p", "D /o/q", "A /o/r"],
        "a directory with changes below is C, like container diff"
    );
    assert_eq!(
        lines(&s.ok(&["diff", &b, &a])),
        ["C /a", "A /b", "D /n", "C /o", "A /o/p", "A /o/q", "D /o/r"]
    );
    assert_eq!(
        lines(&s.ok(&["diff", &a, &c])),
        ["C /a", "D /b", "D /d", "A /n", "C /o", "D /o/p", "D /o/q", "A /o/r"],
        "a deleted directory is one D"
    );
    assert_eq!(s.ok(&["diff", &b, &b]), "");
    let json = s.ok(&["diff", "--format", "json", &a, &b]);
    assert_eq!(json.lines().next(), Some(r#"{"Kind":"C","Path":"/a"}"#));
    assert!(s.fails(&["diff", &a, "no-such-image"]).contains("no-such-image"));
}

#[test]
fn content_is_compared_only_when_it_can_differ() {
    let s = Strata::new();
    let a = load(&s, "a", &[base()]);
    // The same bytes and metadata in a new layer: not a change (content hashes equal).
    let same = load(&s, "same", &[base(), tar_of(&[Member::File("keep", b"keep!")])]);
    assert_eq!(s.ok(&["diff", &a, &same]), "");
    // Same size, other bytes: a change only the content hash can see.
    let other = load(&s, "other", &[base(), tar_of(&[Member::File("keep", b"KEEP!")])]);
    assert_eq!(lines(&s.ok(&["diff", &a, &other])), ["C /keep"]);
    // A file becomes a directory (its children are added) and a directory a file (its children
    // are deleted).
    let types = load(
        &s,
        "types",
        &[
            base(),
            tar_of(&[Member::Dir("keep/"), Member::File("keep/z", b"z"), Member::File("d", b"now a file")]),
        ],
    );
    assert_eq!(lines(&s.ok(&["diff", &a, &types])), ["C /d", "D /d/x", "D /d/y", "C /keep", "A /keep/z"]);
}

#[test]
fn container_diff_still_takes_one_argument() {
    let s = Strata::new();
    let a = load(&s, "a", &[base()]);
    let id = s.ok(&["create", &a]).trim().to_string();
    let upper = s.root().join("containers").join(&id).join("upper");
    std::fs::write(upper.join("added"), "x").unwrap();
    std::fs::write(upper.join(".wh.b"), "").unwrap();
    assert_eq!(lines(&s.ok(&["diff", &id])), ["A /added", "D /b"]);
}

#[test]
fn a_committed_image_differs_from_its_base_as_the_container_did() {
    let s = Strata::new();
    let a = load(&s, "a", &[base()]);
    let id = s.ok(&["create", &a]).trim().to_string();
    let upper = s.root().join("containers").join(&id).join("upper");
    std::fs::write(upper.join("a"), "rewritten").unwrap();
    std::fs::write(upper.join("added"), "x").unwrap();
    std::fs::write(upper.join(".wh.b"), "").unwrap();
    std::fs::create_dir(upper.join("o")).unwrap();
    std::fs::write(upper.join("o/s"), "s").unwrap();
    let container = s.ok(&["diff", &id]);
    assert_eq!(lines(&container), ["C /a", "A /added", "D /b", "C /o", "A /o/s"]);
    let committed = s.ok(&["commit", &id, "example.com/committed:1"]).trim().to_string();
    assert_eq!(s.ok(&["diff", &a, &committed]), container);
    assert_eq!(s.ok(&["diff", &a, "example.com/committed:1"]), container);
}
