//! Authenticated nodes and the tokens their callers carry: an HS256 key for tests only, and
//! tokens minted with fixed expiry times (far in the future, or long past), so nothing
//! depends on the clock.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Node;

/// A key for tests only, written to a temp dir at test time.
pub const SECRET: &str = "test-only-secret-0123456789abcdef0123456789";
/// 2096: valid for the life of this test suite.
pub const FUTURE: u64 = 4_000_000_000;
/// 2001: long expired.
pub const PAST: u64 = 1_000_000_000;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tenant: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    agent: &'a str,
    exp: u64,
}

pub fn mint_with(secret: &str, role: &str, tenant: &str, agent: &str, exp: u64) -> String {
    let claims = Claims { sub: "test", role, tenant, agent, exp };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("mint a token")
}

pub fn mint(role: &str, tenant: &str, agent: &str) -> String {
    mint_with(SECRET, role, tenant, agent, FUTURE)
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// Starts a node whose config file has `extra` appended after the `[auth]` section.
pub fn start_authenticated(dir: &Path, extra: &str) -> Node {
    let key = write(dir, "jwt.key", SECRET);
    let config = format!("[auth]\ntoken_keys = [{:?}]\n{extra}", key.display().to_string());
    let path = write(dir, "sb.toml", &config);
    // The table test's hundreds of refusals would flood the test output as audit warnings.
    let log = std::env::var("NODE_LOG").unwrap_or_else(|_| "warn,audit=error".into());
    Node::start_with(
        &dir.join("data"),
        &["--config", path.to_str().expect("utf-8 path"), "--log", &log],
    )
}

pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    req
}
