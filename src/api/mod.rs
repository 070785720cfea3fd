//! The wire contracts authgate answers itself (`../shared/spec/`), and nothing else.

pub mod form;
pub mod gwos;
pub mod iogates;
pub mod revocation;

use crate::auth::guard::Limited;
use crate::auth::RevokeError;
use crate::reply::{Failure, Format, Reply};
use crate::store::StoreError;

/// What an auth endpoint answered, and what the access and audit logs should say of it.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// Low-cardinality result class, e.g. `success`, `bad_credentials`, `bad_request`.
    pub result: &'static str,
    /// The user concerned, as resolved (`unknown_user_label` when it matched none); never a
    /// secret.
    pub user: Option<String>,
}

/// How audit and access lines name a user field that matched no user: never as typed (people
/// type passwords there), but as a label that is the same for the same text within this process,
/// so that a flood can still be followed. Keyed with a secret of this process: the label cannot
/// be reversed by hashing a dictionary.
pub fn unknown_user_label(given: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::sync::OnceLock;
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        use rand::TryRngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .expect("the OS random source is available");
        key
    });
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(given.as_bytes())
        .finalize();
    format!("unknown-{}", hex::encode(&digest[..4]))
}

/// The token store failed: nothing was done. Logged here, answered in the endpoint's dialect.
pub fn store_failed(e: &StoreError, format: Format) -> Outcome {
    Outcome::failed(Failure::StoreUnavailable, format, e)
}

/// A login refused by a limit: 429 with the `Retry-After` it computed; the limit is the result
/// (for the audit event and `authgate_logins_total`).
pub fn login_limited(limited: &Limited, format: Format) -> Outcome {
    let reply = Failure::RateLimited.reply(format).with_header(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(limited.retry_after_secs()),
    );
    Outcome::new(reply, limited.limit.as_str())
}

/// A revocation that failed: either nothing was revoked, or the token is refused already and
/// only the saving waits (`RevokeError::NotSaved`, logged where it happened).
pub fn revocation_failed(e: &RevokeError, format: Format) -> Outcome {
    match e {
        RevokeError::Store(e) => store_failed(e, format),
        RevokeError::NotSaved(_) => Outcome::of(Failure::RevocationNotSaved, format),
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

    /// A failure of the gateway's own, answered with its standard text and labelled by its row.
    pub fn of(failure: Failure, format: Format) -> Outcome {
        Outcome::new(failure.reply(format), failure.label())
    }

    /// The same, with its `cause` logged at the failure's level.
    pub fn failed(failure: Failure, format: Format, cause: &dyn std::fmt::Display) -> Outcome {
        failure.log(cause);
        Outcome::of(failure, format)
    }

    /// The client's request cannot be read; `body` is the contract's exact answer.
    pub fn bad_request(format: Format, body: &str) -> Outcome {
        let failure = Failure::BadRequest;
        Outcome::new(failure.reply_saying(format, body), failure.label())
    }

    pub fn for_user(mut self, user: impl Into<String>) -> Outcome {
        self.user = Some(user.into());
        self
    }
}
