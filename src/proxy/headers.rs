//! Header work: reading credentials, stripping what clients must not choose, adding ours.

use crate::auth::{CredentialSource, Credentials, Principal};
use crate::forwarded::AddressText;
use http::header::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::net::IpAddr;

pub const GWOS_API_TOKEN: &str = "gwos-api-token";
pub const GWOS_APP_NAME: &str = "gwos-app-name";
pub const LEGACY_APP_NAME: &str = "app-name";
/// ioGates' own token header.
pub const TOKEN: &str = "token";

// Pre-built names: looking a header up by `&str` parses and lowercases the name on every request.
static GWOS_API_TOKEN_NAME: HeaderName = HeaderName::from_static(GWOS_API_TOKEN);
static GWOS_APP_NAME_NAME: HeaderName = HeaderName::from_static(GWOS_APP_NAME);
static LEGACY_APP_NAME_NAME: HeaderName = HeaderName::from_static(LEGACY_APP_NAME);
static TOKEN_NAME: HeaderName = HeaderName::from_static(TOKEN);
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Stands in for a credential header that is not even text: it can never validate.
const UNREADABLE: &str = "\u{0}";

/// A header's trimmed value; `None` when absent or empty. A repeated header is unreadable: two
/// tokens leave no way to know which one the client meant.
fn single_value<'a>(req: &'a RequestHeader, name: &HeaderName) -> Option<&'a str> {
    let mut values = req.headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(UNREADABLE);
    }
    match std::str::from_utf8(first.as_bytes()) {
        Ok(v) => Some(v.trim()).filter(|v| !v.is_empty()),
        Err(_) => Some(UNREADABLE),
    }
}

/// What follows the scheme of an `Authorization` value, when the scheme is Bearer (any case).
fn after_bearer_scheme(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(req: &RequestHeader) -> Option<&str> {
    let value = single_value(req, &http::header::AUTHORIZATION)?;
    Some(after_bearer_scheme(value)?.trim()).filter(|t| !t.is_empty())
}

/// The token from, in this order, `GWOS-API-TOKEN`, `token`, `Authorization: Bearer`; the app name
/// from `GWOS-APP-NAME` or else the legacy `APP-NAME` (header names match in any case). With no
/// token at all, the source still says whether the client speaks ioGates (it always sends a
/// `token` header, empty before it logs in).
pub fn credentials(req: &RequestHeader) -> Credentials<'_> {
    let app_name =
        single_value(req, &GWOS_APP_NAME_NAME).or_else(|| single_value(req, &LEGACY_APP_NAME_NAME));
    let (token, source) = if let Some(t) = single_value(req, &GWOS_API_TOKEN_NAME) {
        (Some(t), CredentialSource::Gwos)
    } else if let Some(t) = single_value(req, &TOKEN_NAME) {
        (Some(t), CredentialSource::TokenHeader)
    } else if let Some(t) = bearer(req) {
        (Some(t), CredentialSource::Bearer)
    } else if req.headers.contains_key(&TOKEN_NAME) {
        (None, CredentialSource::TokenHeader)
    } else {
        (None, CredentialSource::Gwos)
    };
    Credentials {
        token,
        app_name,
        source,
    }
}

/// Headers some frameworks honour as the "real" method or URL. A reader's allowed `GET` must not
/// become a `DELETE` upstream, nor a checked path another one.
pub const OVERRIDE_HEADERS: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
];

/// What comes off every forwarded request, decided once at start-up: every spelling of the identity
/// headers (a client must not choose its identity), the method and URL override headers, the
/// configured extra names and, unless kept, the credentials authgate consumed: its token headers,
/// and an `Authorization` only when it is a Bearer token (another scheme may be the backend's own
/// business). One pass over the request's headers.
#[derive(Debug, Clone)]
pub struct Strip {
    names: Vec<String>,
    bearer: bool,
}

impl Strip {
    pub fn new(identity: &IdentityHeaders, keep_credentials: bool, extra: &[String]) -> Strip {
        let mut names: Vec<String> = identity.names().map(String::from).to_vec();
        names.extend(OVERRIDE_HEADERS.map(String::from));
        names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
        if !keep_credentials {
            names.extend([GWOS_API_TOKEN, GWOS_APP_NAME, LEGACY_APP_NAME, TOKEN].map(String::from));
        }
        Strip {
            names,
            bearer: !keep_credentials,
        }
    }

