//! Hostile archives: nothing outside the destination may change, whatever the tar says.

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use strata::layer::unpack;
use tar_fixtures::*;

/// Unpacks `tar` (built by `make` given the absolute outside path) and checks the
/// sentinel area is untouched. Returns the unpack error, if any.
fn attempt(make: impl Fn(&str) -> Vec<u8>) -> (Arena, Option<String>) {
    let a = Arena::new();
    let before = a.outside_state();
    let outside = a.outside().to_string_lossy().into_owned();
    let tar = make(&outside);
    let r = unpack(&tar[..], &a.dest(), None);
    assert_eq!(before, a.outside_state(), "something outside dest changed");
    assert_eq!(std::fs::read(a.outside().join("file")).unwrap(), b"sentinel");
    (a, r.err().map(|e| format!("{e:#}")))
}

#[test]
fn dotdot_names_are_rejected() {
    for name in ["../escape", "a/../../escape", "./../outside/file", "x/y/../../../outside/file"] {
        let (_, err) = attempt(|_| RawTar::new().file(name, b"evil").end());
        let err = err.unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(err.contains("escapes the layer root"), "{name}: {err}");
    }
}

#[test]
fn absolute_names_land_inside() {
    let (a, err) = attempt(|o| RawTar::new().file(&format!("{o}/file"), b"evil").file("/etc/x", b"x").end());
    assert_eq!(err, None);
    let inside = a.dest().join(a.outside().strip_prefix("/").unwrap()).join("file");
    assert_eq!(std::fs::read(inside).unwrap(), b"evil");
    assert_eq!(std::fs::read(a.dest().join("etc/x")).unwrap(), b"x");
}

#[test]
fn writes_through_symlinked_directories_stay_inside() {
    // Relative and absolute links to the outside dir, then entries beneath them.
    let (a, err) = attempt(|o| {
        RawTar::new()
            // Targets exist inside dest (the absolute one under its own path).
            .dir("outside/dir/")
            .dir(&format!("{o}/dir/"))
            .symlink("rel", "../outside/dir")
            .file("rel/planted", b"evil")
            .symlink("abs", &format!("{o}/dir"))
            .file("abs/planted", b"evil")
            .dir("abs/sub/")
            .symlink("up", "../../../../../../../../..")
            .file(&format!("up{o}/file"), b"evil")
            .end()
    });
    assert_eq!(err, None);
    assert_eq!(std::fs::read(a.dest().join("outside/dir/planted")).unwrap(), b"evil");
    let abs_inside = a.dest().join(a.outside().strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(abs_inside.join("dir/planted")).unwrap(), b"evil");
    assert_eq!(std::fs::read(abs_inside.join("file")).unwrap(), b"evil");
}

#[test]
fn writes_through_dangling_symlinks_fail_without_escaping() {
    for make in [
        |_: &str| RawTar::new().symlink("rel", "../outside/dir").file("rel/planted", b"evil").end(),
        |o: &str| RawTar::new().symlink("abs", &format!("{o}/dir")).file("abs/planted", b"evil").end(),
    ] {
        let (_, err) = attempt(make);
        assert!(err.is_some());
    }
}

#[test]
fn files_are_never_written_through_a_final_symlink() {
    let (a, err) = attempt(|o| {
        RawTar::new()
            .symlink("evil", &format!("{o}/file"))
            .file("evil", b"overwrite?")
            .symlink("evil2", "../outside/file")
            .file("evil2", b"overwrite?")
            .end()
    });
    assert_eq!(err, None);
    assert_eq!(std::fs::read(a.dest().join("evil")).unwrap(), b"overwrite?");
    assert!(!std::fs::symlink_metadata(a.dest().join("evil")).unwrap().file_type().is_symlink());
}

