//! Responses the gateway writes itself (status, headers, exact body), and the one place where
//! failures and denials become statuses, headers, metric labels and log levels. No pingora
//! type: `proxy::respond` writes a `Reply` to a session.
//!
//! - `Failure`: the gateway could not do what was asked, for a reason of its own (a body it cannot
//!   read, a store or an upstream that does not answer). One row per class.
//! - `Denial` (`Reply::denial`): a forwarded request refused for its credentials, answered in the
//!   dialect of the header the token came in, as each protocol's clients expect.
//! - The wire contracts' own answers (bad credentials, unknown token, the spec's exact bodies)
//!   stay with the contracts in `api`.

use crate::auth::{CredentialSource, Denial};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use tracing::Level;

/// How an endpoint writes its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GWOS: `text/plain`, the exact text.
    Text,
    /// ioGates: `{"message": …}`.
    Json,
}

/// Every class of failure that is the gateway's, not a protocol's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request cannot be read as sent: a malformed body or form, a refused target.
    BadRequest,
    /// A body over the configured limit.
    TooLarge,
    /// Too many logins already waiting for a password check (the pool's bound).
    Overloaded,
    /// A login limit: too many attempts from a client or for a user, or a lockout. The reply
    /// carries the `Retry-After` its limit computed.
    RateLimited,
    /// The token store cannot be read or written: nothing was done.
    StoreUnavailable,
    /// A revocation enforced in memory that the store could not save yet.
    RevocationNotSaved,
    /// The upstream could not be reached, or broke off.
    UpstreamDown,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// An error with no better class (a bug).
    Internal,
}

/// One row of the map.
struct Row {
    status: u16,
    /// The `result` of access and audit logs and of `authgate_logins_total`.
    label: &'static str,
    /// Whether the client may retry in a second (`Retry-After: 1`).
    retry: bool,
    level: Level,
    text: &'static str,
}

impl Failure {
    const fn row(self) -> Row {
        let (status, label, retry, level, text) = match self {
            Failure::BadRequest => (400, "bad_request", false, Level::DEBUG, "Bad Request"),
            Failure::TooLarge => (
                413,
                "too_large",
                false,
                Level::DEBUG,
                "Request body too large",
            ),
            // Counted (authgate_password_verifications_rejected_total) and said in the flood
            // report's summary line: one line each would be a log flood under attack.
            Failure::Overloaded => (
                503,
                "overloaded",
                true,
                Level::DEBUG,
                "Too many logins in progress, retry shortly",
            ),
            Failure::RateLimited => (
                429,
                "rate_limited",
                false,
                Level::DEBUG,
                "Too many login attempts, retry later",
            ),
            Failure::StoreUnavailable => (
                503,
                "store_error",
                true,
                Level::ERROR,
                "Token store unavailable",
            ),
            Failure::RevocationNotSaved => (
                503,
                "not_saved",
                true,
                Level::ERROR,
                "Token revoked on this gateway, but not yet saved: token store unavailable",
            ),
            Failure::UpstreamDown => (
                502,
                "upstream_down",
                false,
                Level::WARN,
                "Bad Gateway: upstream unavailable",
            ),
            Failure::UpstreamTimeout => (
                504,
                "upstream_timeout",
                false,
                Level::WARN,
                "Gateway Timeout: upstream too slow",
            ),
            Failure::Internal => (
                500,
                "internal",
                false,
                Level::ERROR,
                "Internal Server Error",
            ),
        };
        Row {
            status,
            label,
            retry,
            level,
            text,
        }
    }

    pub fn status(self) -> u16 {
        self.row().status
    }

