//! The request target, made canonical once: the one path every decision is made on, and exactly
//! the path that is forwarded upstream.
//!
//! An upstream reads the path it receives its own way: a servlet container strips `;parameters`
//! before it resolves `..`, a WSGI server decodes `%2F` into a separator, Go's mux cleans `//`.
//! If authgate decided on one reading and forwarded another, every allow-list would be a bypass.
//! So the target is parsed here once into a canonical path in which those readings agree, what
//! cannot be made canonical without guessing is refused, and the canonical path is what goes
//! upstream (the query string untouched).
//!
//! The canonical path:
//! - starts with `/`; `.` and `..` segments are resolved (RFC 3986 §5.2.4), and `..` above the
//!   root is refused;
//! - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2); every other escape is
//!   kept, with upper-case hex, and never decoded a second time (`%252e` stays `%252e`);
//! - bytes that may not appear raw in a path (space, `"`, `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`,
//!   `[`, `]` and non-ASCII UTF-8) are percent-encoded;
//! - holds no `\`, no `;`, no control character, no `%2F`/`%5C` (unless decoded by policy) and,
//!   by default, no empty segment.
//!
//! Canonicalising a canonical path gives it back unchanged.

use serde::Deserialize;
use std::fmt::Write as _;

/// What to do with an encoded slash or backslash (`%2F`, `%5C`) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// 400: upstreams disagree on whether it separates segments.
    #[default]
    Reject,
    /// Read it as `/`, and forward it as `/`.
    Decode,
}

/// What to do with `;` path parameters (`/a;jsessionid=1/b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParameters {
    /// 400: a servlet container strips them before resolving `..`, other servers do not.
    #[default]
    Reject,
    /// Remove each segment's parameters, as a servlet container would, and forward the result.
    Strip,
}

/// How request paths are made canonical (`request_path:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub path_parameters: PathParameters,
    /// Merge `//` into `/`. Off: empty segments are kept, and a `..` that would remove one is
    /// refused (RFC 3986 and Go's `path.Clean` resolve it differently).
    pub merge_slashes: bool,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            escaped_slashes: EscapedSlashes::Reject,
            path_parameters: PathParameters::Reject,
            merge_slashes: true,
        }
    }
}

/// Why a request target was refused (always a 400: the client sent something ambiguous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the request target is neither a path nor an http(s) URL")]
    NotAPath,
    #[error("'*' is a target only for OPTIONS")]
    Asterisk,
    #[error("the URL's authority is not a valid host")]
    BadAuthority,
    #[error("an encoded slash (%2F or %5C) in the path")]
    EncodedSlash,
    #[error("a backslash in the path")]
    Backslash,
    #[error("a ';' parameter in the path")]
    PathParameter,
    #[error("a control character in the path")]
    ControlCharacter,
    #[error("an invalid percent-encoding in the path")]
    BadPercentEncoding,
    #[error("the path is not valid UTF-8")]
    InvalidUtf8,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("a '..' segment that would remove an empty segment")]
    AmbiguousDotSegment,
}

impl TargetError {
    /// Low-cardinality label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetError::NotAPath => "not_a_path",
            TargetError::Asterisk => "asterisk",
            TargetError::BadAuthority => "bad_authority",
            TargetError::EncodedSlash => "encoded_slash",
            TargetError::Backslash => "backslash",
            TargetError::PathParameter => "path_parameter",
            TargetError::ControlCharacter => "control_character",
            TargetError::BadPercentEncoding => "bad_percent_encoding",
            TargetError::InvalidUtf8 => "invalid_utf8",
            TargetError::AboveRoot => "above_root",
            TargetError::AmbiguousDotSegment => "ambiguous_dot_segment",
        }
    }
}

/// The form the client sent the target in (RFC 9112 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://host/path?query`: forwarded in origin-form, with this authority as `Host`.
    Absolute { authority: String },
    /// `*` (server-wide `OPTIONS`)
    Asterisk,
}

/// A request target made canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    path: String,
    form: TargetForm,
    /// The origin-form target to send upstream, when it differs from what the client sent.
    rewritten: Option<Vec<u8>>,
}

