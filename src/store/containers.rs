//! `containers/<id>/{upper,work,meta.json}`: an image plus one writable layer, and `mount.json`
//! while a daemon serves it (runtime state, written without fsync).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::layers::now_unix;
use super::{Store, records, staging};
use crate::oci::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits, random.
    pub id: String,
    pub name: String,
    pub image: Digest,
    /// What the user called the image when creating the container.
    pub image_name: String,
    pub created: i64,
    /// Set while a mount daemon serves this container (kept in `mount.json`).
    #[serde(skip)]
    pub mount: Option<MountRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub pid: i32,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

impl Store {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn container_upper(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("upper")
    }

    pub fn container_work(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("work")
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.root.join("containers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let e = e?;
            let meta = e.path().join("meta.json");
            if let Some(mut rec) = records::read_optional::<ContainerRecord>(&meta)? {
                // The id names the directory and is cut to a 12-digit short id: it must be the
                // 64 hex digits the directory is called.
                if e.file_name() != rec.id.as_str() || Digest::from_hex(&rec.id).is_err() {
                    bail!("corrupt store file {}: it records container id {:?}", meta.display(), rec.id);
                }
                rec.mount = records::read_runtime(&e.path().join("mount.json"));
                out.push(rec);
            }
        }
        out.sort_by(|a: &ContainerRecord, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn resolve_container(&self, input: &str) -> Result<ContainerRecord> {
        let all = self.containers()?;
        if let Some(c) = all.iter().find(|c| c.name == input || c.id == input) {
            return Ok(c.clone());
        }
        let matches: Vec<_> =
            all.into_iter().filter(|c| !input.is_empty() && c.id.starts_with(input)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => bail!("no such container: {input}"),
            n => bail!("container id prefix {input:?} is ambiguous: it matches {n} containers"),
        }
    }

    /// Creates a container of `image` with empty upper and work directories.
    pub fn create_container(
        &self,
        image: &Digest,
        image_name: &str,
        name: Option<&str>,
    ) -> Result<ContainerRecord> {
        self.ensure_writable()?;
        self.check_layers(&self.image(image)?)?;
        let existing = self.containers()?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                let valid = !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                    && n.as_bytes()[0].is_ascii_alphanumeric();
                if !valid {
                    bail!("invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
                }
                if existing.iter().any(|c| c.name == n) {
                    bail!("the container name {n:?} is already in use");
                }
                n.to_string()
            }
            None => format!("strata_{}", &id[..8]),
        };
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image: image.clone(),
            image_name: image_name.to_string(),
            created: now_unix(),
            mount: None,
        };
        let stage = staging::tmp_path(&self.tmp_dir(), "container");
        for d in ["upper", "work"] {
            std::fs::create_dir_all(stage.join(d))
                .with_context(|| format!("cannot create {}", stage.display()))?;
        }
        std::fs::write(stage.join("meta.json"), serde_json::to_vec_pretty(&rec)?)?;
        staging::rename_in(&stage, &self.container_dir(&id))?;
        Ok(rec)
    }

    /// Records (or, with `None`, forgets) the daemon serving container `id`.
    pub fn set_container_mount(&self, id: &str, mount: Option<&MountRecord>) -> Result<()> {
        self.ensure_writable()?;
        let path = self.container_dir(id).join("mount.json");
        match mount {
            Some(m) => records::write_runtime(&self.tmp_dir(), &path, m),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
                _ => Ok(()),
            },
        }
    }

    /// Deletes a container and its writable layer (renamed into tmp first: never half-deleted).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.ensure_writable()?;
        let doomed = staging::tmp_path(&self.tmp_dir(), "removed-container");
        std::fs::rename(self.container_dir(id), &doomed)
            .with_context(|| format!("cannot remove container {id}"))?;
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))
    }
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(buf))
}
