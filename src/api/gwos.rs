//! GWOS auth endpoints (`../shared/spec/gwos.md` §1 and §5): exact statuses and text bodies.

use super::form::Params;
use super::{login_limited, revocation_failed, store_failed, unknown_user_label, Outcome};
use crate::auth::{Authenticator, LoginError};
use crate::reply::{Failure, Format, Reply};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const LOGIN_BAD_REQUEST: &str = "Invalid username or password or gwos-app-name";
pub const LOGIN_FAILED: &str = "Invalid username or password";
pub const TOKEN_BAD_REQUEST: &str = "Invalid gwos-app-name or gwos-api-token";
pub const LOGOUT_UNKNOWN: &str = "Invalid gwos-api-token";

const USER: &[&str] = &["user"];
const PASSWORD: &[&str] = &["password"];
const APP_NAME: &[&str] = &["gwos-app-name", "gwos_app_name"];
const API_TOKEN: &[&str] = &["gwos-api-token", "gwos_api_token"];

fn store_unavailable(e: &StoreError) -> Outcome {
    store_failed(e, Format::Text)
}

fn overloaded() -> Outcome {
    Outcome::failed(
        Failure::Overloaded,
        Format::Text,
        &"password verification queue full",
    )
}

/// Three parameters looked up together; any error or absence is `None`.
fn required<'a>(params: &'a Params, names: &[&[&'static str]]) -> Option<Vec<&'a str>> {
    names.iter().map(|n| params.get(n).ok().flatten()).collect()
}

/// How a login's credentials are written (spec §1 and §5).
#[derive(Debug, Clone, Copy)]
enum Dialect {
    /// `login`: user as Base64 or raw, password as Base64 (or Jasypt).
    Gw7,
    /// `authenticatePassword`: the plain user name and password (or Jasypt).
    Gw8,
}

pub struct GwosApi<'a> {
    pub auth: &'a Authenticator,
    pub failed_login_status: u16,
    /// The client's address, for the login limits.
    pub client: Option<IpAddr>,
}

impl GwosApi<'_> {
    fn login_failed(&self) -> Reply {
        Reply::text(self.failed_login_status, LOGIN_FAILED).no_store()
    }

    /// Check the credentials and issue a token; the shared core of both login shapes.
    /// The token and the user's name, or the failure (with whom it concerned).
    async fn login_core(
        &self,
        dialect: Dialect,
        user: &str,
        password: &str,
        app_name: &str,
    ) -> Result<(String, String), (Outcome, Option<String>)> {
        let checked = match dialect {
            Dialect::Gw7 => {
                let checked = self
                    .auth
                    .check_gwos_credentials(user, password, self.client);
                checked.await
            }
            Dialect::Gw8 => {
                let checked = self.auth.check_gw8_credentials(user, password, self.client);
                checked.await
            }
        };
        let user = match checked {
            Ok(u) => u,
            Err(LoginError::BadCredentials(reason)) => {
                let known = self.auth.find_user(user).map(|u| u.name.clone());
                let outcome = Outcome::new(self.login_failed(), reason.as_str());
                return Err((
                    outcome,
                    Some(known.unwrap_or_else(|| unknown_user_label(user))),
                ));
            }
            Err(LoginError::Overloaded) => return Err((overloaded(), None)),
            Err(LoginError::Limited(limited)) => {
                return Err((login_limited(&limited, Format::Text), None))
            }
            Err(LoginError::Store(e)) => return Err((store_unavailable(&e), None)),
        };
        match self.auth.issue_gwos_token(&user, app_name).await {
            Ok(token) => Ok((token, user.name.clone())),
            Err(e) => Err((store_unavailable(&e), Some(user.name.clone()))),
        }
    }

    /// `POST /api/auth/login` — `user`, `password`, `gwos-app-name`.
    pub async fn login(&self, params: &Params) -> Outcome {
        let Some(values) = required(params, &[USER, PASSWORD, APP_NAME]) else {
            return Outcome::bad_request(Format::Text, LOGIN_BAD_REQUEST);
        };
        let (user, password, app_name) = (values[0], values[1], values[2]);
        match self
            .login_core(Dialect::Gw7, user, password, app_name)
            .await
        {
            Ok((token, name)) => {
                Outcome::new(Reply::text(200, token).no_store(), "success").for_user(name)
            }
            Err((outcome, who)) => match who {
                Some(who) => outcome.for_user(who),
                None => outcome,
            },
        }
    }

    /// `PUT /api/users/authenticatePassword` (GW8): JSON `{"name","password"}`, app name in a header.
    pub async fn authenticate_password(&self, body: &[u8], app_name: Option<&str>) -> Outcome {
        #[derive(Deserialize)]
        struct Request {
            name: String,
            password: String,
        }
        #[derive(Serialize)]
        struct Response<'a> {
            name: &'a str,
            #[serde(rename = "accessToken")]
            access_token: &'a str,
        }
        let request = serde_json::from_slice::<Request>(body).ok();
        let (Some(request), Some(app_name)) = (request, app_name) else {
            return Outcome::bad_request(Format::Text, LOGIN_BAD_REQUEST);
        };
        if request.name.is_empty() || request.password.is_empty() {
            return Outcome::bad_request(Format::Text, LOGIN_BAD_REQUEST);
        }
        match self
            .login_core(Dialect::Gw8, &request.name, &request.password, app_name)
            .await
        {
            Ok((token, name)) => {
                let body = Response {
                    name: &request.name,
                    access_token: &token,
                };
                Outcome::new(Reply::json(200, &body).no_store(), "success").for_user(name)
            }
            // GW8 clients treat any 401 whose body mentions `password` as bad credentials.
            Err((mut outcome, who)) => {
                if outcome.reply.status == self.failed_login_status {
                    outcome.reply = Reply::text(401, LOGIN_FAILED).no_store();
                }
                match who {
                    Some(who) => outcome.for_user(who),
                    None => outcome,
                }
            }
        }
    }

    /// `POST /api/auth/logout` — `gwos-api-token`, `gwos-app-name`.
    pub async fn logout(&self, params: &Params) -> Outcome {
        let Some(values) = required(params, &[API_TOKEN, APP_NAME]) else {
            return Outcome::bad_request(Format::Text, TOKEN_BAD_REQUEST);
        };
        match self.auth.logout_gwos(values[0], values[1]).await {
            Ok(true) => Outcome::new(Reply::text(200, "true"), "success"),
            Ok(false) => Outcome::new(Reply::text(404, LOGOUT_UNKNOWN), "unknown_token"),
            Err(e) => revocation_failed(&e, Format::Text),
        }
    }

    /// `POST /api/auth/validatetoken` — `gwos-api-token`, `gwos-app-name`.
    pub async fn validate(&self, params: &Params) -> Outcome {
        let Some(values) = required(params, &[API_TOKEN, APP_NAME]) else {
            return Outcome::bad_request(Format::Text, TOKEN_BAD_REQUEST);
        };
        match self.auth.validate_gwos(values[0], values[1]).await {
            Ok(true) => Outcome::new(Reply::text(200, "true").no_store(), "valid"),
            Ok(false) => Outcome::new(Reply::text(200, "false").no_store(), "invalid"),
            Err(e) => store_unavailable(&e),
        }
    }
}
