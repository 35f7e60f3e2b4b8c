//! Who is calling and whether they may: the edge's security in one place.
//!
//! - [`layer::AuthLayer`] (a tower layer around every service) reads `authorization: Bearer
//!   <token>` on each public call, verifies the signed token ([`Verifier`]) and puts a [`Call`]
//!   in the request's extensions; missing, expired or forged tokens get `UNAUTHENTICATED` there,
//!   before any handler runs. Health and reflection stay open. Internal calls
//!   (`switchboard.internal.*`) need a verified node client certificate instead ([`tls`]).
//! - Each handler parses the names in its request and calls [`Call::allow`] with the tenant
//!   (and the acting agent, if the request names one); [`policy`] says which roles may call
//!   which method and whether an agent must be acting as itself. Refusals are
//!   `PERMISSION_DENIED`. The same call charges the tenant's rate budget ([`limits`]) and
//!   writes the audit record of supervisors' and administrators' changes (log target `audit`).
//! - Without configured keys the node runs unauthenticated, which the binary allows only on
//!   a loopback address: every call is then allowed, still rate-limited and audited.

pub mod layer;
pub mod limits;
pub mod policy;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::error::Error;
pub use limits::{Limits, StreamSlot};
pub use policy::{Role, Rule};

/// What a token says about its bearer. Issued by the operator's identity service (or
/// `switchboard token`) and signed with one of the node's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who this is, for the audit log (a user, a gateway's name).
    pub sub: String,
    pub role: Role,
    /// The tenant the bearer belongs to; empty for an operator, who acts across tenants.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// The agent id an agent or supervisor token acts as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
}

impl Claims {
    /// Refuses claims that cannot name a caller: a tenant role without a tenant, an agent
    /// role without an agent. `switchboard token` checks what it signs with this too.
    pub fn check(&self) -> Result<(), String> {
        let needs_tenant = self.role != Role::Operator;
        if needs_tenant && crate::names::check_id("tenant", &self.tenant).is_err() {
            return Err(format!("a {} token must name a valid tenant", self.role));
        }
        if !needs_tenant && !self.tenant.is_empty() {
            return Err("an operator token names no tenant".into());
        }
        let needs_agent = matches!(self.role, Role::Agent | Role::Supervisor);
        if needs_agent && crate::names::check_id("agent", &self.agent).is_err() {
            return Err(format!("a {} token must name the agent it acts as", self.role));
        }
        Ok(())
    }
}

/// The keys tokens are checked against. A file holding a PEM public key (`-----BEGIN PUBLIC
/// KEY-----`, Ed25519) verifies EdDSA tokens; any other file is an HS256 shared secret (its
/// bytes, surrounding whitespace trimmed, at least 32). Several keys allow rotation: a token
/// is accepted if any key verifies it.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey, PathBuf)>,
    leeway_seconds: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<_> = self.keys.iter().map(|(a, _, p)| (a, p)).collect();
        f.debug_struct("Verifier").field("keys", &files).finish()
    }
}

/// Shortest HS256 secret accepted (the size of the hash).
pub const MIN_SECRET_BYTES: usize = 32;

impl Verifier {
    /// Reads every key file; a file that cannot be used is an error naming it.
    pub fn from_files(files: &[PathBuf], leeway_seconds: u64) -> Result<Verifier, Error> {
        let mut keys = Vec::new();
        for path in files {
            let bytes = std::fs::read(path).map_err(|e| {
                Error::FailedPrecondition(format!("auth key file {}: {e}", path.display()))
            })?;
            keys.push(Self::key(path, &bytes)?);
        }
        if keys.is_empty() {
            return Err(Error::FailedPrecondition("no auth key files given".into()));
        }
        Ok(Verifier { keys, leeway_seconds })
    }

