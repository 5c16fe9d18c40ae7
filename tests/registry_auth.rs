//! Registries that want credentials: htpasswd (bcrypt) Basic auth and the Bearer token flow
//! against a token issuer; `login` checks before saving (0600), `logout` forgets, Docker's
//! `config.json` is read too.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::images::{Member, docker_archive, tar_of};
use common::registry::{Auth, Layout, Registry, fails, ok, strata_cmd};
use common::strata::Strata;
use common::token_issuer::TokenIssuer;

/// A one-layer image pushed by skopeo with credentials.
fn publish(reg: &Registry, s: &Strata, repo: &str, creds: &str) -> String {
    let l = Layout::init(&s.path(&format!("layout-{}", repo.replace('/', "-"))));
    l.new_image("t");
    l.add_layer("t", |root| std::fs::write(root.join("secret.txt"), "sesame\n").unwrap());
    let name = format!("{}/{repo}:t", reg.host());
    let st = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds])
        .arg(format!("oci:{}:t", l.path.display()))
        .arg(format!("docker://{name}"))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo push with credentials failed");
    name
}

fn login_stdin(s: &Strata, host: &str, user: &str, password: &str) -> std::process::Output {
    let mut child = strata_cmd(s, &["login", host, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

fn auth_file(s: &Strata) -> std::path::PathBuf {
    s.path("home/.config/strata/auth.json")
}

#[test]
fn basic_auth_needs_login_then_works_and_logout_forgets() {
    let reg = Registry::start(Auth::Basic { user: "alice", password: "wonderland" });
    let s = Strata::new();
    let name = publish(&reg, &s, "private", "alice:wonderland");

    let err = fails(&s, &["pull", &name]);
    assert!(err.contains(&format!("pull {name}: ")) && err.contains("(401)"), "{err}");
    assert!(err.contains(&format!("strata login {}", reg.host())), "{err}");

    // Wrong password: refused, nothing saved.
    let bad = login_stdin(&s, &reg.host(), "alice", "looking-glass");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("login {}: ", reg.host())) && err.contains("incorrect username or password"),
        "{err}"
    );
    assert!(!auth_file(&s).exists());

    let good = login_stdin(&s, &reg.host(), "alice", "wonderland");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert_eq!(String::from_utf8_lossy(&good.stdout), "Login Succeeded\n");
    let meta = std::fs::metadata(auth_file(&s)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(auth_file(&s)).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string(), "{saved}");

    let out = ok(&s, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    // Push with the saved credentials too.
    let copy = format!("{}/private-copy:t", reg.host());
    ok(&s, &["tag", &name, &copy]);
    ok(&s, &["push", &copy]);

    assert_eq!(ok(&s, &["logout", &reg.host()]), format!("Removing login credentials for {}\n", reg.host()));
    let err = fails(&s, &["pull", &name]);
    assert!(err.contains("(401)"), "{err}");
    assert_eq!(ok(&s, &["logout", &reg.host()]), format!("Not logged in to {}\n", reg.host()));
}

#[test]
fn docker_config_credentials_are_used() {
    let reg = Registry::start(Auth::Basic { user: "bob", password: "builder" });
    let s = Strata::new();
    let name = publish(&reg, &s, "fromdocker", "bob:builder");
    let docker = s.path("home/.docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = strata::registry::base64::encode(b"bob:builder");
    let config = serde_json::json!({"auths": {format!("http://{}", reg.host()): {"auth": auth}}});
    std::fs::write(docker.join("config.json"), config.to_string()).unwrap();
    let out = ok(&s, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert!(!auth_file(&s).exists(), "reading Docker's file must not write ours");
}

#[test]
fn bearer_tokens_from_the_issuer() {
    let issuer = TokenIssuer::start("carol", "tokens");
    let reg = Registry::start(Auth::Token(&issuer));
    let s = Strata::new();
    let name = publish(&reg, &s, "team/app", "carol:tokens");

    // Anonymous: the issuer hands out a token with no access; the registry still says 401.
    let err = fails(&s, &["pull", &name]);
    assert!(err.contains("(401)") && err.contains("strata login"), "{err}");

    let bad = login_stdin(&s, &reg.host(), "carol", "wrong");
    assert!(!bad.status.success(), "a wrong password must not log in");
    assert!(!auth_file(&s).exists());
    let good = login_stdin(&s, &reg.host(), "carol", "tokens");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));

    let seen = issuer.requests().len();
    let out = ok(&s, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let asked: Vec<String> = issuer.requests()[seen..].to_vec();
    // One token for the repository, reused for the manifest and every blob of the pull.
    assert_eq!(asked, vec!["carol repository:team/app:pull".to_string()], "{asked:?}");

    // Push to a sibling repository: a token for push + pull of the source, and the blob is mounted.
    let copy = format!("{}/team/copy:t", reg.host());
    ok(&s, &["tag", &name, &copy]);
    let out = ok(&s, &["push", &copy]);
    assert!(out.contains(": Mounted from team/app"), "{out}");
    assert!(
        issuer
            .requests()
            .iter()
            .any(|r| r.contains("repository:team/copy:pull,push") && r.contains("repository:team/app:pull")),
        "{:?}",
        issuer.requests()
    );

    // The catalog needs its own scope.
    let found = ok(&s, &["search", "team", "--registry", &reg.host()]);
    assert!(found.contains("team/app") && found.contains("team/copy"), "{found}");
}

/// An 8-layer image in the store, named `name`.
fn eight_layer_image(s: &Strata, name: &str) {
    let layers: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let body = format!("layer {i}\n").repeat(64 * (i + 1));
            tar_of(&[Member::Dir("etc/"), Member::File(&format!("etc/layer{i}"), body.as_bytes())])
        })
        .collect();
    let archive = s.path("eight.tar");
    docker_archive(&archive, &layers, None, &[name]);
    ok(s, &["load", "-i", archive.to_str().unwrap()]);
}

/// Pushes `image` to fresh tags `rounds` times in a row, each a new process whose parallel layer
/// checks all meet the first 401 challenge at once: every one must retry with credentials.
fn push_rounds(s: &Strata, image: &str, rounds: usize) {
    for round in 0..rounds {
        let tagged = format!("{image}-{round}");
        ok(s, &["tag", image, &tagged]);
        let out = strata_cmd(s, &["push", &tagged]).output().unwrap();
        assert!(
            out.status.success(),
            "push {round} of {rounds} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn parallel_layer_checks_all_retry_with_basic_credentials() {
    let reg = Registry::start(Auth::Basic { user: "dora", password: "explorer" });
    let s = Strata::new();
    let image = format!("{}/many/layers:t", reg.host());
    eight_layer_image(&s, &image);
    assert!(login_stdin(&s, &reg.host(), "dora", "explorer").status.success());
    push_rounds(&s, &image, 20);
    let raw = common::registry::skopeo_raw(&format!("{image}-19"), Some("dora:explorer"));
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 8, "{manifest}");
}

#[test]
fn parallel_layer_checks_all_retry_with_bearer_tokens() {
    let issuer = TokenIssuer::start("erin", "bearer");
    let reg = Registry::start(Auth::Token(&issuer));
    let s = Strata::new();
    let image = format!("{}/many/layers:t", reg.host());
    eight_layer_image(&s, &image);
    assert!(login_stdin(&s, &reg.host(), "erin", "bearer").status.success());
    let before = issuer.requests().len();
    push_rounds(&s, &image, 20);
    // The checks that met the challenge together share one token: one from the issuer per push.
    let asked = &issuer.requests()[before..];
    assert_eq!(asked.len(), 20, "{asked:?}");
    let raw = common::registry::skopeo_raw(&format!("{image}-19"), Some("erin:bearer"));
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 8, "{manifest}");
}
