//! The wire contracts authgate answers itself (`../shared/spec/`), and nothing else.

pub mod form;
pub mod gwos;
pub mod iogates;
pub mod revocation;

use crate::auth::RevokeError;
use crate::reply::Reply;
use crate::store::StoreError;
use http::header::{HeaderValue, RETRY_AFTER};

/// What an auth endpoint answered, and what the access and audit logs should say of it.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// Low-cardinality result class, e.g. `success`, `bad_credentials`, `bad_request`.
    pub result: &'static str,
    /// The user concerned, as resolved (or as typed when unknown); never a secret.
    pub user: Option<String>,
}

/// A 503 the client may retry in a second.
pub fn retry_later(reply: Reply, result: &'static str) -> Outcome {
    Outcome::new(
        reply.with_header(RETRY_AFTER, HeaderValue::from_static("1")),
        result,
    )
}

/// The token store failed: logged here, answered 503 in the endpoint's dialect.
pub fn store_failed(e: &StoreError, reply: Reply) -> Outcome {
    tracing::error!(error = %e, "token store failed");
    retry_later(reply, "store_error")
}

pub const STORE_UNAVAILABLE: &str = "Token store unavailable";
/// A revocation held in memory only (`RevokeError::NotSaved`): what happened, and that it holds.
pub const REVOCATION_NOT_SAVED: &str =
    "Token revoked on this gateway, but not yet saved: token store unavailable";

/// A revocation that failed, answered 503 in the endpoint's dialect (`reply`): either nothing was
/// revoked, or the token is refused already and only the saving waits.
pub fn revocation_failed(e: &RevokeError, reply: impl Fn(u16, &str) -> Reply) -> Outcome {
    match e {
        RevokeError::Store(e) => store_failed(e, reply(503, STORE_UNAVAILABLE)),
        // Already logged (ERROR, audit) where it happened.
        RevokeError::NotSaved(_) => retry_later(reply(503, REVOCATION_NOT_SAVED), "not_saved"),
    }
}

impl Outcome {
    pub fn new(reply: Reply, result: &'static str) -> Outcome {
        Outcome {
            reply,
            result,
            user: None,
        }
    }

    pub fn for_user(mut self, user: impl Into<String>) -> Outcome {
        self.user = Some(user.into());
        self
    }
}
