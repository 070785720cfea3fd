//! The wire contracts authgate answers itself (`../shared/spec/`), and nothing else.

pub mod form;
pub mod gwos;
pub mod iogates;
pub mod revocation;

use crate::proxy::reply::Reply;
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
