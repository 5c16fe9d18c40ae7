//! The library API a Dockerfile RUN step uses: one process to completion in a new container.

mod common;

use common::run::{busybox_image, runtime_ready};
use common::strata::Strata;
use strata::container::{Output, ProcessSpec, StartError, run_to_completion};
use strata::store::containers::MountSpec;
use strata::store::{LockMode, Store};

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[test]
fn runs_to_completion_and_leaves_the_upper() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    let id = busybox_image(&s, "bb:1", &["ENV FOO=bar", "WORKDIR /work/dir", "USER app"]);
    let cache = s.path("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("cached"), "from the cache\n").unwrap();
    let store = Store::open(&s.root(), LockMode::Exclusive).unwrap();
    let image = store.resolve_image("bb:1").unwrap();
    assert_eq!(image.id.to_string(), id);
    let config = store.image_config(&image).unwrap();
    let mut spec = ProcessSpec::from_image(
        &config,
        sh(
            "echo out; echo err >&2; id -u; id -G; pwd; echo $FOO $HOME; cat /cache/cached; echo x > /home/app/new; exit 3",
        ),
    );
    spec.mounts.push(MountSpec {
        kind: "bind".into(),
        source: cache.clone(),
        destination: "/cache".into(),
        rw: false,
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let done =
        run_to_completion(store, &image.id, &spec, Output::Capture { stdout: &mut out, stderr: &mut err })
            .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(done.exit_code, 3, "stdout {out} stderr {}", String::from_utf8_lossy(&err));
    assert_eq!(out, "out\n1000\n1000 2000\n/work/dir\nbar /home/app\nfrom the cache\n");
    assert_eq!(String::from_utf8(err).unwrap(), "err\n");
    // the write landed in the container's upper; the init layer's stubs did not
    let upper = done.store.container_upper(&done.container.id);
    assert_eq!(std::fs::read_to_string(upper.join("home/app/new")).unwrap(), "x\n");
    for stub in ["proc", "sys", "dev", "etc/hosts", "work", "cache"] {
        assert!(!upper.join(stub).exists(), "{stub} is in the upper");
    }
    let container = done.container.id.clone();
    drop(done);
    let diff = s.ok(&["diff", &container]);
    assert_eq!(diff, "C /home\nC /home/app\nA /home/app/new\n");
    // nothing is mounted any more, and the container can be removed
    s.ok(&["rm", &container]);
    // The mount daemon was this process's child (one fork): reaped, no zombie left behind for
    // a long-lived caller such as a build with many RUN steps.
    let me = std::process::id().to_string();
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|st| {
            let rest: Vec<&str> = st.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            rest.first() == Some(&"Z") && rest.get(1) == Some(&me.as_str())
        })
        .collect();
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
}

#[test]
fn a_missing_command_is_127_and_leaves_nothing() {
    if !runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    busybox_image(&s, "bb:1", &[]);
    let store = Store::open(&s.root(), LockMode::Exclusive).unwrap();
    let image = store.resolve_image("bb:1").unwrap();
    let spec = ProcessSpec { args: vec!["/bin/nosuch".into()], ..ProcessSpec::default() };
    let (mut out, mut errout) = (Vec::new(), Vec::new());
    let output = Output::Capture { stdout: &mut out, stderr: &mut errout };
    let err = run_to_completion(store, &image.id, &spec, output).err().expect("fails");
    assert!(
        out.is_empty() && errout.is_empty(),
        "the runtime's message is the error, not output: {errout:?}"
    );
    let start = err.downcast_ref::<StartError>().unwrap_or_else(|| panic!("a StartError: {err:#}"));
    assert_eq!(start.code, 127, "{start}");
    assert!(start.message.contains("nosuch"), "{start}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
}
