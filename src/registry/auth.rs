//! Authenticating to one registry: learns the scheme from the first `401` challenge, then sends
//! Basic credentials, or Bearer tokens fetched from the challenge's realm and cached per scope for
//! the life of the process (until they expire).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::challenge::{self, Challenge};
use super::client::Client;
use super::credentials::Credentials;
use super::endpoint::{percent_encode, with_query};
use super::errors::StatusError;

/// A token answer is a small JSON document; a registry streaming more is refused, not buffered.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

pub struct Auth {
    registry: String,
    creds: Option<Credentials>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    scheme: Option<Scheme>,
    tokens: HashMap<String, Token>,
}

#[derive(Clone)]
enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

struct Token {
    value: String,
    expires: Instant,
}

impl Auth {
    pub fn new(registry: &str, creds: Option<Credentials>) -> Auth {
        Auth { registry: registry.to_string(), creds, state: Mutex::new(State::default()) }
    }

    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value for a request needing `scope` (space-separated scopes; empty for
    /// none), once the registry has said how it authenticates. May fetch a token.
    pub fn header(&self, agent: &ureq::Agent, scope: &str) -> Result<Option<String>> {
        let mut st = self.state();
        match st.scheme.clone() {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(self.creds.as_ref().map(Credentials::basic_header)),
            Some(Scheme::Bearer { realm, service }) => {
                if let Some(t) = st.tokens.get(scope).filter(|t| t.expires > Instant::now()) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self.fetch_token(agent, &realm, service.as_deref(), scope)?;
                let header = format!("Bearer {}", token.value);
                st.tokens.insert(scope.to_string(), token);
                Ok(Some(header))
            }
        }
    }

    /// Learns from a `401`'s `WWW-Authenticate`. `sent` is the `Authorization` the refused request
    /// carried. Returns true when the request should be sent again: it went out before the scheme
    /// was known or with a token another request has since replaced, or a token for a wider scope
    /// was just fetched; false when retrying cannot help (these credentials were refused).
    ///
    /// Requests run in parallel (a push checks several layers at once), so many can meet the first
    /// challenge together: each one that went out without the current credentials retries.
    pub fn challenged(
        &self,
        agent: &ureq::Agent,
        header: Option<&str>,
        scope: &str,
        sent: Option<&str>,
    ) -> Result<bool> {
        let Some(ch) = header.and_then(challenge::parse) else { return Ok(false) };
        let mut st = self.state();
        match ch {
            Challenge::Basic => {
                st.scheme = Some(Scheme::Basic);
                Ok(sent.is_none() && self.creds.is_some())
            }
            Challenge::Bearer { realm, service, scope: wanted } => {
                st.scheme = Some(Scheme::Bearer { realm: realm.clone(), service: service.clone() });
                let current = st.tokens.get(scope).filter(|t| t.expires > Instant::now());
                let refused = current.is_some_and(|t| sent == Some(format!("Bearer {}", t.value).as_str()));
                if current.is_some() && !refused {
                    // Another request fetched a token since this one went out: use it.
                    return Ok(true);
                }
                // Ask for what we need and what the registry says it needs.
                let mut scopes: Vec<&str> = scope.split_whitespace().collect();
                for s in wanted.as_deref().unwrap_or("").split_whitespace() {
                    if !scopes.contains(&s) {
                        scopes.push(s);
                    }
                }
                let token = self.fetch_token(agent, &realm, service.as_deref(), &scopes.join(" "))?;
                st.tokens.insert(scope.to_string(), token);
                // A 401 for the current token of this scope means access is denied, unless the
                // registry asked for a scope we had not asked for.
                Ok(!refused || wanted.is_some_and(|w| !scope.split_whitespace().any(|s| s == w)))
            }
        }
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token> {
        let mut url = realm.to_string();
        if let Some(s) = service {
            url = with_query(&url, "service", s);
        }
        for s in scope.split_whitespace() {
            url = with_query(&url, "scope", s);
        }
        if let Some(c) = &self.creds {
            url = format!(
                "{url}{}account={}",
                if url.contains('?') { '&' } else { '?' },
                percent_encode(&c.username)
            );
        }
        let mut req = ureq::http::Request::get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let req = req.body(()).context("invalid token realm URL")?;
        let what = || format!("token from {realm} for {}", self.registry);
        let mut resp = agent.run(req).with_context(|| format!("cannot get a {}", what()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            // An error body only feeds the message: its first bytes are enough.
            let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
            let err = StatusError::new(status, &body);
            let err = match (status, &self.creds) {
                (401 | 403, Some(_)) => err.with_hint("incorrect username or password?"),
                (401 | 403, None) => err.with_hint(format!("run `strata login {}`", self.registry)),
                _ => err,
            };
            return Err(err).with_context(what);
        }
        let body = Client::read_small(resp, MAX_TOKEN_RESPONSE, &format!("the {}", what()))?;
        #[derive(serde::Deserialize)]
        struct Resp {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let r: Resp = serde_json::from_slice(&body).with_context(|| format!("invalid JSON in {}", what()))?;
        let value = r
            .token
            .or(r.access_token)
            .filter(|t| !t.is_empty())
            .with_context(|| format!("{}: no token in the answer", what()))?;
        // Docker's default lifetime is 60 s; renew 10 s early.
        let life = Duration::from_secs(r.expires_in.unwrap_or(60).max(20) - 10);
        tracing::debug!("got a token for {scope:?} valid {} s", life.as_secs());
        Ok(Token { value, expires: Instant::now() + life })
    }
}
