//! Tokens carried in the URL (ioGates transfers): where a route has its token, found on the
//! canonical path or in the query, and the path with the token hidden for every log line.
//!
//! A route is a path pattern of segments: a literal, `*` for any one segment, `{token}` for the
//! token's own segment, and a final `**` for any rest (`/upload/tus/{token}/**`); or a pattern
//! with a query parameter that holds the token (`/handlers/upload.php` with `token`).

use std::borrow::Cow;
use std::ops::Range;

/// What a share token needs on a route, whatever the method (a tus `HEAD` asks for an upload's
/// offset: it is part of uploading, not a download).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// The share's own rule: reads need a download permission, writes `upload`.
    #[default]
    Method,
    Upload,
    /// `master` or `converted`.
    Download,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    Token,
    Rest,
}

/// One route's place for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    /// The query parameter holding the token, instead of a `{token}` segment.
    query: Option<String>,
    pub permission: Permission,
    pub options: OptionsAnswer,
}

/// Who answers an `OPTIONS` request on a route: authgate's CORS preflight, or the upstream (tus
/// discovery: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`), after the URL token is decided on
/// like any other request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptionsAnswer {
    #[default]
    Preflight,
    Upstream,
}

/// A route that carries its token in the URL, matched by a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The token; `None` when a query route's parameter is absent or empty (a header token may
    /// still be given).
    pub token: Option<Cow<'a, str>>,
    /// What a share token needs on this route, wherever the token came from.
    pub permission: Permission,
}

/// Why a request names no single token (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlTokenError {
    #[error("the token parameter is repeated in the query")]
    Repeated,
    #[error("the header and URL tokens differ")]
    Differs,
}

impl UrlTokenError {
    /// Low-cardinality label for the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlTokenError::Repeated => "url_token_repeated",
            UrlTokenError::Differs => "url_token_differs",
        }
    }
}

impl Pattern {
    /// Parse `path` (with `query`, the parameter that holds the token); the reason otherwise.
    pub fn parse(
        path: &str,
        query: Option<&str>,
        permission: Permission,
        options: OptionsAnswer,
    ) -> Result<Pattern, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("{path:?} does not start with /"));
        };
        let segments: Vec<Segment> = rest
            .split('/')
            .map(|s| match s {
                "*" => Segment::Any,
                "**" => Segment::Rest,
                "{token}" => Segment::Token,
                literal => Segment::Literal(literal.to_string()),
            })
            .collect();
        let tokens = segments.iter().filter(|s| **s == Segment::Token).count();
        if segments[..segments.len() - 1].contains(&Segment::Rest) {
            return Err(format!("{path:?}: ** may only end a pattern"));
        }
        if segments.iter().any(
            |s| matches!(s, Segment::Literal(l) if l.is_empty() || l.contains(['{', '}', '*'])),
        ) {
            return Err(format!("{path:?}: an empty or malformed segment"));
        }
        match (tokens, query) {
            (1, None) | (0, Some(_)) => Ok(Pattern {
                segments,
                query: query.map(String::from),
                permission,
                options,
            }),
            _ => Err(format!(
                "{path:?}: exactly one place for the token, a {{token}} segment or a query parameter"
            )),
        }
    }

    /// Where the pattern's `{token}` is in `path`, if the path matches; `Some(None)` for a
    /// matching query pattern.
    fn matches(&self, path: &str) -> Option<Option<Range<usize>>> {
        let mut at = 1; // after the leading '/'
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut token = None;
        for segment in &self.segments {
            if *segment == Segment::Rest {
                return Some(token);
            }
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if literal != part => return None,
                Segment::Token if part.is_empty() => return None,
                Segment::Token => token = Some(at..at + part.len()),
                _ => {}
            }
            at += part.len() + 1;
        }
        parts.next().is_none().then_some(token)
    }
}

/// Every route's pattern, in the configured order (the first that matches wins).
#[derive(Debug, Clone, Default)]
pub struct UrlTokens {
    patterns: Vec<Pattern>,
}

impl UrlTokens {
    pub fn new(patterns: Vec<Pattern>) -> UrlTokens {
        UrlTokens { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The route `path` is on, if it is on one that carries its token in the URL, and the token
    /// there.
    pub fn find<'a>(
        &self,
        path: &'a str,
        query: Option<&'a str>,
    ) -> Option<Result<Found<'a>, UrlTokenError>> {
        let (pattern, place) = self
            .patterns
            .iter()
            .find_map(|pattern| Some((pattern, pattern.matches(path)?)))?;
        let token = match (place, &pattern.query) {
            (Some(range), _) => Some(Cow::Borrowed(&path[range])),
            (None, Some(name)) => match query_value(query.unwrap_or_default(), name) {
                Some(Err(refused)) => return Some(Err(refused)),
                Some(Ok(value)) => Some(value).filter(|v| !v.is_empty()),
                None => None,
            },
            (None, None) => None,
        };
        Some(Ok(Found {
            token,
            permission: pattern.permission,
        }))
    }