impl RequestTarget {
    /// Parse the target exactly as it arrived on the request line.
    pub fn parse(raw: &[u8], policy: &PathPolicy) -> Result<RequestTarget, TargetError> {
        if raw == b"*" {
            return Ok(RequestTarget {
                path: "*".into(),
                form: TargetForm::Asterisk,
                rewritten: None,
            });
        }
        let (form, path_and_query) = if raw.first() == Some(&b'/') {
            (TargetForm::Origin, raw)
        } else {
            let (authority, rest) = split_absolute(raw)?;
            (TargetForm::Absolute { authority }, rest)
        };
        let (raw_path, query) = match path_and_query.iter().position(|&b| b == b'?') {
            Some(i) => (&path_and_query[..i], Some(&path_and_query[i..])),
            None => (path_and_query, None),
        };
        // An absolute-form URL may have no path at all: origin-form requires at least "/".
        let raw_path: &[u8] = if raw_path.is_empty() { b"/" } else { raw_path };
        let path = canonical_path(raw_path, policy)?;
        let rewritten = (form != TargetForm::Origin || path.as_bytes() != raw_path).then(|| {
            let mut target = Vec::with_capacity(path.len() + query.map_or(0, <[u8]>::len));
            target.extend_from_slice(path.as_bytes());
            target.extend_from_slice(query.unwrap_or_default());
            target
        });
        Ok(RequestTarget {
            path,
            form,
            rewritten,
        })
    }

    /// The canonical path: what every decision is made on, and what is forwarded.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn form(&self) -> &TargetForm {
        &self.form
    }

    /// The path and query to put on the upstream request line instead of the client's, if the
    /// client's was not already canonical origin-form. `None`: forward it as it came.
    pub fn rewritten(&self) -> Option<&[u8]> {
        self.rewritten.as_deref()
    }

    /// The path and query as forwarded: the rewritten target, else the client's own.
    pub fn forwarded<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        self.rewritten().unwrap_or(raw)
    }
}

/// `scheme://authority/path?query` → (authority, `/path?query`). Only http and https.
pub fn split_absolute(raw: &[u8]) -> Result<(String, &[u8]), TargetError> {
    let sep = raw
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(TargetError::NotAPath)?;
    let scheme = &raw[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(TargetError::NotAPath);
    }
    let rest = &raw[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let valid = |b: &u8| b.is_ascii_alphanumeric() || b"-._~:[]".contains(b);
    if authority.is_empty() || !authority.iter().all(valid) {
        // Userinfo (`user@host`), escapes and anything else a Host header cannot carry.
        return Err(TargetError::BadAuthority);
    }
    let authority = String::from_utf8(authority.to_vec()).expect("checked ASCII");
    Ok((authority, &rest[end..]))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Allowed raw in a path segment besides unreserved: sub-delims (but `;`), `:` and `@`. Kept as
/// they came, raw or encoded: some upstreams give `+` or `=` a meaning that `%2B` or `%3D` lacks.
fn is_kept_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    write!(out, "%{b:02X}").expect("writing to a String cannot fail");
}

/// One segment, canonical, appended to `out`. `raw` holds no raw `/`.
fn canonical_segment(raw: &[u8], out: &mut String) -> Result<(), TargetError> {
    // Non-ASCII bytes are checked as UTF-8 one run at a time: a run of bytes >= 0x80 between ASCII
    // bytes must be whole characters.
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let (byte, encoded) = if raw[i] == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(TargetError::BadPercentEncoding);
            };
            i += 3;
            (hi << 4 | lo, true)
        } else {
            i += 1;
            (raw[i - 1], false)
        };
        if byte >= 0x80 {
            run.push(byte);
            push_escaped(out, byte);
            continue;
        }
        if !run.is_empty() {
            std::str::from_utf8(&run).map_err(|_| TargetError::InvalidUtf8)?;
            run.clear();
        }
        match byte {
            0x00..=0x1F | 0x7F => return Err(TargetError::ControlCharacter),
            b'\\' if !encoded => return Err(TargetError::Backslash),
            b'/' | b'\\' => return Err(TargetError::EncodedSlash),
            // A raw `;` was dealt with by the caller; `%3B` is a parameter delimiter to servers
            // that decode before they strip, and literal text to the rest.
            b';' => return Err(TargetError::PathParameter),
            b if is_unreserved(b) => out.push(b as char),
            b if is_kept_delimiter(b) && !encoded => out.push(b as char),
            b => push_escaped(out, b),
        }
    }
    if !run.is_empty() {
        std::str::from_utf8(&run).map_err(|_| TargetError::InvalidUtf8)?;
    }
    Ok(())
}

/// `%2F` or `%5C`, in either case, at `raw[i..]`.
fn is_escaped_slash(raw: &[u8], i: usize) -> bool {
    matches!(
        raw.get(i..i + 3),
        Some([b'%', b'2', b'f' | b'F'] | [b'%', b'5', b'c' | b'C'])
    )
}

