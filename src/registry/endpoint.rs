//! Where a registry lives: the API host for a reference's registry (`docker.io` →
//! `registry-1.docker.io`), which schemes it may be reached with, and URLs of the distribution API.

use std::net::IpAddr;

use crate::oci::reference::DEFAULT_REGISTRY;

/// The host serving the API for a registry name as it appears in references.
pub fn api_host(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY { "registry-1.docker.io" } else { registry }
}

/// Normalises what a user types for a registry (`https://index.docker.io/v1/`, `localhost:5000/`,
/// `http://127.0.0.1:5000`) to the name references use (`docker.io`, `localhost:5000`).
pub fn normalize_registry(input: &str) -> String {
    let s = input.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "" => {
            DEFAULT_REGISTRY.to_string()
        }
        _ => host,
    }
}

/// The host part of `host[:port]` / `[v6]:port`, without brackets.
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Loopback registries (127.0.0.0/8, `localhost`, `::1`) may be spoken to in plain HTTP, as Docker does.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Repository API paths under `/v2/`.
pub fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

pub fn blob_path(repo: &str, digest: &crate::oci::Digest) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

pub fn uploads_path(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

/// The token scope to read a repository.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The token scope to write a repository.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Appends a query parameter to a URL that may already have a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", percent_encode(value))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a `Location` header (absolute URL, absolute path, or relative) against `base`
/// (`scheme://host`).
pub fn resolve_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rules() {
        for yes in ["localhost:5000", "127.0.0.1:5000", "127.9.9.9", "[::1]:5000", "::1", "LOCALHOST"] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in ["docker.io", "10.0.0.1:5000", "localhost.example.com", "128.0.0.1"] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn registry_names_normalise() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(normalize_registry("Ghcr.io"), "ghcr.io");
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn urls() {
        assert_eq!(with_query("http://h/a?x=1", "digest", "sha256:ab"), "http://h/a?x=1&digest=sha256%3Aab");
        assert_eq!(resolve_location("http://h", "/v2/x/blobs/uploads/u"), "http://h/v2/x/blobs/uploads/u");
        assert_eq!(resolve_location("http://h", "https://s3/x"), "https://s3/x");
    }
}
