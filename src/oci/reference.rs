//! Image references with Docker's normalisation: `busybox` → `docker.io/library/busybox:latest`.

use std::fmt;

use super::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {why}")]
pub struct InvalidReference {
    pub input: String,
    pub why: &'static str,
}

impl Reference {
    /// Parses and normalises a reference. A missing tag stays `None` here; see [`Reference::with_default_tag`].
    pub fn parse(input: &str) -> Result<Self, InvalidReference> {
        let bad = |why| InvalidReference { input: input.to_string(), why };
        if input.is_empty() {
            return Err(bad("empty name"));
        }
        if input.len() > 255 {
            return Err(bad("name longer than 255 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad("digest is not sha256:<64 hex>"))?)),
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad("tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if registry.is_empty() || !registry.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad("registry host is not a valid host[:port]"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(bad(
                "repository name must be lowercase [a-z0-9] components separated by '/', joined by '.', '_', '__' or '-'",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Reference { registry, repository, tag: tag.map(str::to_string), digest })
    }

    /// Parses and adds `:latest` when neither tag nor digest was given, as `docker pull` does.
    pub fn parse_with_default_tag(input: &str) -> Result<Self, InvalidReference> {
        Self::parse(input).map(Self::with_default_tag)
    }

    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `registry/repository`, the full name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name Docker shows: `busybox` for `docker.io/library/busybox`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        }
    }

    /// `familiar_name:tag` or `familiar_name@digest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// One path component: `[a-z0-9]+` groups joined by `.`, `_`, `__` or `-`s.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c)) {
        return false;
    }
    // Separators: '.', '_', '__' or any run of '-'; never mixed or longer.
    c.split(|ch: char| ch.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .all(|sep| sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse_with_default_tag(s).unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(p("user/app:1.0").to_string(), "docker.io/user/app:1.0");
        assert_eq!(p("localhost:5000/app").to_string(), "localhost:5000/app:latest");
        assert_eq!(p("127.0.0.1:5000/a/b:v2").registry, "127.0.0.1:5000");
        assert_eq!(p("ghcr.io/org/img:x").familiar(), "ghcr.io/org/img:x");
        assert_eq!(p("docker.io/library/busybox:1").familiar(), "busybox:1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().to_string(), d);
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in ["", "UPPER", "a//b", "a:", "a:-x", "a@sha256:12", "-a", "a__-b", "a:b:c", "a b"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