/// Split a raw path into its raw segments: at `/`, and at `%2F`/`%5C` when the policy decodes
/// them. The leading `/` gives no segment of its own.
fn raw_segments<'a>(raw: &'a [u8], policy: &PathPolicy) -> Vec<&'a [u8]> {
    let decode = policy.escaped_slashes == EscapedSlashes::Decode;
    let mut segments = Vec::new();
    let (mut start, mut i) = (1, 1);
    while i < raw.len() {
        let separator = match raw[i] {
            b'/' => 1,
            b'%' if decode && is_escaped_slash(raw, i) => 3,
            _ => 0,
        };
        if separator == 0 {
            i += 1;
            continue;
        }
        segments.push(&raw[start..i]);
        i += separator;
        start = i;
    }
    segments.push(&raw[start.min(raw.len())..]);
    segments
}

/// Already canonical under any policy, as most paths are: only unreserved characters, kept
/// delimiters and single slashes, and no `.` or `..` segment. One pass, no allocation.
fn is_plain(raw: &[u8]) -> bool {
    let Some((&b'/', rest)) = raw.split_first() else {
        return false;
    };
    // The current segment's length, and how many of its bytes are dots.
    let (mut len, mut dots) = (0usize, 0usize);
    let dot_segment = |len: usize, dots: usize| len > 0 && len == dots && dots <= 2;
    for &b in rest {
        if b == b'/' {
            if len == 0 || dot_segment(len, dots) {
                return false;
            }
            (len, dots) = (0, 0);
        } else if is_unreserved(b) || is_kept_delimiter(b) {
            len += 1;
            dots += usize::from(b == b'.');
        } else {
            return false;
        }
    }
    !dot_segment(len, dots)
}

/// The canonical form of a path that starts with `/` (no query).
pub fn canonical_path(raw: &[u8], policy: &PathPolicy) -> Result<String, TargetError> {
    if is_plain(raw) {
        return Ok(String::from_utf8(raw.to_vec()).expect("plain paths are ASCII"));
    }
    canonical_path_in_full(raw, policy)
}