    fn key(path: &Path, bytes: &[u8]) -> Result<(Algorithm, DecodingKey, PathBuf), Error> {
        let bad = |why: String| {
            Error::FailedPrecondition(format!("auth key file {}: {why}", path.display()))
        };
        if bytes.starts_with(b"-----BEGIN PUBLIC KEY-----") {
            let key = DecodingKey::from_ed_pem(bytes).map_err(|e| bad(e.to_string()))?;
            return Ok((Algorithm::EdDSA, key, path.to_owned()));
        }
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(bad(format!(
                "an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, found {}",
                secret.len()
            )));
        }
        Ok((Algorithm::HS256, DecodingKey::from_secret(secret), path.to_owned()))
    }

    /// The claims of a valid token; why not otherwise (for `UNAUTHENTICATED`).
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut last = String::from("no key");
        for (alg, key, _) in &self.keys {
            let mut validation = Validation::new(*alg);
            validation.leeway = self.leeway_seconds;
            validation.set_required_spec_claims(&["exp"]);
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    data.claims.check()?;
                    return Ok(data.claims);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        // Signed by this key but no longer valid: no other key changes that.
                        ErrorKind::ExpiredSignature => return Err("the token has expired".into()),
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                            last = "the token's signature does not verify".into();
                        }
                        _ => last = format!("malformed token: {e}"),
                    }
                }
            }
        }
        Err(last)
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The node runs without authentication (loopback only): everything is allowed.
    Unauthenticated,
    Token(Arc<Claims>),
}

impl Caller {
    fn describe(&self) -> (String, &'static str) {
        match self {
            Caller::Unauthenticated => ("unauthenticated".into(), "any"),
            Caller::Token(c) => (c.sub.clone(), c.role.as_str()),
        }
    }
}

/// What the node enforces at the edge, shared by every connection.
#[derive(Debug)]
pub struct Gate {
    /// `None`: the unauthenticated (loopback) mode.
    pub verifier: Option<Verifier>,
    /// Whether internal (node-to-node) calls need a verified client certificate.
    pub node_certs_required: bool,
    pub limits: Limits,
}

impl Gate {
    pub fn new(verifier: Option<Verifier>, node_certs_required: bool, limits: Limits) -> Gate {
        Gate { verifier, node_certs_required, limits }
    }
}

/// One authenticated public call: put in the request's extensions by the layer, checked by
/// the handler with [`Call::allow`].
#[derive(Debug, Clone)]
pub struct Call {
    pub caller: Caller,
    /// The gRPC path, `/switchboard.v1.Service/Method`.
    pub method: String,
    gate: Option<Arc<Gate>>,
    /// Its tenant's place for calls in flight on this node, taken by [`Call::allow`] and held
    /// as long as the call (its handler keeps it until it returns).
    held: Arc<std::sync::OnceLock<limits::InFlight>>,
}

impl Call {
    pub fn new(caller: Caller, method: String, gate: Arc<Gate>) -> Call {
        Call { caller, method, gate: Some(gate), held: Arc::default() }
    }

    /// The same caller making a call of `method` (a command stream's message is checked,
    /// budgeted and audited as the call it stands for), with a place of its own.
    pub fn as_method(&self, method: &str) -> Call {
        let (caller, gate) = (self.caller.clone(), self.gate.clone());
        Call { caller, method: method.to_owned(), gate, held: Arc::default() }
    }

    /// Splits a request into its call (taken from the extensions the layer filled) and its
    /// message. A request that did not pass the layer is refused by `allow` (fail closed).
    pub fn split<T>(req: Request<T>) -> (Call, T) {
        let (_, mut extensions, message) = req.into_parts();
        let call = extensions.remove::<Call>().unwrap_or(Call {
            caller: Caller::Unauthenticated,
            method: String::new(),
            gate: None,
            held: Arc::default(),
        });
        (call, message)
    }

    /// Checks the method's rule against the tenant (`""` for calls on no tenant) and the
    /// acting agent the request names, charges the tenant's rate budget, takes one of its
    /// places for calls in flight on this node (held until this call is dropped, so for its
    /// handler's life), and audits.
    pub fn allow(&self, tenant: &str, agent: Option<&str>) -> Result<(), Error> {
        let Some(gate) = &self.gate else {
            return Err(Error::Internal("the call did not pass the authentication layer".into()));
        };
        let rule = policy::rule(&self.method);
        let decision = match rule {
            None => Err(format!("no policy allows {}", self.method)),
            Some(rule) => policy::decide(rule, &self.caller, tenant, agent),
        };
        let (subject, role) = self.caller.describe();
        if let Err(why) = decision {
            tracing::warn!(target: "audit", method = %self.method, %subject, role, %tenant,
                agent = agent.unwrap_or(""), reason = %why, "denied");
            return Err(Error::PermissionDenied(why));
        }
        if !tenant.is_empty() {
            gate.limits.charge(tenant)?;
            if self.held.get().is_none() {
                // Already set (a second check of the same call): it holds one place already.
                let _ = self.held.set(gate.limits.in_flight(tenant)?);
            }
        }
        if rule.is_some_and(|r| r.mutates) && self.audited_role() {
            tracing::info!(target: "audit", method = %self.method, %subject, role, %tenant,
                agent = agent.unwrap_or(""), "allowed");
        }
        Ok(())
    }

