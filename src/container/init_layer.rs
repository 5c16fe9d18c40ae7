//! A container's init layer (`containers/<id>/init`), Docker's idea: the mountpoints the runtime
//! needs (`/proc`, `/sys`, `/dev`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, the working
//! directory, `-v` and `--tmpfs` targets) as a read-only layer between the image and the upper,
//! so they never show in `strata diff` or end up in a commit.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::layer::whiteout::implicit_dir_xattr;
use crate::store::Store;
use crate::union::Stack;

pub fn path(store: &Store, id: &str) -> PathBuf {
    store.container_dir(id).join("init")
}

/// The init layer `--rm` containers of one image share (`runtime/init/<key>`, the key naming the
/// image and the wanted paths), made by the first of them: a fresh container's init layer
/// depends on nothing else (its upper is empty, the image never changes), and one made once
/// saves every later run its lookups and the files it would create and delete (on an ext4
/// without a journal each new inode scans past those freed in the last minute). Never changed
/// once in place: made aside and renamed in; a run that finds it uses it as it is.
pub fn shared(
    store: &Store,
    image: &str,
    stack: &Stack,
    dirs: &[PathBuf],
    files: &[PathBuf],
) -> Result<PathBuf> {
    let mut key = format!("{image}\n");
    for (kind, list) in [("dir", dirs), ("file", files)] {
        for p in list {
            key.push_str(&format!("{kind} {}\n", p.display()));
        }
    }
    let parent = store.shared_init_dir();
    // Named after the image first, so that collecting an image's garbage finds its layers.
    let dest = parent.join(format!("{image}-{}", &crate::oci::Digest::of_bytes(key.as_bytes()).hex()[..32]));
    if dest.is_dir() {
        return Ok(dest);
    }
    super::runtime::private_dir(&parent)?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let staged = parent.join(format!(".new-{}-{nanos}", std::process::id()));
    let made = prepare(&staged, stack, dirs, files).and_then(|()| {
        match std::fs::rename(&staged, &dest) {
            Ok(()) => Ok(()),
            // Another run made it meanwhile: theirs is the same.
            Err(_) if dest.is_dir() => Ok(std::fs::remove_dir_all(&staged)?),
            Err(e) => Err(e).with_context(|| format!("cannot move {} into place", staged.display())),
        }
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    made.map(|()| dest)
}

/// A path inside the container: absolute, normalised, no `..`.
pub fn container_path(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        bail!("{p:?} is not an absolute path in the container");
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("{p:?}: `..` is not allowed in a container path")
            }
        }
    }
    Ok(out)
}

/// (Re)builds the init layer over `image ∪ upper` (`stack`): a stub for each wanted path that is
/// not there yet, when every parent already there is a real directory. Others (under a symlink,
/// say) are left for the runtime to create. Call with the container's lock held, unmounted.
pub fn prepare(dir: &Path, stack: &Stack, dirs: &[PathBuf], files: &[PathBuf]) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = nix::unistd::geteuid().is_root();
    let wanted = dirs.iter().map(|d| (d, true)).chain(files.iter().map(|f| (f, false)));
    'wanted: for (rel, is_dir) in wanted {
        if rel.as_os_str().is_empty() {
            continue;
        }
        // Where the runtime will land: through the image's own links (`/sbin` → `usr/sbin` in a
        // merged-/usr image), resolved inside the union.
        let resolved;
        let rel = match (rel.parent().filter(|p| !p.as_os_str().is_empty()), rel.file_name()) {
            (Some(parent), Some(name)) => match stack.resolve(parent, true) {
                Ok(Some(e)) if e.is_dir() => {
                    resolved = e.path.join(name);
                    &resolved
                }
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => rel,
            },
            _ => rel,
        };
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            prefix.push(c);
            let last = i + 1 == comps.len();
            let existing =
                stack.lookup(&prefix).with_context(|| format!("looking up /{}", prefix.display()))?;
            let target = dir.join(&prefix);
            match existing {
                Some(_) if last => continue 'wanted,
                Some(e) if !e.is_dir() => continue 'wanted,
                Some(_) => {
                    if !target.exists() {
                        std::fs::create_dir(&target)?;
                        // The image's directory keeps its own attributes in the union.
                        xattr::set(&target, implicit_dir_xattr(root), b"")
                            .with_context(|| format!("marking {}", target.display()))?;
                    }
                }
                None if last && !is_dir => {
                    std::fs::write(&target, b"")
                        .with_context(|| format!("cannot create {}", target.display()))?;
                }
                None => {
                    if !target.exists() {
                        std::fs::create_dir(&target)
                            .with_context(|| format!("cannot create {}", target.display()))?;
                    }
                }
            }
        }
    }
    Ok(())
}