fn canonical_path_in_full(raw: &[u8], policy: &PathPolicy) -> Result<String, TargetError> {
    if raw.first() != Some(&b'/') {
        return Err(TargetError::NotAPath);
    }
    let segments = raw_segments(raw, policy);
    let mut out = String::with_capacity(raw.len() + 8);
    let mut segment = String::new();
    let last = segments.len() - 1;
    // Whether the path must end with `/`: after a trailing `.`, `..` or empty segment.
    let mut trailing_slash = false;
    for (index, raw_segment) in segments.into_iter().enumerate() {
        let raw_segment = match raw_segment.iter().position(|&b| b == b';') {
            None => raw_segment,
            Some(at) => match policy.path_parameters {
                PathParameters::Reject => return Err(TargetError::PathParameter),
                PathParameters::Strip => &raw_segment[..at],
            },
        };
        segment.clear();
        canonical_segment(raw_segment, &mut segment)?;
        let is_last = index == last;
        match segment.as_str() {
            "." => trailing_slash = is_last,
            ".." => {
                let cut = out.rfind('/').ok_or(TargetError::AboveRoot)?;
                if !policy.merge_slashes && cut + 1 == out.len() {
                    return Err(TargetError::AmbiguousDotSegment);
                }
                out.truncate(cut);
                trailing_slash = is_last;
            }
            "" if policy.merge_slashes => trailing_slash = is_last,
            s => {
                out.push('/');
                out.push_str(s);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `prefix` matches whole segments of `path`: `/api/noma` matches `/api/noma` and `/api/noma/x`,
/// never `/api/nomad`. Both are canonical paths.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Check a configured path or prefix: it must already be canonical under the strictest policy,
/// so that it means the same whatever `request_path` says. Returns the reason otherwise.
pub fn check_configured_path(path: &str) -> Result<(), String> {
    let canonical = canonical_path(path.as_bytes(), &PathPolicy::default())
        .map_err(|e| format!("{path:?} is not a usable path: {e}"))?;
    if canonical != path {
        return Err(format!(
            "{path:?} is not canonical: write {canonical:?} (requests are matched in that form)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<String, TargetError> {
        canonical_path(raw.as_bytes(), &PathPolicy::default())
    }

    #[test]
    fn canonical_forms() {
        let ok = [
            ("/", "/"),
            ("/api/hosts", "/api/hosts"),
            ("/api/hosts/", "/api/hosts/"),
            ("//api///hosts", "/api/hosts"),
            ("/api//", "/api/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/../b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/%61%7A%41%30%2D%2E%5F%7E", "/azA0-._~"),
            ("/a%20b", "/a%20b"),
            ("/a%2a", "/a%2A"),
            ("/a*+!$&'(),=:@", "/a*+!$&'(),=:@"),
            ("/a%252e", "/a%252e"),
            ("/%252e%252e/x", "/%252e%252e/x"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\"<>^`{|}[]", "/a%22%3C%3E%5E%60%7B%7C%7D%5B%5D"),
            ("/...", "/..."),
            ("/a/..b", "/a/..b"),
            ("/.hidden", "/.hidden"),
        ];
        for (raw, want) in ok {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
            assert_eq!(canon(want).as_deref(), Ok(want), "{want} is a fixed point");
        }
        let refused = [
            ("/a%2fb", TargetError::EncodedSlash),
            ("/a%5Cb", TargetError::EncodedSlash),
            ("/a\\b", TargetError::Backslash),
            ("/a;b", TargetError::PathParameter),
            ("/public/..;/admin", TargetError::PathParameter),
            ("/a%3bb", TargetError::PathParameter),
            ("/a%00", TargetError::ControlCharacter),
            ("/a%0d%0a", TargetError::ControlCharacter),
            ("/a%7f", TargetError::ControlCharacter),
            ("/a\tb", TargetError::ControlCharacter),
            ("/a%", TargetError::BadPercentEncoding),
            ("/a%2", TargetError::BadPercentEncoding),
            ("/a%zz", TargetError::BadPercentEncoding),
            ("/a%ff", TargetError::InvalidUtf8),
            ("/a%c3", TargetError::InvalidUtf8),
            ("/a%c3/", TargetError::InvalidUtf8),
            ("/..", TargetError::AboveRoot),
            ("/a/../..", TargetError::AboveRoot),
            ("/%2e%2e/etc", TargetError::AboveRoot),
            ("a/b", TargetError::NotAPath),
        ];
        for (raw, want) in refused {
            assert_eq!(canon(raw), Err(want), "{raw}");
        }
        assert_eq!(
            canonical_path(b"/a\xff", &PathPolicy::default()),
            Err(TargetError::InvalidUtf8)
        );
    }

    #[test]
    fn policy_settings() {
        let decode = PathPolicy {
            escaped_slashes: EscapedSlashes::Decode,
            ..PathPolicy::default()
        };
        let strip = PathPolicy {
            path_parameters: PathParameters::Strip,
            ..PathPolicy::default()
        };
        let keep_slashes = PathPolicy {
            merge_slashes: false,
            ..PathPolicy::default()
        };
        let cases = [
            (decode, "/a%2Fb", Ok("/a/b")),
            (decode, "/a%5cb", Ok("/a/b")),
            (decode, "/public%2f..%2fadmin", Ok("/admin")),
            (decode, "/a%2f", Ok("/a/")),
            (decode, "/a\\b", Err(TargetError::Backslash)),
            (strip, "/a;jsessionid=1/b", Ok("/a/b")),
            (strip, "/public/..;/admin", Ok("/admin")),
            (strip, "/a;x", Ok("/a")),
            (strip, "/;x/a", Ok("/a")),
            (strip, "/a%3bb", Err(TargetError::PathParameter)),
            (keep_slashes, "//a//b/", Ok("//a//b/")),
            (keep_slashes, "/a/b/../c", Ok("/a/c")),
            (
                keep_slashes,
                "/a//../b",
                Err(TargetError::AmbiguousDotSegment),
            ),
        ];
        for (policy, raw, want) in cases {
            let got = canonical_path(raw.as_bytes(), &policy);
            assert_eq!(got.as_deref(), want.as_deref(), "{raw} with {policy:?}");
        }
    }

    #[test]
    fn target_forms_and_what_is_forwarded() {
        let p = PathPolicy::default();
        let t = RequestTarget::parse(b"/api/hosts?x=%2F&y=../z", &p).unwrap();
        assert_eq!((t.path(), t.rewritten()), ("/api/hosts", None));
        let t = RequestTarget::parse(b"/a/../b?q=%2e%2e;x", &p).unwrap();
        assert_eq!(t.path(), "/b");
        assert_eq!(
            t.rewritten(),
            Some(&b"/b?q=%2e%2e;x"[..]),
            "query untouched"
        );
        let t = RequestTarget::parse(b"/a?", &p).unwrap();
        assert_eq!(t.rewritten(), None);
        let t = RequestTarget::parse(b"HTTP://App.Internal:8080/x/./y?q", &p).unwrap();
        assert_eq!(
            t.form(),
            &TargetForm::Absolute {
                authority: "App.Internal:8080".into()
            }
        );
        assert_eq!((t.path(), t.rewritten()), ("/x/y", Some(&b"/x/y?q"[..])));
        let t = RequestTarget::parse(b"http://h?q=1", &p).unwrap();
        assert_eq!(t.rewritten(), Some(&b"/?q=1"[..]));
        let t = RequestTarget::parse(b"*", &p).unwrap();
        assert_eq!(t.form(), &TargetForm::Asterisk);
        for (raw, want) in [
            (&b"http://user@h/x"[..], TargetError::BadAuthority),
            (b"http:///x", TargetError::BadAuthority),
            (b"http://h%41/x", TargetError::BadAuthority),
            (b"ftp://h/x", TargetError::NotAPath),
            (b"h:80", TargetError::NotAPath),
            (b"", TargetError::NotAPath),
            (b"http://h/a%2fb", TargetError::EncodedSlash),
        ] {
            assert_eq!(
                RequestTarget::parse(raw, &p),
                Err(want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(has_prefix("/api/noma", "/api/noma"));
        assert!(has_prefix("/api/noma/x", "/api/noma"));
        assert!(has_prefix("/api/noma/x", "/api/noma/"));
        assert!(!has_prefix("/api/nomad", "/api/noma"));
        assert!(!has_prefix("/api", "/api/noma"));
        assert!(has_prefix("/anything", "/"));
    }

    fn policies() -> impl proptest::strategy::Strategy<Value = PathPolicy> {
        use proptest::prelude::*;
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(decode, strip, merge)| {
            PathPolicy {
                escaped_slashes: if decode {
                    EscapedSlashes::Decode
                } else {
                    EscapedSlashes::Reject
                },
                path_parameters: if strip {
                    PathParameters::Strip
                } else {
                    PathParameters::Reject
                },
                merge_slashes: merge,
            }
        })
    }

    /// Refused, or a canonical path that canonicalises to itself and is exactly what is forwarded.
    fn refused_or_fixed_point(raw: &[u8], policy: &PathPolicy) -> Result<(), String> {
        let Ok(target) = RequestTarget::parse(raw, policy) else {
            return Ok(());
        };
        if *target.form() == TargetForm::Asterisk {
            return Ok(());
        }
        let path = target.path();
        let again = canonical_path(path.as_bytes(), policy);
        if again.as_deref() != Ok(path) {
            return Err(format!("{path:?} canonicalises to {again:?}"));
        }
        let forwarded = target.forwarded(raw);
        let forwarded_path = forwarded.split(|&b| b == b'?').next().unwrap_or_default();
        if forwarded_path != path.as_bytes() {
            return Err(format!(
                "decided on {path:?}, forwarded {:?}",
                String::from_utf8_lossy(forwarded)
            ));
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_are_refused_or_canonical(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
            policy in policies(),
        ) {
            let mut target = b"/".to_vec();
            target.extend_from_slice(&raw);
            for raw in [&raw[..], &target[..]] {
                if let Err(e) = refused_or_fixed_point(raw, &policy) {
                    proptest::prop_assert!(false, "{}", e);
                }
            }
        }

        #[test]
        fn attack_pieces_are_refused_or_canonical(
            pieces in proptest::collection::vec(proptest::sample::select(&[
                "a", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "\\", ";", ";p=1", "%3b", "%25",
                "%252e", "%00", "%c3%a9", "%c3", "%ff", "", "%7e", "%41", "?q=../%2f", "http://h",
                "{", "%", "%2",
            ][..]), 0..8),
            policy in policies(),
        ) {
            let raw = format!("/{}", pieces.join("/"));
            if let Err(e) = refused_or_fixed_point(raw.as_bytes(), &policy) {
                proptest::prop_assert!(false, "{}: {}", raw, e);
            }
        }
    }

    proptest::proptest! {
        /// The shortcut for plain paths gives what the full algorithm gives.
        #[test]
        fn plain_paths_need_no_work(
            raw in "(/[a-zA-Z0-9._~!$&'()*+,=:@-]{0,6}){1,6}",
            policy in policies(),
        ) {
            if is_plain(raw.as_bytes()) {
                let full = canonical_path_in_full(raw.as_bytes(), &policy);
                proptest::prop_assert_eq!(full.as_deref(), Ok(raw.as_str()));
            }
        }
    }

    #[test]
    fn configured_paths_must_be_canonical() {
        assert!(check_configured_path("/api/files").is_ok());
        assert!(check_configured_path("/api/files/").is_ok());
        assert!(check_configured_path("/api//files")
            .unwrap_err()
            .contains("\"/api/files\""));
        assert!(check_configured_path("/api/%2e%2e/x").is_err());
        assert!(check_configured_path("/a;b").is_err());
        assert!(check_configured_path("api").is_err());
    }
}