    pub fn label(self) -> &'static str {
        self.row().label
    }

    /// The standard text of this failure.
    pub fn text(self) -> &'static str {
        self.row().text
    }

    pub fn reply(self, format: Format) -> Reply {
        self.reply_saying(format, self.text())
    }

    /// With a body of the endpoint's own (a contract's exact text).
    pub fn reply_saying(self, format: Format, body: &str) -> Reply {
        let row = self.row();
        let reply = match format {
            Format::Text => Reply::text(row.status, body.to_string()),
            Format::Json => Reply::message(row.status, body),
        };
        if row.retry {
            reply.with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
        } else {
            reply
        }
    }

    /// 400 saying why the request cannot be read one way: "Bad Request: <why>".
    pub fn bad_request(format: Format, why: &dyn std::fmt::Display) -> Reply {
        Failure::BadRequest.reply_saying(format, &format!("Bad Request: {why}"))
    }

    /// Log its cause at this failure's level.
    pub fn log(self, cause: &dyn std::fmt::Display) {
        let (label, level) = (self.label(), self.row().level);
        match level {
            Level::ERROR => tracing::error!(failure = label, cause = %cause),
            Level::WARN => tracing::warn!(failure = label, cause = %cause),
            Level::INFO => tracing::info!(failure = label, cause = %cause),
            _ => tracing::debug!(failure = label, cause = %cause),
        }
    }
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

