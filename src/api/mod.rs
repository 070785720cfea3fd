//! The wire contracts authgate answers itself (`../shared/spec/`), and nothing else.

pub mod form;
pub mod gwos;
pub mod iogates;
pub mod revocation;

use crate::proxy::reply::Reply;

/// What an auth endpoint answered, and what the access and audit logs should say of it.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// Low-cardinality result class, e.g. `success`, `bad_credentials`, `bad_request`.
    pub result: &'static str,
    /// The user concerned, as resolved (or as typed when unknown); never a secret.
    pub user: Option<String>,
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
