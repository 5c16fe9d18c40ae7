//! `ps` as Docker users expect: `--filter status=/name=/ancestor=`, `-s`, and the IMAGE column
//! showing the image's short id once its name has moved to another image.

mod common;

use common::strata::{Strata, store_with_image};

fn names(s: &Strata, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ps", "--format", "{{.Names}}"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = s.ok(&a).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn ps_filters_size_and_moved_image_names() {
    let s = Strata::new();
    let base = store_with_image(&s);
    s.ok(&["create", "--name", "first", "foo:1"]);
    std::fs::write(s.root().join("containers").join(ps_id(&s, "first")).join("upper/new.txt"), "x\n")
        .unwrap();
    s.ok(&["commit", "first", "child:1"]);
    s.ok(&["create", "--name", "second", "child:1"]);
    s.ok(&["create", "--name", "other", "foo:1"]);

    // Nothing is mounted: plain ps shows nothing; a status filter for stopped ones implies -a.
    assert!(names(&s, &[]).is_empty());
    assert_eq!(names(&s, &["-f", "status=created"]), ["first", "other", "second"]);
    assert!(names(&s, &["-a", "-f", "status=mounted"]).is_empty());
    assert_eq!(names(&s, &["-a", "-f", "name=ir"]), ["first"]);
    assert_eq!(names(&s, &["-a", "--filter", "name=o"]), ["other", "second"]);
    // ancestor: the image itself or an image built on it.
    assert_eq!(names(&s, &["-a", "-f", "ancestor=foo:1"]), ["first", "other", "second"]);
    assert_eq!(names(&s, &["-a", "-f", "ancestor=child:1"]), ["second"]);
    assert_eq!(names(&s, &["-a", "-f", "ancestor=child:1", "-f", "name=first"]), Vec::<String>::new());
    let out = s.run(&["ps", "-f", "status=sleeping"]);
    assert_eq!(out.status.code(), Some(125));

    // SIZE only with -s, with the image's size as "virtual".
    let plain = s.ok(&["ps", "-a"]);
    assert!(!plain.contains("SIZE"), "{plain}");
    let sized = s.ok(&["ps", "-a", "-s"]);
    assert!(sized.lines().next().unwrap().ends_with("SIZE"), "{sized}");
    assert!(sized.contains("2B (virtual 8B)"), "{sized}");

    // The name foo:1 moves to the child image: first and other show their image's short id.
    s.ok(&["tag", "child:1", "foo:1"]);
    let images = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Image}}"]);
    let mut lines: Vec<&str> = images.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [format!("first {}", &base[..12]), format!("other {}", &base[..12]), "second child:1".into()]
    );
}

fn ps_id(s: &Strata, name: &str) -> String {
    s.ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"])
        .lines()
        .find_map(|l| l.strip_suffix(&format!(" {name}")).map(str::to_string))
        .unwrap()
}