/// A complete local response: status, type, exact body, extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A JSON body; fields come out in the order the value declares them.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: Bytes::from(serde_json::to_vec(value).expect("plain data always serialises")),
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply::text(status, Bytes::new())
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// Responses that carry or concern tokens must not be cached by anyone.
    pub fn no_store(self) -> Reply {
        self.with_header(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        )
    }

    /// 405 for an auth endpoint called with the wrong method.
    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply::text(405, "Method Not Allowed")
            .with_header(http::header::ALLOW, HeaderValue::from_static(allow))
    }

    /// ioGates-style error: `{"message": ...}`.
    pub fn message(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "message": message }))
    }

    /// The answer to a refused forwarded request, in the dialect of the header the token came in.
    /// GWOS clients log in again on 401, so every bad GWOS token is 401 (never 403 or 400); only a
    /// token without an app name is 400. ioGates answers are JSON, with 403 for "authenticated, not
    /// allowed".
    pub fn denial(denial: Denial, source: CredentialSource, wants_json: bool) -> Reply {
        let reply = match (source, denial) {
            (_, Denial::OutOfScope) => Reply::message(403, "Not allowed by this share"),
            (_, Denial::Unavailable) => Failure::StoreUnavailable.reply(Format::Text),
            (CredentialSource::Gwos, denial) => {
                let (status, reason, text) = match denial {
                    Denial::MissingAppName => (400, "Bad Request", "Missing GWOS-APP-NAME"),
                    Denial::Missing => (401, "Unauthorized", "Missing GWOS-API-TOKEN"),
                    Denial::Forbidden => (401, "Unauthorized", "Not allowed for this role"),
                    _ => (401, "Unauthorized", "Invalid GWOS-API-TOKEN"),
                };
                if wants_json {
                    Reply::json(
                        status,
                        &serde_json::json!({ "error": reason, "status": status }),
                    )
                } else {
                    Reply::text(status, text)
                }
            }
            (_, Denial::MissingAppName) => {
                Reply::message(400, "Missing GWOS-APP-NAME for a GWOS token")
            }
            (_, Denial::Forbidden) => Reply::message(403, "Not allowed for this account"),
            (_, Denial::Missing) => Reply::message(401, "Missing token").with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            ),
            (_, _) => Reply::message(401, "Invalid token").with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            ),
        };
        reply.no_store()
    }

    /// The decision endpoint's answer to a refused request. An ingress passes it on to the client,
    /// and nginx's `auth_request` takes only 401 and 403 as a denial (any other status is its own
    /// 500), so every credential problem is a 401 with a challenge, role and share scope are 403,
    /// and a store outage is a 503. Plain text: the proxy, not a GWOS client, reads it first.
    pub fn decision_denied(denial: Denial) -> Reply {
        let challenge = || HeaderValue::from_static("Bearer realm=\"authgate\"");
        let reply = match denial {
            Denial::Unavailable => Failure::StoreUnavailable.reply(Format::Text),
            Denial::Forbidden => Reply::text(403, "Forbidden: not allowed for this account"),
            Denial::OutOfScope => Reply::text(403, "Forbidden: not allowed by this share"),
            Denial::Missing => Reply::text(401, "Unauthorized: no token")
                .with_header(http::header::WWW_AUTHENTICATE, challenge()),
            Denial::MissingAppName => Reply::text(401, "Unauthorized: missing GWOS-APP-NAME")
                .with_header(http::header::WWW_AUTHENTICATE, challenge()),
            Denial::Invalid | Denial::Expired | Denial::AppMismatch => {
                Reply::text(401, "Unauthorized: invalid token")
                    .with_header(http::header::WWW_AUTHENTICATE, challenge())
            }
        };
        reply.no_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_answer_by_their_row_in_either_dialect() {
        let r = Failure::StoreUnavailable.reply(Format::Json);
        assert_eq!(r.status, 503);
        assert_eq!(
            r.body,
            Bytes::from_static(br#"{"message":"Token store unavailable"}"#)
        );
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == http::header::RETRY_AFTER && v == "1"));
        let r = Failure::BadRequest.reply_saying(Format::Text, "Invalid gwos-api-token");
        assert_eq!((r.status, r.content_type), (400, TEXT));
        assert!(
            r.headers.is_empty(),
            "no Retry-After for the client's own mistake"
        );
        assert_eq!(Failure::UpstreamTimeout.status(), 504);
        assert_eq!(Failure::UpstreamDown.status(), 502);
    }

    #[test]
    fn denials_follow_the_gwos_contract() {
        let gwos = |d| Reply::denial(d, CredentialSource::Gwos, false).status;
        assert_eq!(gwos(Denial::Missing), 401);
        assert_eq!(gwos(Denial::Invalid), 401);
        assert_eq!(gwos(Denial::AppMismatch), 401);
        assert_eq!(gwos(Denial::Forbidden), 401);
        assert_eq!(gwos(Denial::MissingAppName), 400);
        assert_eq!(
            Reply::denial(Denial::Expired, CredentialSource::Gwos, true).body,
            Bytes::from_static(br#"{"error":"Unauthorized","status":401}"#)
        );
        assert_eq!(
            Reply::denial(Denial::MissingAppName, CredentialSource::Gwos, true).body,
            Bytes::from_static(br#"{"error":"Bad Request","status":400}"#)
        );
    }

    #[test]
    fn decisions_deny_with_what_every_ingress_understands() {
        let status = |d| Reply::decision_denied(d).status;
        for credential in [
            Denial::Missing,
            Denial::MissingAppName,
            Denial::Invalid,
            Denial::Expired,
            Denial::AppMismatch,
        ] {
            let r = Reply::decision_denied(credential);
            assert_eq!(r.status, 401, "{credential:?}");
            assert!(r
                .headers
                .iter()
                .any(|(k, _)| k == http::header::WWW_AUTHENTICATE));
        }
        assert_eq!(status(Denial::Forbidden), 403);
        assert_eq!(status(Denial::OutOfScope), 403);
        assert_eq!(status(Denial::Unavailable), 503);
    }

    #[test]
    fn denials_in_the_iogates_dialect() {
        let r = Reply::denial(Denial::Invalid, CredentialSource::TokenHeader, false);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body,
            Bytes::from_static(br#"{"message":"Invalid token"}"#)
        );
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == http::header::WWW_AUTHENTICATE && v == "Bearer"));
        assert_eq!(
            Reply::denial(Denial::Forbidden, CredentialSource::Bearer, false).status,
            403
        );
        assert_eq!(
            Reply::denial(Denial::OutOfScope, CredentialSource::Gwos, false).status,
            403
        );
    }
}
