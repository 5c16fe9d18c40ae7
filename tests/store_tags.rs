//! Tag updates are linear (issue 11 item 5): an archive with 10,000 RepoTags loads in seconds,
//! and removing or retagging one of them stays cheap.

mod common;

use std::time::Instant;

use common::images::{Member, config_for, docker_archive, sha256_hex, tar_of, write_tar};
use common::strata::Strata;

#[test]
fn ten_thousand_repo_tags_load_in_seconds() {
    let s = Strata::new();
    let layer = tar_of(&[Member::File("a", b"1")]);
    let names: Vec<String> =
        (0..10_000).map(|i| format!("registry.example:5000/many/repo{}:v{i}", i % 97)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let archive = s.path("many.tar");
    docker_archive(&archive, std::slice::from_ref(&layer), None, &refs);
    let started = Instant::now();
    let out = s.ok(&["load", "-i", archive.to_str().unwrap()]);
    let load = started.elapsed();
    assert_eq!(out.lines().count(), 10_000, "one Loaded line per tag");
    let listed = s.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(listed.lines().count(), 10_000, "every tag listed");
    let started = Instant::now();
    s.ok(&["rmi", &names[5]]);
    s.ok(&["tag", &names[6], "other:1"]);
    let small = started.elapsed();
    assert!(load.as_secs_f64() < 5.0, "loading 10,000 tags took {load:?}");
    assert!(small.as_secs_f64() < 2.0, "rmi and tag among 10,000 tags took {small:?}");
    let (tags, _) = (s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]), ());
    assert_eq!(tags.lines().count(), 10_000);
    assert!(tags.contains("other:1") && !tags.contains(&format!("{}\n", names[5])));
}

/// `docker save` of one image under many names in separate manifest entries (as some tools
/// write them): every entry records the same image, and the tags are written once.
#[test]
fn ten_thousand_entries_of_one_image_load_in_seconds() {
    let s = Strata::new();
    let layer = tar_of(&[Member::File("a", b"1")]);
    let config = config_for(std::slice::from_ref(&layer));
    let config_name = format!("{}.json", sha256_hex(&config));
    let entries: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"Config": config_name, "RepoTags": [format!("many/r:v{i}")], "Layers": ["l/layer.tar"]}))
        .collect();
    let files = vec![
        ("l/layer.tar".to_string(), layer),
        (config_name.clone(), config),
        ("manifest.json".to_string(), serde_json::to_vec(&entries).unwrap()),
    ];
    let archive = s.path("entries.tar");
    write_tar(&archive, &files);
    let started = Instant::now();
    let out = s.ok(&["load", "-i", archive.to_str().unwrap()]);
    let load = started.elapsed();
    assert_eq!(out.lines().count(), 10_000, "one Loaded line per tag");
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 10_000);
    assert!(load.as_secs_f64() < 8.0, "loading 10,000 entries took {load:?}");
}
