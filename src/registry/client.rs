//! A blocking client for one registry: picks https or (for loopback / insecure registries) plain
//! http, authenticates (see `auth`), retries transient failures with backoff, and turns unexpected
//! statuses into `StatusError`s with the registry's own message.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use ureq::http::Response;

use super::auth::Auth;
use super::credentials::{self, Credentials};
use super::endpoint::{api_host, is_loopback};
use super::errors::{StatusError, Unreachable, is_transient_status};
use super::payload::Payload;
use super::retry::{Backoff, is_transient};

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Allow plain HTTP and unverified TLS (`--insecure`), as for Docker's insecure-registries.
    pub insecure: bool,
    /// Credentials to use instead of the saved ones (login).
    pub credentials: Option<Credentials>,
    /// Retry policy (the default: 5 tries, 200 ms doubling up to 5 s).
    pub backoff: Option<Backoff>,
}

pub struct Client {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    agent: ureq::Agent,
    plain_http_allowed: bool,
    base: OnceLock<String>,
    auth: Auth,
    backoff: Backoff,
}

/// One request: method, URL (absolute, or a path under the registry), token scope, headers, body.
pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    pub scope: &'a str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Payload<'a>,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, url: impl Into<String>, scope: &'a str) -> Request<'a> {
        Request { method, url: url.into(), scope, headers: Vec::new(), body: Payload::Empty }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Payload<'a>) -> Self {
        self.body = body;
        self
    }
}

impl Client {
    /// A client for `registry`; saved credentials are loaded unless `opts` gives some.
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<Client> {
        let listed = super::config::insecure_registries()?.iter().any(|r| r == registry);
        let plain_http_allowed = opts.insecure || listed || is_loopback(registry);
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => credentials::lookup(registry)?,
        };
        let tls = ureq::tls::TlsConfig::builder().disable_verification(plain_http_allowed).build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_idle_connections_per_host(8)
            .build()
            .new_agent();
        Ok(Client {
            registry: registry.to_string(),
            agent,
            plain_http_allowed,
            base: OnceLock::new(),
            auth: Auth::new(registry, creds),
            backoff: opts.backoff.unwrap_or_default(),
        })
    }

    /// `scheme://host` of the API. Registries allowed plain HTTP are probed with TLS first and fall
    /// back to HTTP when TLS does not answer, as Docker does.
    pub fn base(&self) -> &str {
        self.base.get_or_init(|| {
            let host = api_host(&self.registry);
            if !self.plain_http_allowed {
                return format!("https://{host}");
            }
            let probe = ureq::http::Request::get(format!("https://{host}/v2/")).body(()).ok();
            match probe.map(|r| self.agent.run(r)) {
                Some(Ok(_)) => format!("https://{host}"),
                _ => {
                    tracing::debug!("{host}: no TLS, using plain HTTP");
                    format!("http://{host}")
                }
            }
        })
    }

    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base())
        } else {
            path_or_url.to_string()
        }
    }

    /// Sends a request, authenticating and retrying as needed; returns the response whatever its
    /// status (see [`Client::expect`]).
    pub fn send(&self, req: &Request) -> Result<Response<ureq::Body>> {
        let url = self.url(&req.url);
        let mut attempt = 0;
        let mut auth_rounds = 0;
        loop {
            let mut b = ureq::http::Request::builder().method(req.method).uri(&url);
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            let authorization = self.auth.header(&self.agent, req.scope)?;
            if let Some(a) = &authorization {
                b = b.header("Authorization", a);
            }
            let result = if matches!(req.method, "PUT" | "POST" | "PATCH") {
                b = b.header("Content-Length", req.body.len().to_string());
                let mut reader = req.body.reader();
                let http = b
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .with_context(|| format!("invalid request URL {url}"))?;
                self.agent.run(http)
            } else {
                let http = b.body(()).with_context(|| format!("invalid request URL {url}"))?;
                self.agent.run(http)
            };
            match result {
                Ok(resp) if resp.status() == 401 && auth_rounds < 2 => {
                    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok());
                    if !self.auth.challenged(&self.agent, challenge, req.scope, authorization.as_deref())? {
                        return Ok(resp);
                    }
                    auth_rounds += 1;
                }
                Ok(resp) if is_transient_status(resp.status().as_u16()) => {
                    let why = format!("{} {url}: status {}", req.method, resp.status().as_u16());
                    let after = Client::header(&resp, "retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if !self.backoff.wait_at_least(attempt, after, &why) {
                        return Ok(resp);
                    }
                    attempt += 1;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if is_transient(&e) => {
                    let why = format!("{} {url}: {e}", req.method);
                    if !self.backoff.wait(attempt, &why) {
                        return Err(self.unreachable(e));
                    }
                    attempt += 1;
                }
                Err(e) => return Err(self.unreachable(e)),
            }
        }
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        let detail = match &e {
            ureq::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        };
        Unreachable { registry: self.registry.clone(), url: self.base().to_string(), detail }.into()
    }

    /// Sends and fails unless the status is one of `ok`.
    pub fn send_expect(&self, req: &Request, ok: &[u16]) -> Result<Response<ureq::Body>> {
        let resp = self.send(req)?;
        self.expect(resp, ok)
    }

    /// Turns a response with a status outside `ok` into a [`StatusError`].
    pub fn expect(&self, mut resp: Response<ureq::Body>, ok: &[u16]) -> Result<Response<ureq::Body>> {
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        let err = StatusError::new(status, &body);
        Err(match status {
            401 if self.auth.has_credentials() => err.with_hint(format!(
                "the saved credentials for {} were refused (strata login {0})",
                self.registry
            )),
            401 => err.with_hint(format!("run `strata login {}`", self.registry)),
            _ => err,
        }
        .into())
    }

    /// Reads a small response body (manifests, configs, JSON), at most `limit` bytes.
    pub fn read_small(resp: Response<ureq::Body>, limit: u64, what: &str) -> Result<Vec<u8>> {
        let over = || format!("{what} is larger than strata accepts ({limit} bytes)");
        let declared = Self::header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            anyhow::bail!("{} (the registry declares {} bytes)", over(), declared.unwrap_or(0));
        }
        use std::io::Read;
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {what}"))?;
        anyhow::ensure!(bytes.len() as u64 <= limit, "{}", over());
        Ok(bytes)
    }

    /// A response header as a string.
    pub fn header<'r>(resp: &'r Response<ureq::Body>, name: &str) -> Option<&'r str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_insecure_registries_may_use_plain_http() {
        // No request is made: a registry not allowed plain HTTP is https without probing.
        let remote = Client::new("10.9.8.7:5000", &ClientOptions::default()).unwrap();
        assert_eq!(remote.base(), "https://10.9.8.7:5000");
        let hub = Client::new("docker.io", &ClientOptions::default()).unwrap();
        assert_eq!(hub.url("/v2/"), "https://registry-1.docker.io/v2/");
        assert!(!remote.plain_http_allowed && !hub.plain_http_allowed);
        let insecure =
            Client::new("10.9.8.7:5000", &ClientOptions { insecure: true, ..Default::default() }).unwrap();
        assert!(insecure.plain_http_allowed);
        assert!(Client::new("[::1]:5000", &ClientOptions::default()).unwrap().plain_http_allowed);
    }
}
