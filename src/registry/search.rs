//! `search`: the registry's catalog (`/v2/_catalog`, paginated with `Link` headers) filtered by a
//! substring, each match with its tags (`/v2/<name>/tags/list`).

use anyhow::{Context, Result, bail};

use super::client::{Client, ClientOptions, Request};
use super::endpoint::{pull_scope, with_query};
use crate::oci::reference::DEFAULT_REGISTRY;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    pub name: String,
    pub tags: Vec<String>,
}

/// Page size asked of the registry.
const PAGE: usize = 100;

/// Repositories of `registry` whose name contains `term`, at most `limit`, with their tags.
pub fn search(registry: &str, term: &str, limit: usize, opts: &ClientOptions) -> Result<Vec<Found>> {
    if registry == DEFAULT_REGISTRY {
        bail!("docker.io has no catalog to search; give --registry HOST (a registry with /v2/_catalog)");
    }
    let client = Client::new(registry, opts)?;
    let mut names = Vec::new();
    let first = with_query("/v2/_catalog", "n", &PAGE.to_string());
    each_page(&client, &first, "registry:catalog:*", "repositories", &mut |page| {
        names.extend(page.into_iter().filter(|n| n.contains(term)));
        names.len() < limit
    })
    .with_context(|| format!("catalog of {registry}"))?;
    names.truncate(limit);
    names
        .into_iter()
        .map(|name| {
            let url = with_query(&format!("/v2/{name}/tags/list"), "n", &PAGE.to_string());
            let mut tags = Vec::new();
            each_page(&client, &url, &pull_scope(&name), "tags", &mut |page| {
                tags.extend(page);
                true
            })
            .with_context(|| format!("tags of {name}"))?;
            tags.sort();
            Ok(Found { name, tags })
        })
        .collect()
}

/// Reads the `field` array of each page from `url` on, following `Link: <…>; rel="next"`, while
/// `f` returns true.
fn each_page(
    client: &Client,
    url: &str,
    scope: &str,
    field: &str,
    f: &mut dyn FnMut(Vec<String>) -> bool,
) -> Result<()> {
    let mut next = Some(url.to_string());
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 10_000 {
            bail!("more than 10000 pages: the registry's Link headers loop");
        }
        let resp = client.send_expect(&Request::new("GET", url.as_str(), scope), &[200])?;
        next = Client::header(&resp, "link").and_then(next_link);
        let body = Client::read_small(resp, 16 << 20, "a listing")?;
        let doc: serde_json::Value = serde_json::from_slice(&body).context("the listing is not JSON")?;
        let items: Vec<String> = doc
            .get(field)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if !f(items) {
            break;
        }
    }
    Ok(())
}

/// The target of a `rel="next"` link (`</v2/_catalog?last=b&n=2>; rel="next"`).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "").eq_ignore_ascii_case("rel=\"next\"") || p.trim() == "rel=next")
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"<http://h/x>; rel="prev""#), None);
    }
}
