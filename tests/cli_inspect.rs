//! `inspect` of images and containers, `inspect -f` Go templates, `history --format`.

mod common;

use common::strata::{Strata, store_with_image};

#[test]
fn inspect_format_renders_go_templates_per_image() {
    let s = Strata::new();
    let id = store_with_image(&s);
    s.ok(&["tag", "foo:1", "bar:2"]);
    assert_eq!(s.ok(&["inspect", "-f", "{{.Id}}", "foo:1"]), format!("sha256:{id}\n"));
    let doc: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "foo:1"])).unwrap();
    let layers = s.ok(&["inspect", "--format", "{{json .RootFS.Layers}}", "foo:1"]);
    assert_eq!(layers.trim(), doc[0]["RootFS"]["Layers"].to_string());
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}", "foo:1"]).trim(),
        format!("{}/{} 1", doc[0]["Os"].as_str().unwrap(), doc[0]["Architecture"].as_str().unwrap())
    );
    assert_eq!(s.ok(&["inspect", "-f", "{{range .RepoTags}}{{.}} {{end}}", "foo:1"]), "bar:2 foo:1 \n");
    assert_eq!(s.ok(&["inspect", "-f", "{{index .RepoTags 1}}", "foo:1", "bar:2"]), "foo:1\nfoo:1\n");
    // Missing keys print as Go prints them.
    assert_eq!(s.ok(&["inspect", "-f", "{{.Config.Nope}}", "foo:1"]), "<no value>\n");
    let err = s.fails(&["inspect", "-f", "{{.Id", "foo:1"]);
    assert!(err.contains("unclosed"), "{err}");
}

#[test]
fn inspect_shows_containers_too() {
    let s = Strata::new();
    let image = store_with_image(&s);
    let id = s.ok(&["create", "--name", "web", "foo:1"]).trim().to_string();
    let doc: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "web"])).unwrap();
    let c = &doc[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["Image"], format!("sha256:{image}").as_str());
    assert_eq!(c["Config"]["Image"], "foo:1");
    assert!(c["Created"].as_str().unwrap().ends_with('Z'), "{c}");
    let upper = s.root().join("containers").join(&id).join("upper");
    assert_eq!(c["GraphDriver"]["Data"]["UpperDir"], upper.to_str().unwrap());
    assert_eq!(s.ok(&["inspect", "-f", "{{.Name}} {{.Config.Image}}", &id[..12]]), "/web foo:1\n");

    // An image and a container in one call; --type narrows the search.
    let both = s.ok(&["inspect", "-f", "{{.Id}}", "web", "foo:1"]);
    assert_eq!(both, format!("{id}\nsha256:{image}\n"));
    let err = s.fails(&["inspect", "--type", "image", "web"]);
    assert!(err.contains("web"), "{err}");
    let err = s.fails(&["inspect", "--type", "container", "foo:1"]);
    assert!(err.contains("no such container: foo:1"), "{err}");

    // What was found is printed even when a name is not; the status says something failed.
    let out = s.run(&["inspect", "-f", "{{.Name}}", "nothing-here", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/web\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing-here"));
}

#[test]
fn history_format() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let out = s.ok(&["history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "foo:1"]);
    let tar = s.path("rootfs.tar");
    assert_eq!(out, format!("{}|strata import {}|6B\n", &id[..12], tar.display()));
    let table = s.ok(&["history", "--format", "table {{.ID}}\\t{{.CreatedAt}}", "foo:1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("IMAGE          CREATED AT"), "{table}");
    assert!(lines[1].starts_with(&id[..12]) && lines[1].ends_with('Z'), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(s.ok(&["history", "--format", "json", "foo:1"]).trim()).unwrap();
    assert_eq!(json["ID"], &id[..12]);
    assert_eq!(json["Comment"], format!("Imported from {}", tar.display()).as_str());
}
