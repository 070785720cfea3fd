//! Forward-auth: which request an ingress asks about when it calls the decision endpoint.
//!
//! A proxy in front (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `ForwardAuth`, Caddy
//! `forward_auth`, Envoy `ext_authz`) sends authgate a request of its own and names the original
//! in headers, or, for Envoy, in the path. The decision is then made on that original exactly as
//! forwarding would make it. Two rules keep it the request the proxy will forward:
//! - every header that names the original must agree, and a repeated one is refused: a client
//!   may add a header the proxy does not overwrite;
//! - the original target must already be canonical (`target`): the proxy forwards it as the client
//!   sent it, so a path authgate would have had to rewrite (`/public/../admin`, `%2e`, `//`)
//!   could be read upstream another way than the one decided on.
//!
//! Only requests from `forwarding.trusted_proxies` are answered (the proxy layer checks).

use crate::target::{split_absolute, PathPolicy, RequestTarget, TargetError};
use http::{HeaderMap, Method};

/// nginx `auth_request` (the usual snippet) and ingress-nginx.
pub const X_ORIGINAL_URI: &str = "x-original-uri";
/// ingress-nginx `auth-url`: the whole URL.
pub const X_ORIGINAL_URL: &str = "x-original-url";
pub const X_ORIGINAL_METHOD: &str = "x-original-method";
/// Traefik `ForwardAuth`, Caddy `forward_auth`.
pub const X_FORWARDED_URI: &str = "x-forwarded-uri";
pub const X_FORWARDED_METHOD: &str = "x-forwarded-method";

/// The request the proxy asks about.
#[derive(Debug)]
pub struct Original {
    pub method: Method,
    pub target: RequestTarget,
    /// The query, after `?` (a route may carry its token there).
    pub query: Option<String>,
}

/// Why the original request cannot be named one way only (always a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginalError {
    #[error("no X-Original-URI, X-Original-URL or X-Forwarded-Uri names the original request")]
    NoTarget,
    #[error("no X-Original-Method or X-Forwarded-Method names the original method")]
    NoMethod,
    #[error("{0} is repeated")]
    Repeated(&'static str),
    #[error("the headers naming the original request disagree")]
    Disagree,
    #[error("the original method is not a valid method")]
    BadMethod,
    #[error("the original request target: {0}")]
    Target(#[from] TargetError),
    #[error("the original path is not canonical: the proxy would forward it as sent, and it can be read more than one way")]
    NotCanonical,
}

impl OriginalError {
    /// Low-cardinality label for the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginalError::NoTarget => "forward_auth_no_target",
            OriginalError::NoMethod => "forward_auth_no_method",
            OriginalError::Repeated(_) => "forward_auth_repeated_header",
            OriginalError::Disagree => "forward_auth_headers_disagree",
            OriginalError::BadMethod => "forward_auth_bad_method",
            OriginalError::Target(e) => e.as_str(),
            OriginalError::NotCanonical => "forward_auth_not_canonical",
        }
    }
}

