//! Registry failures as users should read them: the registry's own error message (from the
//! distribution spec's `{"errors":[{"code","message"}]}` body) and the HTTP status.

/// A response with an unexpected status: `manifest unknown (404)`.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({status}){hint}")]
pub struct StatusError {
    pub status: u16,
    /// The spec's error code (`MANIFEST_UNKNOWN`), when the body had one.
    pub code: Option<String>,
    pub message: String,
    hint: String,
}

impl StatusError {
    /// Builds the error from a status and the response body (which may be empty or not JSON).
    pub fn new(status: u16, body: &[u8]) -> StatusError {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: Option<String>,
            message: Option<String>,
        }
        let parsed = serde_json::from_slice::<Body>(body).ok().and_then(|b| b.errors.into_iter().next());
        let code = parsed.as_ref().and_then(|e| e.code.clone());
        let message = parsed
            .and_then(|e| e.message.or_else(|| e.code.map(|c| c.to_ascii_lowercase().replace('_', " "))))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| default_message(status).to_string());
        StatusError { status, code, message, hint: String::new() }
    }

    /// Adds advice shown after the status (`… (401); run strata login HOST`).
    pub fn with_hint(mut self, hint: impl std::fmt::Display) -> StatusError {
        self.hint = format!("; {hint}");
        self
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized: authentication required",
        403 => "denied: requested access to the resource is denied",
        404 => "not found",
        405 => "operation not supported by this registry",
        416 => "requested range not satisfiable",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "unexpected response",
    }
}

/// The registry could not be reached (refused, reset, timed out, TLS failure), after retries.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach registry {registry} ({url}): {detail}")]
pub struct Unreachable {
    pub registry: String,
    pub url: String,
    pub detail: String,
}

/// Statuses worth retrying: the registry or something in front of it is briefly unwell.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_spec_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        let e = StatusError::new(404, body);
        assert_eq!(e.to_string(), "manifest unknown (404)");
        assert_eq!(e.code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(StatusError::new(503, b"<html>").to_string(), "service unavailable (503)");
        let hinted = StatusError::new(401, b"").with_hint("run `strata login h`");
        assert_eq!(hinted.to_string(), "unauthorized: authentication required (401); run `strata login h`");
    }
}