    pub fn apply(&self, req: &mut RequestHeader) {
        remove_all_spellings(req, &self.names);
        let is_bearer = |v: &HeaderValue| v.to_str().ok().and_then(after_bearer_scheme).is_some();
        if self.bearer
            && req
                .headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .any(is_bearer)
        {
            req.remove_header(&http::header::AUTHORIZATION);
        }
    }
}

/// Why a `Host` is ambiguous: an HTTP/1.1 request must carry exactly one (RFC 9112 §3.2), an
/// HTTP/1.0 request one at most. With two, we and the upstream could each pick another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no Host header")]
    Missing,
    #[error("more than one Host header")]
    Repeated,
}

pub fn check_host(req: &RequestHeader) -> Result<(), HostError> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(HostError::Repeated),
        (None, _) if req.version == http::Version::HTTP_11 => Err(HostError::Missing),
        _ => Ok(()),
    }
}

/// pingora accepts repeated identical `Content-Length` values (`3` twice, or `3, 3`) and reads the
/// body by that one length, but would forward them as they came. Send the upstream one value, so
/// that no upstream can frame the body another way.
pub fn collapse_content_length(req: &mut RequestHeader) -> pingora::Result<()> {
    let mut values = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let (Some(first), second) = (values.next(), values.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let single = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .map(String::from);
    match single {
        Some(length) => req.insert_header(http::header::CONTENT_LENGTH, length),
        None => Ok(()),
    }
}

/// Error bodies are JSON only when the client asks for exactly that.
pub fn wants_json(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::ACCEPT)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"application/json")
}

/// Header names compared the way CGI-style backends see them: `_` and `-` alike, any case.
fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let norm = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(x) == norm(y)
        })
}

/// Remove every header that is a spelling of one of `names`.
pub fn remove_all_spellings(req: &mut RequestHeader, names: &[impl AsRef<str>]) {
    // One scan; the names found kept on the stack (a request carries two or three of them; a
    // ninth waits for the next scan).
    loop {
        let mut found: [Option<HeaderName>; 8] = Default::default();
        let mut count = 0;
        for key in req.headers.keys() {
            if names.iter().any(|n| same_header(key.as_str(), n.as_ref())) {
                found[count] = Some(key.clone());
                count += 1;
                if count == found.len() {
                    break;
                }
            }
        }
        for name in found.iter().flatten() {
            req.remove_header(name);
        }
        if count < found.len() {
            return;
        }
    }
}

/// The identity headers the gateway sets for the upstream.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub role: HeaderName,
    pub app: HeaderName,
    pub share: HeaderName,
}

impl IdentityHeaders {
    /// The identity headers `principal` has a value for, as forwarded upstream (a GWOS token
    /// names no share, an ioGates one no app).
    pub fn present<'p>(
        &self,
        principal: &'p Principal,
    ) -> impl Iterator<Item = (&HeaderName, &'p str)> {
        self.all_of(Some(principal))
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
    }

    /// Every identity header, with `principal`'s value or empty. The decision endpoint answers
    /// all four, so that an ingress copying them from its answer sets each one, never keeping a
    /// client's own value (or, Caddy 2.6, the text of its unresolved placeholder).
    pub fn all_of<'p>(&self, principal: Option<&'p Principal>) -> [(&HeaderName, &'p str); 4] {
        [
            (&self.user, principal.map_or("", Principal::subject)),
            (&self.role, principal.map_or("", Principal::role_label)),
            (&self.app, principal.map_or("", Principal::app_name)),
            (
                &self.share,
                principal.and_then(Principal::share_id).unwrap_or(""),
            ),
        ]
    }

    pub fn names(&self) -> [&str; 4] {
        [
            self.user.as_str(),
            self.role.as_str(),
            self.app.as_str(),
            self.share.as_str(),
        ]
    }
}

/// Where the request came from, as the forwarding headers tell the upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// The connection's peer.
    pub peer: Option<IpAddr>,
    /// The client as resolved (`forwarded::client_address`).
    pub client: Option<IpAddr>,
    /// The peer is a trusted proxy: its forwarding headers are extended, not replaced.
    pub trusted_peer: bool,
    /// The scheme of the downstream connection.
    pub scheme: &'static str,
}

