//! The node's one error type and its single mapping onto gRPC statuses, with
//! `google.rpc.ErrorInfo` (and `BadRequest` for field errors) in the details.

use switchboard_core::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// Domain of every `ErrorInfo` this node sends.
pub const ERROR_DOMAIN: &str = "switchboard.dev";

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A rule of the routing core refused the operation.
    #[error(transparent)]
    Core(#[from] switchboard_core::Error),
    /// A core refusal with its message in the tenant's resource names (what callers see;
    /// see `convert::refusal`).
    #[error("{message}")]
    Refused { error: switchboard_core::Error, message: String },
    /// A request field is malformed.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Durable storage failed; the tenant reloads from the store.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// Missing, expired or forged credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The tenant's request budget is spent; retry after the delay.
    #[error("tenant {tenant} is over its request rate; retry in {} ms", retry_after.as_millis())]
    RateLimited { tenant: String, retry_after: std::time::Duration },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::Field { field: field.to_owned(), message: message.into() }
    }

    /// A request id answered before for another call (another kind, or other fields):
    /// refused, never answered with that call's answer nor applied. `request_id` empty: not
    /// named (a stored answer of another kind, seen where the id is not at hand).
    pub fn reused(request_id: &str) -> Self {
        let which = if request_id.is_empty() {
            "the request_id".into()
        } else {
            format!("request_id {request_id:?}")
        };
        Error::FailedPrecondition(format!(
            "{which} was used by another call; give each call its own"
        ))
    }

    /// The core's refusal this error carries, if any.
    pub fn core(&self) -> Option<&switchboard_core::Error> {
        match self {
            Error::Core(e) | Error::Refused { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// A short machine-readable reason for `ErrorInfo`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Core(e) | Error::Refused { error: e, .. } => e.reason(),
            Error::Field { .. } => "INVALID_FIELD",
            Error::NotFound(_) => "NOT_FOUND",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Core(e) | Error::Refused { error: e, .. } => tonic_code(e.code()),
            Error::Field { .. } => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::ResourceExhausted(_) | Error::RateLimited { .. } => {
                tonic::Code::ResourceExhausted
            }
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::Internal(_) => tonic::Code::Internal,
        }
    }
}

fn tonic_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
    }
}

/// A core refusal that reached this node as text (from an actor on the mesh, already in
/// resource names) with its `kind`: the status the core error itself would give. Without a
/// kind (from a node before them), FAILED_PRECONDITION.
pub fn refused(kind: Option<&switchboard_core::error::Kind>, message: String) -> tonic::Status {
    match kind {
        Some(k) => status(tonic_code(k.code), message, &k.reason, None, None),
        None => status(tonic::Code::FailedPrecondition, message, "FAILED_PRECONDITION", None, None),
    }
}

fn status(
    code: tonic::Code,
    message: String,
    reason: &str,
    field: Option<(&str, &str)>,
    retry_after: Option<std::time::Duration>,
) -> tonic::Status {
    let mut details =
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    if let Some((field, why)) = field {
        details.add_bad_request_violation(field, why);
    }
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    tonic::Status::with_error_details(code, message, details)
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let field = match &e {
            Error::Field { field, message } => Some((field.clone(), message.clone())),
            _ => None,
        };
        let retry_after = match &e {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        status(
            e.code(),
            e.to_string(),
            e.reason(),
            field.as_ref().map(|(f, m)| (f.as_str(), m.as_str())),
            retry_after,
        )
    }
}

impl From<switchboard_store::Error> for Error {
    fn from(e: switchboard_store::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
