//! What a request is, decided from its method and path alone, and path-prefix matching.

use http::Method;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/auth/login`
    Login,
    /// `POST /api/auth/logout`
    Logout,
    /// `POST /api/auth/validatetoken`
    ValidateToken,
    /// `PUT /api/users/authenticatePassword` (GW8 login)
    AuthenticatePassword,
    /// `POST /api/authtoken` (ioGates login)
    AuthToken,
    /// `DELETE /api/authtoken`: revoke the token presented.
    RevokeToken,
    /// `POST /api/authgate/revoke`: an admin revokes a token or a share's tokens.
    AdminRevoke,
    /// An auth endpoint with the wrong method.
    WrongMethod(&'static str),
    /// `OPTIONS` anything: answered locally.
    Preflight,
    /// Everything else: forwarded if allowed.
    Forward,
}

impl Route {
    pub fn classify(method: &Method, path: &str) -> Route {
        if method == Method::OPTIONS {
            return Route::Preflight;
        }
        let post = *method == Method::POST;
        match path {
            "/api/auth/login" if post => Route::Login,
            "/api/auth/logout" if post => Route::Logout,
            "/api/auth/validatetoken" if post => Route::ValidateToken,
            "/api/auth/login" | "/api/auth/logout" | "/api/auth/validatetoken" => {
                Route::WrongMethod("POST")
            }
            "/api/users/authenticatePassword" if *method == Method::PUT => {
                Route::AuthenticatePassword
            }
            "/api/users/authenticatePassword" => Route::WrongMethod("PUT"),
            "/api/authtoken" if post => Route::AuthToken,
            "/api/authtoken" if *method == Method::DELETE => Route::RevokeToken,
            "/api/authtoken" => Route::WrongMethod("POST, DELETE"),
            "/api/authgate/revoke" if post => Route::AdminRevoke,
            "/api/authgate/revoke" => Route::WrongMethod("POST"),
            _ => Route::Forward,
        }
    }

    /// Low-cardinality label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Logout => "logout",
            Route::ValidateToken => "validatetoken",
            Route::AuthenticatePassword => "authenticate_password",
            Route::AuthToken => "authtoken",
            Route::RevokeToken => "revoke_token",
            Route::AdminRevoke => "admin_revoke",
            Route::WrongMethod(_) => "auth_wrong_method",
            Route::Preflight => "preflight",
            Route::Forward => "forward",
        }
    }
}

/// The path as an upstream might finally interpret it: percent-decoded (separators included),
/// backslashes as slashes, empty and `.` segments dropped, `..` resolved. Allow-lists match on
/// this, so that no spelling of a path can reach past a prefix it does not really start with.
pub fn normalize_path(raw: &str) -> String {
    if is_plain_path(raw) {
        return raw.to_string();
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// Already normal: starts with `/`, no escapes, backslashes, empty, `.` or `..` segments, and no
/// trailing slash (the common case, answered without decoding).
fn is_plain_path(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if raw == "/" {
        return true;
    }
    bytes.first() == Some(&b'/')
        && bytes.last() != Some(&b'/')
        && !bytes.iter().any(|&b| b == b'%' || b == b'\\')
        && !raw.contains("//")
        && !raw
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// `prefix` matches whole segments of `path`: `/api/noma` matches `/api/noma` and `/api/noma/x`,
/// never `/api/nomad`. Both are normalised paths.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_auth_endpoints() {
        assert_eq!(
            Route::classify(&Method::POST, "/api/auth/login"),
            Route::Login
        );
        assert_eq!(
            Route::classify(&Method::POST, "/api/auth/logout"),
            Route::Logout
        );
        assert_eq!(
            Route::classify(&Method::POST, "/api/auth/validatetoken"),
            Route::ValidateToken
        );
        assert_eq!(
            Route::classify(&Method::PUT, "/api/users/authenticatePassword"),
            Route::AuthenticatePassword
        );
        assert_eq!(
            Route::classify(&Method::GET, "/api/auth/login"),
            Route::WrongMethod("POST")
        );
        assert_eq!(
            Route::classify(&Method::OPTIONS, "/api/x"),
            Route::Preflight
        );
        assert_eq!(Route::classify(&Method::GET, "/api/hosts"), Route::Forward);
        assert_eq!(
            Route::classify(&Method::POST, "/api/auth/login/"),
            Route::Forward
        );
    }

    #[test]
    fn normalisation_defeats_path_tricks() {
        assert_eq!(normalize_path("/api/noma/x"), "/api/noma/x");
        assert_eq!(normalize_path("//api///noma/"), "/api/noma");
        assert_eq!(normalize_path("/api/noma/../admin"), "/api/admin");
        assert_eq!(normalize_path("/api/noma/..%2fadmin"), "/api/admin");
        assert_eq!(normalize_path("/api/noma/%2e%2e/admin"), "/api/admin");
        assert_eq!(normalize_path("/api/noma\\..\\admin"), "/api/admin");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path(""), "/");
        // The fast path agrees with the full one.
        for (raw, normal) in [
            ("/api/x", "/api/x"),
            ("/api/x/", "/api/x"),
            ("/a/.hidden", "/a/.hidden"),
            ("/a/..b", "/a/..b"),
            ("/", "/"),
            ("a/b", "/a/b"),
        ] {
            assert_eq!(normalize_path(raw), normal, "{raw}");
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
}
