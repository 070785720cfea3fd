//! What a request is, decided from its method and canonical path alone.

use http::Method;

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
    /// The forward-auth decision endpoint (`forward_auth.path`, and below it for Envoy).
    Verify,
    /// A request target that cannot be made canonical (`target::TargetError`): 400.
    BadTarget,
}

impl Route {
    /// `path` is the canonical path (`target::RequestTarget::path`).
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
            Route::Verify => "verify",
            Route::BadTarget => "bad_target",
        }
    }
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
}