/// `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`.
/// From an untrusted peer every client-sent value is replaced (`Forwarded` removed); a trusted
/// proxy's chain is extended with its address, and its `-Proto` and `-Host` kept.
pub fn add_forwarded(req: &mut RequestHeader, origin: Origin) -> pingora::Result<()> {
    let prior = origin
        .trusted_peer
        .then(|| joined_values(req, &X_FORWARDED_FOR))
        .flatten();
    // Formatted once: from an untrusted peer the client is the peer, and a clone shares the bytes.
    let peer = origin.peer.map(address_value);
    match (origin.peer, &peer, prior) {
        (Some(ip), _, Some(prior)) => {
            req.insert_header(wire(&X_FORWARDED_FOR), format!("{prior}, {ip}"))?
        }
        (_, Some(value), None) => req.insert_header(wire(&X_FORWARDED_FOR), value.clone())?,
        _ if !origin.trusted_peer => {
            req.remove_header(&X_FORWARDED_FOR);
        }
        _ => {}
    }
    let client = match (origin.client, peer) {
        (Some(client), Some(peer)) if Some(client) == origin.peer => Some(peer),
        (client, _) => client.map(address_value),
    };
    match client {
        Some(client) => req.insert_header(wire(&X_REAL_IP), client)?,
        None => {
            req.remove_header(&X_REAL_IP);
        }
    }
    if !origin.trusted_peer {
        req.remove_header(&http::header::FORWARDED);
    }
    if !(origin.trusted_peer && req.headers.contains_key(&X_FORWARDED_PROTO)) {
        req.insert_header(wire(&X_FORWARDED_PROTO), origin.scheme)?;
    }
    if !(origin.trusted_peer && req.headers.contains_key(&X_FORWARDED_HOST)) {
        match req.headers.get(http::header::HOST).cloned() {
            Some(host) => req.insert_header(wire(&X_FORWARDED_HOST), host)?,
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }
    Ok(())
}

/// A name as pingora 0.9 inserts it cheapest: a `HeaderName` it copies into a case-preserving
/// form and parses back, a `&'static str` it only parses.
fn wire(name: &'static HeaderName) -> &'static str {
    name.as_str()
}

fn address_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(AddressText::new(ip).as_str()).expect("an address is a header value")
}

/// Every value of a header, in order, joined with ", " (`None` when absent or not text).
fn joined_values(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let mut joined: Option<String> = None;
    for value in req.headers.get_all(name) {
        let value = value.to_str().ok()?.trim();
        if value.is_empty() {
            continue;
        }
        match &mut joined {
            Some(j) => {
                j.push_str(", ");
                j.push_str(value);
            }
            None => joined = Some(value.to_string()),
        }
    }
    joined
}

/// The `X-Forwarded-For` values of a request, in order (for [`crate::forwarded::client_address`]).
pub fn forwarded_for(req: &RequestHeader) -> impl DoubleEndedIterator<Item = &str> {
    req.headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The CORS headers for an allowed origin.
pub fn cors_headers(origin: &HeaderValue) -> [(HeaderName, HeaderValue); 4] {
    use http::header::*;
    [
        (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
        (
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Content-Type,X-Requested-With,Access,GWOS-API-TOKEN,GWOS-APP-NAME,APP-NAME,token,Authorization",
            ),
        ),
        (
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,PUT,POST,DELETE,OPTIONS"),
        ),
        (
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn twenty_spellings_are_all_stripped() {
        let mut r = req(&[]);
        for i in 0..20 {
            r.append_header(format!("x-strip-{i}"), "v").unwrap();
        }
        r.append_header("x-keep", "v").unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("X_STRIP_{i}")).collect();
        remove_all_spellings(&mut r, &names);
        assert_eq!(r.headers.len(), 1);
        assert!(r.headers.contains_key("x-keep"));
    }

    #[test]
    fn credentials_any_case_legacy_app_name_and_empty_values() {
        let r = req(&[("Gwos-Api-Token", " t "), ("APP-NAME", "legacy")]);
        let c = credentials(&r);
        assert_eq!((c.token, c.app_name), (Some("t"), Some("legacy")));
        let r = req(&[
            ("GWOS-API-TOKEN", "t"),
            ("GWOS-APP-NAME", ""),
            ("app-name", "x"),
        ]);
        assert_eq!(credentials(&r).app_name, Some("x"));
        let r = req(&[("GWOS-API-TOKEN", "")]);
        assert_eq!(credentials(&r).token, None);
        let r = req(&[("GWOS-API-TOKEN", "a"), ("gwos-api-token", "b")]);
        assert_eq!(credentials(&r).token, Some(UNREADABLE));
    }

    #[test]
    fn iogates_token_header_and_bearer_in_order() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, CredentialSource);
        let cases: [Case; 5] = [
            (
                &[("token", "t1"), ("Authorization", "Bearer t2")],
                Some("t1"),
                CredentialSource::TokenHeader,
            ),
            (
                &[("token", ""), ("Authorization", "bearer  t2 ")],
                Some("t2"),
                CredentialSource::Bearer,
            ),
            (
                &[("GWOS-API-TOKEN", "g"), ("token", "t1")],
                Some("g"),
                CredentialSource::Gwos,
            ),
            (&[("token", "")], None, CredentialSource::TokenHeader),
            (
                &[("Authorization", "Basic dTpw")],
                None,
                CredentialSource::Gwos,
            ),
        ];
        for (headers, token, source) in cases {
            let r = req(headers);
            let c = credentials(&r);
            assert_eq!((c.token, c.source), (token, source), "{headers:?}");
        }
    }

    fn identity() -> IdentityHeaders {
        let name = HeaderName::from_static;
        IdentityHeaders {
            user: name("x-authgate-user"),
            role: name("x-authgate-role"),
            app: name("x-authgate-app"),
            share: name("x-authgate-share"),
        }
    }

    #[test]
    fn only_bearer_authorization_is_removed() {
        let strip = Strip::new(&identity(), false, &[]);
        let mut r = req(&[("Authorization", "Basic dTpw"), ("token", "t")]);
        strip.apply(&mut r);
        assert_eq!(r.headers.len(), 1);
        let mut r = req(&[("Authorization", "Bearer x"), ("GWOS_API_TOKEN", "t")]);
        strip.apply(&mut r);
        assert!(r.headers.is_empty());
        let mut r = req(&[
            ("Authorization", "Basic dTpw"),
            ("Authorization", "bearer x"),
        ]);
        strip.apply(&mut r);
        assert!(r.headers.is_empty(), "a Bearer among several goes too");
    }

    #[test]
    fn kept_credentials_stay_but_identity_never_does() {
        let strip = Strip::new(&identity(), true, &[]);
        let mut r = req(&[
            ("Authorization", "Bearer x"),
            ("GWOS-API-TOKEN", "t"),
            ("X-Authgate-Role", "admin"),
        ]);
        strip.apply(&mut r);
        assert_eq!(r.headers.len(), 2);
        assert!(!r.headers.contains_key("x-authgate-role"));
    }

    #[test]
    fn override_headers_and_configured_names_are_removed() {
        let strip = Strip::new(&identity(), true, &["X-Internal".into()]);
        let mut r = req(&[
            ("X-HTTP-Method-Override", "DELETE"),
            ("x_http_method", "DELETE"),
            ("X-Method-Override", "PUT"),
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-Url", "/admin"),
            ("X-Original-Method", "DELETE"),
            ("x_internal", "1"),
            ("X-Kept", "1"),
        ]);
        strip.apply(&mut r);
        let left: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn identity_spellings_are_all_removed() {
        let mut r = req(&[
            ("X-Authgate-User", "a"),
            ("x_authgate_user", "b"),
            ("X_AUTHGATE-USER", "c"),
            ("X-Authgate-Users", "keep"),
        ]);
        remove_all_spellings(&mut r, &["x-authgate-user"]);
        assert_eq!(r.headers.len(), 1);
        assert!(r.headers.contains_key("x-authgate-users"));
    }

    #[test]
    fn json_only_for_exact_accept() {
        assert!(wants_json(&req(&[("Accept", "application/json")])));
        assert!(!wants_json(&req(&[(
            "Accept",
            "application/json, text/plain"
        )])));
        assert!(!wants_json(&req(&[])));
    }
}
