//! `strata analyze` on a small image whose layers overwrite and delete known files — by whiteout
//! of a file, whiteout of a directory, and an opaque directory — checked against numbers worked
//! out by hand; and the `--ci` limits.

mod common;

use common::images::{Member, oci_layout, sha256_hex, tar_of};
use common::strata::Strata;

fn bytes(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

/// Layers (bottom first):
///   0: a(100) b(200) keep(5) d/x(10) d/y(20) o/p(30) o/q(40)
///   1: a(150) .wh.b  o/.wh..wh..opq o/r(7)  n(3)
///   2: .wh.d  a(50)
/// with an `empty_layer` history entry between layers 0 and 1.
fn image(s: &Strata) -> String {
    let (b100, b200, b5, b10, b20, b30, b40) =
        (bytes(100), bytes(200), bytes(5), bytes(10), bytes(20), bytes(30), bytes(40));
    let l0 = tar_of(&[
        Member::File("a", &b100),
        Member::File("b", &b200),
        Member::File("keep", &b5),
        Member::Dir("d/"),
        Member::File("d/x", &b10),
        Member::File("d/y", &b20),
        Member::Dir("o/"),
        Member::File("o/p", &b30),
        Member::File("o/q", &b40),
    ]);
    let (b150, b7, b3, b50) = (bytes(150), bytes(7), bytes(3), bytes(50));
    let l1 = tar_of(&[
        Member::File("a", &b150),
        Member::File(".wh.b", b""),
        Member::File("n", &b3),
        Member::Dir("o/"),
        Member::File("o/.wh..wh..opq", b""),
        Member::File("o/r", &b7),
    ]);
    let l2 = tar_of(&[Member::File(".wh.d", b""), Member::File("a", &b50)]);
    let layers = vec![l0, l1, l2];
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created_by": "ADD base"},
            {"created_by": "ENV X=1", "empty_layer": true},
            {"created_by": "RUN change"},
            {"created_by": "RUN delete"},
        ],
    }))
    .unwrap();
    let layout = s.path("layout");
    oci_layout(&layout, &layers, Some(config), "v1", |_| {});
    let out = s.ok(&["load", "--oci", &format!("{}:v1", layout.display())]);
    // A bare-tag layout is named DIR:TAG (umoci's convention).
    assert_eq!(out, "Loaded image: layout:v1\n");
    s.ok(&["images", "-q", "--no-trunc", "layout:v1"]).trim().to_string()
}

#[test]
fn analyze_counts_match_hand_computed_values() {
    let s = Strata::new();
    let id = image(&s);
    // The merged view the numbers describe.
    assert_eq!(s.ok(&["ls", &id, "/"]), "a\nkeep\nn\no\n");
    assert_eq!(s.ok(&["ls", &id, "/o"]), "r\n");

    let v: serde_json::Value = serde_json::from_str(&s.ok(&["analyze", "--json", &id])).unwrap();
    let layer = |i: usize| &v["layers"][i];
    let count =
        |i: usize, k: &str| (layer(i)[k]["files"].as_u64().unwrap(), layer(i)[k]["bytes"].as_u64().unwrap());
    assert_eq!(layer(0)["created_by"], "ADD base");
    assert_eq!(layer(1)["created_by"], "RUN change", "empty_layer entries are skipped");
    assert_eq!(layer(2)["created_by"], "RUN delete");
    assert_eq!(layer(0)["size"], 405);
    assert_eq!(count(0, "added"), (7, 405));
    assert_eq!(count(0, "modified"), (0, 0));
    assert_eq!(count(0, "removed"), (0, 0));
    assert_eq!(layer(1)["size"], 160);
    assert_eq!(count(1, "added"), (2, 10), "n and o/r");
    assert_eq!(count(1, "modified"), (1, 150), "a");
    assert_eq!(count(1, "removed"), (3, 270), "b by whiteout, o/p and o/q by the opaque dir");
    assert_eq!(layer(2)["size"], 50);
    assert_eq!(count(2, "added"), (0, 0));
    assert_eq!(count(2, "modified"), (1, 50));
    assert_eq!(count(2, "removed"), (2, 30), "d/x and d/y by the directory whiteout");

    assert_eq!(v["total_size"], 615);
    // a@0 (100) + a@1 (150) overwritten, b (200), o/p + o/q (70), d/x + d/y (30) deleted.
    assert_eq!(v["wasted_bytes"], 550);
    let pct = v["wasted_percent"].as_f64().unwrap();
    assert!((pct - 550.0 * 100.0 / 615.0).abs() < 1e-9, "{pct}");
    // Versions per path (Σ all / smallest): a 300/50, b 200/0, keep 5/5, d/x 10/0, d/y 20/0,
    // o/p 30/0, o/q 40/0, o/r 7/7, n 3/3 → 65 / 615.
    let eff = v["efficiency"].as_f64().unwrap();
    assert!((eff - 65.0 / 615.0).abs() < 1e-9, "{eff}");
    let paths: Vec<(String, u64, u64)> = v["wasted_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().to_string(),
                w["count"].as_u64().unwrap(),
                w["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let want =
        [("/a", 2, 250), ("/b", 1, 200), ("/o/q", 1, 40), ("/o/p", 1, 30), ("/d/y", 1, 20), ("/d/x", 1, 10)];
    let want: Vec<(String, u64, u64)> = want.iter().map(|(p, c, b)| (p.to_string(), *c, *b)).collect();
    assert_eq!(paths, want);

    // The table carries the same numbers.
    let text = s.ok(&["analyze", &id]);
    assert!(text.contains("Wasted: 550B (550 bytes, 89.43%)"), "{text}");
    assert!(text.contains("3 (270B)"), "{text}");
    assert!(text.contains("RUN change"), "{text}");
    let top: serde_json::Value =
        serde_json::from_str(&s.ok(&["analyze", "--format", "json", "--top", "1", &id])).unwrap();
    assert_eq!(top["wasted_paths"].as_array().unwrap().len(), 1);
}

#[test]
fn ci_limits_fail_and_name_the_crossed_threshold() {
    let s = Strata::new();
    let id = image(&s);
    // Well inside every limit.
    let out = s.run(&[
        "analyze",
        &id,
        "--ci",
        "--lowest-efficiency",
        "0.1",
        "--highest-wasted-bytes",
        "1kB",
        "--highest-wasted-percent",
        "90",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (args, needle) in [
        (vec!["--lowest-efficiency", "0.5"], "--lowest-efficiency 0.5"),
        (vec!["--highest-wasted-bytes", "500"], "--highest-wasted-bytes 500"),
        (vec!["--highest-wasted-percent", "50"], "--highest-wasted-percent 50"),
    ] {
        let mut all = vec!["analyze", &id, "--ci"];
        all.extend(args);
        let out = s.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} should fail");
        assert!(err.contains(needle), "{all:?}: {err}");
        assert_eq!(err.lines().count(), 1, "only the crossed limit is named: {err}");
    }
    // dive's defaults apply with --ci alone: efficiency 0.9 and 10% both crossed here.
    let out = s.run(&["analyze", "--json", &id, "--ci"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ci"]["pass"], false);
    assert_eq!(v["ci"]["crossed"].as_array().unwrap().len(), 2);
    // Limits need --ci, and sizes are checked.
    assert!(!s.run(&["analyze", &id, "--lowest-efficiency", "0.5"]).status.success());
    assert!(!s.run(&["analyze", &id, "--ci", "--highest-wasted-bytes", "12XB"]).status.success());
}