    /// Supervisors', administrators' and operators' changes are audited. On an
    /// unauthenticated node, where the role is unknown, the supervisor and admin services'
    /// changes are.
    fn audited_role(&self) -> bool {
        match &self.caller {
            Caller::Unauthenticated => {
                self.method.starts_with("/switchboard.v1.SupervisorService/")
                    || self.method.starts_with("/switchboard.v1.AdminService/")
            }
            Caller::Token(c) => matches!(c.role, Role::Supervisor | Role::Admin | Role::Operator),
        }
    }

    /// A place for one more live stream of `agent`, held until the returned slot drops.
    pub fn stream_slot(&self, tenant: &str, agent: &str) -> Result<StreamSlot, Error> {
        let Some(gate) = &self.gate else {
            return Err(Error::Internal("the call did not pass the authentication layer".into()));
        };
        gate.limits.stream_slot(tenant, agent)
    }
}

/// Marks an internal call that came from a verified peer node (or from anyone, on a node
/// without cluster mTLS configured): what [`require_node`] looks for.
#[derive(Debug, Clone, Copy)]
pub struct NodePeer;

/// For the handlers of `switchboard.internal.*` services: `UNAUTHENTICATED` unless the call
/// came over a connection whose client certificate verified against the cluster CA (when
/// `tls.client_ca_file` is set). The check itself happens in [`layer::AuthLayer`] before the
/// handler runs; this makes the requirement visible (and enforced) at the handler too.
pub fn require_node<T>(req: &Request<T>) -> Result<(), tonic::Status> {
    if req.extensions().get::<NodePeer>().is_some() {
        Ok(())
    } else {
        Err(Error::Unauthenticated("internal calls need a node client certificate".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_handlers_require_the_node_mark_the_layer_sets() {
        let mut req = Request::new(());
        assert_eq!(require_node(&req).unwrap_err().code(), tonic::Code::Unauthenticated);
        req.extensions_mut().insert(NodePeer);
        require_node(&req).unwrap();
    }

    #[test]
    fn a_call_that_skipped_the_layer_is_refused() {
        let (call, ()) = Call::split(Request::new(()));
        assert!(matches!(call.allow("acme", None), Err(Error::Internal(_))));
    }

    /// A tenant's place for a call in flight is taken by `allow` and held for as long as the
    /// call is (its handler's life), whichever routing serves the tenant; a command stream's
    /// message (`as_method`) takes a place of its own; a second check of one call takes none.
    #[test]
    fn a_call_holds_its_tenants_place_in_flight_until_it_is_dropped() {
        let config = limits::LimitsConfig { tenant_in_flight: 2, ..Default::default() };
        let gate = Arc::new(Gate::new(None, false, Limits::new(config)));
        let method = "/switchboard.v1.ChannelService/PostMessage".to_owned();
        let call = || Call::new(Caller::Unauthenticated, method.clone(), gate.clone());
        let first = call();
        first.allow("acme", None).unwrap();
        first.allow("acme", None).unwrap();
        let message = first.as_method("/switchboard.v1.ChannelService/PostMessage");
        message.allow("acme", None).unwrap();
        let third = call();
        match third.allow("acme", None) {
            Err(Error::ResourceExhausted(m)) => assert!(m.contains("tenant_in_flight"), "{m}"),
            other => panic!("a third call in flight: {other:?}"),
        }
        call().allow("globex", None).unwrap();
        drop(message);
        call().allow("acme", None).unwrap();
    }

    #[test]
    fn claims_name_a_caller() {
        let claims = |role, tenant: &str, agent: &str| Claims {
            sub: "s".into(),
            role,
            tenant: tenant.into(),
            agent: agent.into(),
            exp: 0,
        };
        claims(Role::Agent, "acme", "alice").check().unwrap();
        claims(Role::Operator, "", "").check().unwrap();
        assert!(claims(Role::Agent, "acme", "").check().is_err());
        assert!(claims(Role::Admin, "", "").check().is_err());
        assert!(claims(Role::Operator, "acme", "").check().is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "too short").unwrap();
        assert!(Verifier::from_files(&[short], 0).unwrap_err().to_string().contains("32 bytes"));
    }
}
