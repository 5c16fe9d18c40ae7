//! `strata search`: catalog names containing the term, with their tags, as a table or JSON.

mod common;

use common::registry::{Auth, Registry, fails, ok};
use common::strata::{Strata, busybox_rootfs, tar_dir};

#[test]
fn search_filters_the_catalog_and_lists_tags() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let rootfs = s.path("rootfs");
    busybox_rootfs(&rootfs);
    tar_dir(&rootfs, &s.path("r.tar"), "gzip");
    ok(&s, &["import", s.path("r.tar").to_str().unwrap(), "img:1"]);
    for target in ["tools/alpha:1", "tools/alpha:2", "alphabet:latest", "beta:1"] {
        let full = format!("{}/{target}", reg.host());
        ok(&s, &["tag", "img:1", &full]);
        ok(&s, &["push", &full]);
    }
    let out = ok(&s, &["search", "alpha", "--registry", &reg.host()]);
    assert_eq!(out, "NAME          TAGS\nalphabet      latest\ntools/alpha   1, 2\n", "{out}");
    // `HOST/TERM` form, --limit, JSON.
    let json = ok(&s, &["search", &format!("{}/alpha", reg.host()), "--limit", "1", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows, vec![serde_json::json!({"Name": "alphabet", "Tags": ["latest"]})]);
    let names = ok(&s, &["search", "", "--registry", &reg.host(), "--format", "{{.Name}}"]);
    assert_eq!(names, "alphabet\nbeta\ntools/alpha\n");
    assert_eq!(ok(&s, &["search", "zzz", "--registry", &reg.host()]), "NAME   TAGS\n");
    let err = fails(&s, &["search", "x"]);
    assert!(err.contains("docker.io has no catalog"), "{err}");
}