/// The one value of header `name`, if present; a repeated one is an error.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h [u8]>, OriginalError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(OriginalError::Repeated(name));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// Every value present among `names` must be the same; that value, if any.
fn agreed<'h>(
    headers: &'h HeaderMap,
    names: &[&'static str],
    read: impl Fn(&'static str, &'h [u8]) -> Result<&'h [u8], OriginalError>,
) -> Result<Option<&'h [u8]>, OriginalError> {
    let mut found: Option<&[u8]> = None;
    for &name in names {
        if let Some(value) = single(headers, name)? {
            let value = read(name, value)?;
            match found {
                Some(earlier) if earlier != value => return Err(OriginalError::Disagree),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

/// A target as the proxy will forward it, parsed, and its query; refused unless already
/// canonical origin-form.
fn canonical_target(
    origin_form: &[u8],
    policy: &PathPolicy,
) -> Result<(RequestTarget, Option<String>), OriginalError> {
    if origin_form.first() != Some(&b'/') {
        return Err(TargetError::NotAPath.into());
    }
    let target = RequestTarget::parse(origin_form, policy)?;
    if target.rewritten().is_some() {
        return Err(OriginalError::NotCanonical);
    }
    // Header values and request lines are visible ASCII, so the query is text.
    let query = origin_form
        .iter()
        .position(|&b| b == b'?')
        .map(|at| String::from_utf8_lossy(&origin_form[at + 1..]).into_owned());
    Ok((target, query))
}

/// The original request named by `headers` (nginx, ingress-nginx, Traefik, Caddy).
pub fn from_headers(headers: &HeaderMap, policy: &PathPolicy) -> Result<Original, OriginalError> {
    // X-Original-URL holds scheme and host too: its path and query are compared.
    let target = agreed(
        headers,
        &[X_ORIGINAL_URI, X_ORIGINAL_URL, X_FORWARDED_URI],
        |name, value| match name {
            X_ORIGINAL_URL => Ok(split_absolute(value)?.1),
            _ => Ok(value),
        },
    )?
    .ok_or(OriginalError::NoTarget)?;
    let method = agreed(headers, &[X_ORIGINAL_METHOD, X_FORWARDED_METHOD], |_, v| {
        Ok(v)
    })?
    .ok_or(OriginalError::NoMethod)?;
    let (target, query) = canonical_target(if target.is_empty() { b"/" } else { target }, policy)?;
    Ok(Original {
        method: Method::from_bytes(method).map_err(|_| OriginalError::BadMethod)?,
        target,
        query,
    })
}

/// The original request of Envoy's `ext_authz` HTTP service: its path after the decision
/// endpoint's prefix (`raw_target` is the decision request's own, as sent), its method kept.
pub fn from_path(
    method: &Method,
    raw_target: &[u8],
    prefix: &str,
    policy: &PathPolicy,
) -> Result<Original, OriginalError> {
    let rest = raw_target
        .strip_prefix(prefix.as_bytes())
        .ok_or(OriginalError::NotCanonical)?;
    let (target, query) = canonical_target(rest, policy)?;
    Ok(Original {
        method: method.clone(),
        target,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn named(pairs: &[(&'static str, &str)]) -> Result<(Method, String), OriginalError> {
        let original = from_headers(&headers(pairs), &PathPolicy::default())?;
        Ok((original.method, original.target.path().to_string()))
    }

    #[test]
    fn each_proxy_form_names_the_original() {
        let post_hosts = Ok((Method::POST, "/api/hosts".to_string()));
        assert_eq!(
            named(&[
                (X_ORIGINAL_URI, "/api/hosts?x=1"),
                (X_ORIGINAL_METHOD, "POST")
            ]),
            post_hosts
        );
        assert_eq!(
            named(&[
                (X_ORIGINAL_URL, "https://gw.example/api/hosts?x=1"),
                (X_ORIGINAL_METHOD, "POST")
            ]),
            post_hosts
        );
        assert_eq!(
            named(&[
                (X_FORWARDED_URI, "/api/hosts"),
                (X_FORWARDED_METHOD, "POST"),
                ("x-forwarded-host", "gw.example"),
            ]),
            post_hosts
        );
        // ingress-nginx sends the URL and the URI together: they agree.
        assert_eq!(
            named(&[
                (X_ORIGINAL_URL, "http://gw.example/api/hosts"),
                (X_ORIGINAL_URI, "/api/hosts"),
                (X_ORIGINAL_METHOD, "POST")
            ]),
            post_hosts
        );
        let envoy = from_path(
            &Method::DELETE,
            b"/authgate/verify/api/hosts/7?force=1",
            "/authgate/verify",
            &PathPolicy::default(),
        )
        .unwrap();
        assert_eq!(
            (envoy.method, envoy.target.path()),
            (Method::DELETE, "/api/hosts/7")
        );
    }

    #[test]
    fn what_cannot_be_named_one_way_is_refused() {
        let get = (X_ORIGINAL_METHOD, "GET");
        assert_eq!(named(&[get]), Err(OriginalError::NoTarget));
        assert_eq!(
            named(&[(X_ORIGINAL_URI, "/a")]),
            Err(OriginalError::NoMethod)
        );
        assert_eq!(
            named(&[(X_ORIGINAL_URI, "/a"), (X_ORIGINAL_URI, "/b"), get]),
            Err(OriginalError::Repeated(X_ORIGINAL_URI))
        );
        assert_eq!(
            named(&[
                (X_ORIGINAL_URI, "/public"),
                (X_FORWARDED_URI, "/admin"),
                get
            ]),
            Err(OriginalError::Disagree)
        );
        assert_eq!(
            named(&[
                (X_ORIGINAL_URI, "/a"),
                (X_ORIGINAL_METHOD, "GET"),
                (X_FORWARDED_METHOD, "DELETE")
            ]),
            Err(OriginalError::Disagree)
        );
        for ambiguous in [
            "/public/../admin",
            "/api/%2e%2e/admin",
            "/a//b",
            "/%41",
            "/a;x=1",
        ] {
            assert!(
                named(&[(X_ORIGINAL_URI, ambiguous), get]).is_err(),
                "{ambiguous}"
            );
        }
        assert_eq!(
            named(&[(X_ORIGINAL_URI, "/a"), (X_ORIGINAL_METHOD, "G T")]),
            Err(OriginalError::BadMethod)
        );
        assert!(named(&[(X_ORIGINAL_URL, "ftp://x/a"), get]).is_err());
        assert_eq!(
            from_path(
                &Method::GET,
                b"/authgate/verify/a/../b",
                "/authgate/verify",
                &PathPolicy::default()
            )
            .map(|o| o.target.path().to_string()),
            Err(OriginalError::NotCanonical)
        );
    }
}