    /// Whether the upstream answers `OPTIONS` on `path` (the first route that matches says).
    pub fn options_go_upstream(&self, path: &str) -> bool {
        self.patterns
            .iter()
            .find(|pattern| pattern.matches(path).is_some())
            .is_some_and(|pattern| pattern.options == OptionsAnswer::Upstream)
    }

    /// `path` with a `{token}` segment replaced by `{token}`, for every log line.
    pub fn redact<'a>(&self, path: &'a str) -> Cow<'a, str> {
        for pattern in &self.patterns {
            if let Some(Some(range)) = pattern.matches(path) {
                let mut hidden = String::with_capacity(path.len());
                hidden.push_str(&path[..range.start]);
                hidden.push_str("{token}");
                hidden.push_str(&path[range.end..]);
                return Cow::Owned(hidden);
            }
        }
        Cow::Borrowed(path)
    }
}

/// The one value of parameter `name` in a raw query (form-decoded); repeated: an error.
fn query_value<'a>(query: &'a str, name: &str) -> Option<Result<Cow<'a, str>, UrlTokenError>> {
    let mut values = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value);
    let first = values.next()?;
    Some(match values.next() {
        Some(_) => Err(UrlTokenError::Repeated),
        None => Ok(first),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> UrlTokens {
        let p = |path, query, permission| {
            Pattern::parse(path, query, permission, OptionsAnswer::Preflight).unwrap()
        };
        UrlTokens::new(vec![
            p("/api/authinfo/{token}", None, Permission::Upload),
            p("/upload/tus/{token}/**", None, Permission::Upload),
            p(
                "/download-file/*/*/*/*/*/{token}",
                None,
                Permission::Download,
            ),
            p("/handlers/upload.php", Some("token"), Permission::Upload),
        ])
    }

    fn token(path: &str, query: Option<&str>) -> Option<String> {
        routes()
            .find(path, query)
            .and_then(|found| found.unwrap().token)
            .map(Cow::into_owned)
    }

    #[test]
    fn each_iogates_place_gives_its_token() {
        assert_eq!(token("/api/authinfo/T1", None).as_deref(), Some("T1"));
        assert_eq!(token("/upload/tus/T2", None).as_deref(), Some("T2"));
        assert_eq!(token("/upload/tus/T2/abc123", None).as_deref(), Some("T2"));
        assert_eq!(
            token("/download-file/77/0/0/1/0/T3", None).as_deref(),
            Some("T3")
        );
        assert_eq!(
            token("/handlers/upload.php", Some("name=a&token=T%2D4")).as_deref(),
            Some("T-4")
        );
        assert_eq!(token("/handlers/upload.php", Some("name=a")), None);
        assert_eq!(token("/handlers/upload.php", Some("token=")), None, "empty");
        // The route's permission holds for a header token too.
        let on_route = routes().find("/handlers/upload.php", None).unwrap();
        assert_eq!(on_route.unwrap().permission, Permission::Upload);
        assert_eq!(token("/download-file/77/0/0/1/T3", None), None, "too short");
        assert_eq!(
            token("/download-file/77/0/0/1/0/T3/x", None),
            None,
            "too long"
        );
        assert_eq!(token("/api/authinfo/", None), None, "an empty token");
        assert_eq!(token("/api/other/T1", None), None);
        assert_eq!(
            routes().find("/handlers/upload.php", Some("token=a&token=b")),
            Some(Err(UrlTokenError::Repeated))
        );
    }

    #[test]
    fn logs_see_the_path_without_its_token() {
        let r = routes();
        assert_eq!(
            r.redact("/upload/tus/SECRET/abc"),
            "/upload/tus/{token}/abc"
        );
        assert_eq!(
            r.redact("/download-file/1/0/0/1/0/SECRET"),
            "/download-file/1/0/0/1/0/{token}"
        );
        assert_eq!(r.redact("/api/hosts"), "/api/hosts");
    }

    #[test]
    fn options_go_upstream_only_where_a_route_says_so() {
        let tus = Pattern::parse(
            "/upload/tus/{token}/**",
            None,
            Permission::Upload,
            OptionsAnswer::Upstream,
        );
        let routes = UrlTokens::new(vec![tus.unwrap()]);
        assert!(routes.options_go_upstream("/upload/tus/T"));
        assert!(routes.options_go_upstream("/upload/tus/T/id"));
        assert!(!routes.options_go_upstream("/upload/tus"), "no token there");
        assert!(!routes.options_go_upstream("/api/x"));
        assert!(!self::tests::routes().options_go_upstream("/upload/tus/T"));
    }

    #[test]
    fn patterns_name_exactly_one_place_for_the_token() {
        let parse =
            |path, query| Pattern::parse(path, query, Permission::Upload, OptionsAnswer::Preflight);
        assert!(parse("/a/{token}/{token}", None).is_err());
        assert!(parse("/a/b", None).is_err());
        assert!(parse("/a/{token}", Some("token")).is_err());
        assert!(parse("/a/**/{token}", None).is_err());
        assert!(parse("a/{token}", None).is_err());
        assert!(parse("/a/{x}/{token}", None).is_err());
    }
}
