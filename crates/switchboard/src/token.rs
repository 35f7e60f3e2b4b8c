//! `switchboard token`: signs a bearer token (JWT, SECURITY.md) with a key file, for an
//! operator who holds the cluster's HS256 secret (the Helm chart generates one) or an Ed25519
//! private key whose public half the nodes verify with. Nothing is sent anywhere: the token is
//! printed, for `switchboard ctl --token` or a client's configuration.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_node::auth::{Claims, MIN_SECRET_BYTES, Role};

#[derive(Debug, Args)]
pub struct Token {
    /// Signing key: the HS256 secret file the nodes list in auth.token_keys, or an Ed25519
    /// private key (PEM, `-----BEGIN PRIVATE KEY-----`) whose public key they list
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// What the bearer may do (SECURITY.md's table)
    #[arg(long, value_enum)]
    pub role: TokenRole,
    /// The tenant (every role but operator)
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// The agent it acts as (agent and supervisor)
    #[arg(long, default_value = "")]
    pub agent: String,
    /// Who this is, for the audit log (default: the role, tenant and agent)
    #[arg(long)]
    pub subject: Option<String>,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 3600)]
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenRole {
    Integrator,
    Agent,
    Supervisor,
    Admin,
    Operator,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Role {
        match r {
            TokenRole::Integrator => Role::Integrator,
            TokenRole::Agent => Role::Agent,
            TokenRole::Supervisor => Role::Supervisor,
            TokenRole::Admin => Role::Admin,
            TokenRole::Operator => Role::Operator,
        }
    }
}

impl Token {
    /// The signed token; refuses claims a node would refuse (an operator naming a tenant, an
    /// agent token without its agent) and keys a node would not verify with. `now` is the
    /// wall clock in seconds since the Unix epoch (the expiry counts from it).
    pub fn mint(&self, now: u64) -> anyhow::Result<String> {
        let role = Role::from(self.role);
        let subject = self.subject.clone().unwrap_or_else(|| {
            [role.as_str(), &self.tenant, &self.agent]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        });
        let claims = Claims {
            sub: subject,
            role,
            tenant: self.tenant.clone(),
            agent: self.agent.clone(),
            exp: now.saturating_add(self.ttl_seconds),
        };
        if let Err(why) = claims.check() {
            bail!("{why} (--tenant, --agent)");
        }
        let bytes =
            std::fs::read(&self.key).with_context(|| format!("--key {}", self.key.display()))?;
        let (algorithm, key) = if bytes.starts_with(b"-----BEGIN PRIVATE KEY-----") {
            let key = EncodingKey::from_ed_pem(&bytes).with_context(|| {
                format!("--key {}: not an Ed25519 private key", self.key.display())
            })?;
            (Algorithm::EdDSA, key)
        } else if bytes.starts_with(b"-----BEGIN") {
            bail!(
                "--key {}: a PEM file that is not a PKCS#8 private key; sign with the HS256 secret \
                 file or the Ed25519 private key (a node's public key cannot sign)",
                self.key.display()
            );
        } else {
            let secret = bytes.trim_ascii();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "--key {}: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, found {}",
                    self.key.display(),
                    secret.len()
                );
            }
            (Algorithm::HS256, EncodingKey::from_secret(secret))
        };
        jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).context("sign the token")
    }
}
