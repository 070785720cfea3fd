//! Responses the gateway writes itself (status, headers, exact body), and the one place where
//! denials become status codes. No pingora type: `proxy::respond` writes a `Reply` to a session.

use crate::auth::{CredentialSource, Denial};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

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
            (_, Denial::Unavailable) => Reply::text(503, "Token store unavailable")
                .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1")),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
