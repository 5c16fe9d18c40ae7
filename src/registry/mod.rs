//! An OCI distribution client on blocking `ureq`: pull, push, login and catalog search against any
//! registry (Docker Hub, GHCR, Harbor, the CNCF `distribution` registry).
//!
//! One idea per file: `endpoint` (where a registry lives, URLs, which schemes), `challenge`
//! (`WWW-Authenticate`), `credentials` (saved logins), `auth` (Basic / Bearer tokens per scope),
//! `client` (requests with auth, retries and errors), `blob_reader` (resumable downloads), `resolve`
//! (reference → manifest, platform choice), `pull`, `upload` + `push`, `search`, `login`; progress display is the crate's `progress`.

pub mod auth;
pub mod base64;
pub mod blob_reader;
pub mod challenge;
pub mod client;
pub mod compress;
pub mod config;
pub mod credentials;
pub mod endpoint;
pub mod errors;
pub mod login;
pub mod payload;
pub use crate::progress;
pub mod pull;
pub mod push;
pub mod resolve;
pub mod retry;
pub mod search;
pub mod upload;

pub use client::{Client, ClientOptions};
pub use credentials::Credentials;
pub use progress::Progress;
pub use pull::{PullOptions, Pulled, pull};
pub use push::{Pushed, push};
pub use search::{Found, search};
