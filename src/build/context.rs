//! The build context: a directory, or a tar (plain, gzip or zstd) read from stdin and unpacked
//! into a private temporary directory; and the Dockerfile, from the context, a file or stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// A temporary directory (0700) removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Result<TempDir> {
        let base = std::env::temp_dir();
        let p = crate::store::staging::tmp_path(&base, &format!("strata-{what}"));
        std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What stdin held when the context is `-`: a tar context, or a lone Dockerfile (no context).
pub enum Stdin {
    Tar(TempDir),
    Dockerfile(String, TempDir),
}

/// Reads stdin as Docker does for `build -`: a tar archive (maybe compressed) is the context,
/// anything else is the Dockerfile with an empty context.
pub fn read_stdin(input: impl Read) -> Result<Stdin> {
    use crate::layer::compression::{Compression, read_prefix};
    let mut input = std::io::BufReader::new(input);
    let prefix = read_prefix(&mut input).context("reading stdin")?;
    let dir = TempDir::new("build-context")?;
    let Ok(compression) = Compression::detect(&prefix) else {
        let mut text = prefix;
        input.read_to_end(&mut text).context("reading the Dockerfile from stdin")?;
        let text = String::from_utf8(text).context("the Dockerfile on stdin is not UTF-8")?;
        return Ok(Stdin::Dockerfile(text, dir));
    };
    let decoded = compression.decoder(std::io::Cursor::new(prefix).chain(input))?;
    let mut archive = tar::Archive::new(decoded);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.unpack(&dir.0).context("unpacking the context tar from stdin")?;
    Ok(Stdin::Tar(dir))
}

/// The Dockerfile text: `-f` as given (relative to the working directory, as Docker does), else
/// `Dockerfile` in the context (or `dockerfile`).
pub fn dockerfile(context: &Path, file: Option<&Path>) -> Result<(String, String)> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let upper = context.join("Dockerfile");
            if upper.exists() { upper } else { context.join("dockerfile") }
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the Dockerfile {}", path.display()))?;
    let name = file.map(|f| f.display().to_string()).unwrap_or_else(|| "Dockerfile".into());
    Ok((name, text))
}

/// `.dockerignore` of the context (`<Dockerfile>.dockerignore` next to the Dockerfile wins).
pub fn ignore_file(context: &Path, dockerfile: Option<&Path>) -> Result<super::ignore::Ignore> {
    let specific = dockerfile.map(|d| {
        let mut s = d.as_os_str().to_os_string();
        s.push(".dockerignore");
        PathBuf::from(s)
    });
    for p in specific.into_iter().chain(std::iter::once(context.join(".dockerignore"))) {
        if p.is_file() {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            return super::ignore::Ignore::parse(&text).with_context(|| p.display().to_string());
        }
    }
    Ok(super::ignore::Ignore::default())
}