#[test]
fn nodes_and_dirs_replace_symlinks_instead_of_following() {
    let (_, err) = attempt(|o| {
        let mut fifo = tar::Header::new_ustar();
        fifo.set_entry_type(tar::EntryType::Fifo);
        fifo.set_size(0);
        fifo.set_mode(0o777);
        fifo.as_old_mut().name[..4].copy_from_slice(b"node");
        RawTar::new()
            .symlink("node", &format!("{o}/file"))
            .raw(fifo, b"")
            .symlink("d", &format!("{o}/dir"))
            .dir("d/")
            .end()
    });
    assert_eq!(err, None);
}

#[test]
fn deferred_directory_mode_does_not_follow_a_later_symlink() {
    // The dir's mode (0777) is applied at the end; by then `d` is a symlink to outside.
    let (_, err) = attempt(|o| RawTar::new().dir("d/").symlink("d", &format!("{o}/dir")).end());
    assert_eq!(err, None);
}

#[test]
fn hard_links_to_the_outside_are_rejected() {
    type Make = Box<dyn Fn(&str) -> Vec<u8>>;
    let cases: Vec<(&str, Make)> = vec![
        ("dotdot", Box::new(|_: &str| RawTar::new().hardlink("h", "../outside/file").end())),
        ("absolute", Box::new(|o: &str| RawTar::new().hardlink("h", &format!("{o}/file")).end())),
        (
            "through a symlink",
            Box::new(|o: &str| RawTar::new().symlink("l", o).hardlink("h", "l/file").end()),
        ),
        (
            "through a relative symlink",
            Box::new(|_: &str| RawTar::new().symlink("l", "../outside").hardlink("h", "l/file").end()),
        ),
        (
            "not yet extracted",
            Box::new(|_: &str| RawTar::new().hardlink("h", "later").file("later", b"x").end()),
        ),
        ("to a directory", Box::new(|_: &str| RawTar::new().dir("d/").hardlink("h", "d").end())),
    ];
    for (what, make) in cases {
        let (_, err) = attempt(make);
        assert!(err.is_some(), "hard link {what} was accepted");
        assert!(err.unwrap().contains("tar entry h"), "{what}");
    }
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    let (a, err) = attempt(|o| RawTar::new().symlink("s", &format!("{o}/file")).hardlink("h", "s").end());
    assert_eq!(err, None);
    assert!(std::fs::symlink_metadata(a.dest().join("h")).unwrap().file_type().is_symlink());
}

#[test]
fn symlink_loops_are_errors_not_hangs() {
    let (_, err) = attempt(|_| RawTar::new().symlink("a", "b").symlink("b", "a").file("a/x", b"x").end());
    assert!(err.is_some());
}

#[test]
fn replacing_the_root_is_rejected() {
    let (_, err) = attempt(|_| RawTar::new().file(".", b"x").end());
    assert!(err.is_some());
    let (_, err) = attempt(|_| RawTar::new().symlink(".", "/").end());
    assert!(err.is_some());
}

/// Random damage to headers and data: errors are fine, panics and escapes are not.
#[test]
fn mutated_archives_never_panic_or_escape() {
    let base = RawTar::new()
        .dir("d/")
        .file("d/f", b"content")
        .symlink("d/l", "../../outside")
        .hardlink("d/h", "d/f")
        .pax(&[("path", b"d/long-name"), ("SCHILY.xattr.user.x", b"v")])
        .file("ignored", b"pax-named")
        .end();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let mut tar = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % tar.len() as u64) as usize;
            tar[at] = match next() % 4 {
                0 => 0,
                1 => b'/',
                2 => b'.',
                _ => next() as u8,
            };
        }
        let cut = if next() % 5 == 0 { (next() % tar.len() as u64) as usize } else { tar.len() };
        let a = Arena::new();
        let before = a.outside_state();
        let r = std::panic::catch_unwind(|| unpack(&tar[..cut], &a.dest(), None).map(|_| ()));
        assert!(r.is_ok(), "round {round}: unpack panicked");
        assert_eq!(before, a.outside_state(), "round {round}: something outside dest changed");
    }
}
