//! `login` / `logout`: credentials are checked against the registry's `/v2/` (Basic, or a Bearer
//! token from its realm) before they are saved.

use anyhow::Result;

use super::client::{Client, ClientOptions, Request};
use super::credentials::{self, Credentials};
use super::endpoint::normalize_registry;
use super::errors::StatusError;

/// Verifies `creds` against `registry`, then saves them. Returns the normalised registry name.
pub fn login(registry: &str, creds: Credentials, insecure: bool) -> Result<String> {
    let registry = normalize_registry(registry);
    let opts = ClientOptions { insecure, credentials: Some(creds.clone()), ..Default::default() };
    let client = Client::new(&registry, &opts)?;
    let resp = client.send(&Request::new("GET", "/v2/", ""))?;
    if resp.status() == 401 {
        return Err(StatusError::new(401, b"").with_hint("incorrect username or password").into());
    }
    client.expect(resp, &[200])?;
    credentials::save(&registry, &creds)?;
    Ok(registry)
}

/// Forgets saved credentials; returns the normalised name and whether any were saved.
pub fn logout(registry: &str) -> Result<(String, bool)> {
    let registry = normalize_registry(registry);
    let removed = credentials::remove(&registry)?;
    Ok((registry, removed))
}
