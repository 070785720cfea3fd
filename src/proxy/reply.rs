//! Responses the gateway writes itself, and the one place where denials become status codes.

use crate::auth::Denial;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

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

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: Bytes::from(value.to_string()),
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

    /// The answer to a refused forwarded request. GWOS clients log in again on 401, so every bad
    /// token is 401 (never 403 or 400); only a token without an app name is 400.
    pub fn denial(denial: Denial, wants_json: bool) -> Reply {
        let (status, reason, text) = match denial {
            Denial::MissingAppName => (400, "Bad Request", "Missing GWOS-APP-NAME"),
            Denial::Missing => (401, "Unauthorized", "Missing GWOS-API-TOKEN"),
            Denial::Invalid | Denial::Expired | Denial::AppMismatch => {
                (401, "Unauthorized", "Invalid GWOS-API-TOKEN")
            }
            Denial::Forbidden => (401, "Unauthorized", "Not allowed for this role"),
            Denial::Unavailable => (503, "Service Unavailable", "Token store unavailable"),
        };
        let reply = if wants_json {
            Reply::json(
                status,
                &serde_json::json!({ "error": reason, "status": status }),
            )
        } else {
            Reply::text(status, text)
        };
        let reply = reply.no_store();
        if denial == Denial::Unavailable {
            reply.with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
        } else {
            reply
        }
    }

    /// Write it with Content-Length, so the connection stays usable (never `respond_error`).
    pub async fn write(
        self,
        session: &mut Session,
        extra: &[(HeaderName, HeaderValue)],
    ) -> pingora::Result<()> {
        let mut header =
            ResponseHeader::build(self.status, Some(4 + self.headers.len() + extra.len()))?;
        header.insert_header(http::header::CONTENT_TYPE, self.content_type)?;
        header.set_content_length(self.body.len())?;
        for (name, value) in self.headers.into_iter().chain(extra.iter().cloned()) {
            header.append_header(name, value)?;
        }
        let head_only = session.req_header().method == http::Method::HEAD || self.body.is_empty();
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_follow_the_gwos_contract() {
        assert_eq!(Reply::denial(Denial::Missing, false).status, 401);
        assert_eq!(Reply::denial(Denial::Invalid, false).status, 401);
        assert_eq!(Reply::denial(Denial::AppMismatch, false).status, 401);
        assert_eq!(Reply::denial(Denial::Forbidden, false).status, 401);
        assert_eq!(Reply::denial(Denial::MissingAppName, false).status, 400);
        assert_eq!(
            Reply::denial(Denial::Expired, true).body,
            Bytes::from_static(br#"{"error":"Unauthorized","status":401}"#)
        );
        assert_eq!(
            Reply::denial(Denial::MissingAppName, true).body,
            Bytes::from_static(br#"{"error":"Bad Request","status":400}"#)
        );
    }
}
