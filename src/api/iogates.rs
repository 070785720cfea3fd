//! ioGates auth-token endpoint (`../shared/spec/iogates.md`): `POST /api/authtoken` with a JSON or
//! form body, answering the token and the account's profile as JSON.

use super::form::Params;
use super::{login_limited, store_failed, unknown_user_label, Outcome};
use crate::auth::users::{Status, User};
use crate::auth::{Authenticator, BadCredentialsReason, Grant, LoginError};
use crate::reply::{Failure, Format, Reply};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;

/// How the client authenticates.
#[derive(Debug, PartialEq, Eq)]
pub enum Method {
    Password { username: String, password: String },
    ShareUrl(String),
}

#[derive(Debug, PartialEq, Eq)]
pub struct AuthTokenRequest {
    pub method: Method,
    pub device_id: Option<String>,
}

/// A string field that may also be absent, `null` or `false` (= not given).
fn optional_string(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// `deviceId`: a string (the CLI's 64 hex digits) or a number (the GUI's timestamp), or absent.
fn device_id(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err("deviceId must be a string or a number".into()),
    }
}

impl AuthTokenRequest {
    /// Exactly one method: `url`, or `username` + `password`.
    fn from_fields(
        username: Option<String>,
        password: Option<String>,
        url: Option<String>,
        device_id: Option<String>,
    ) -> Result<AuthTokenRequest, String> {
        let method = match (username, password, url) {
            (None, None, Some(url)) => Method::ShareUrl(url),
            (Some(username), Some(password), None) => Method::Password { username, password },
            (None, None, None) => return Err("Give username and password, or a share url".into()),
            (_, _, Some(_)) => {
                return Err("Give either a share url or username and password, not both".into())
            }
            _ => return Err("Both username and password are required".into()),
        };
        Ok(AuthTokenRequest { method, device_id })
    }

    /// Parse a JSON body (`application/json`) or a form body (anything else that is not JSON).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<AuthTokenRequest, String> {
        let looks_json = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"))
            || body.trim_ascii_start().first() == Some(&b'{');
        if looks_json {
            let value: Value =
                serde_json::from_slice(body).map_err(|_| "Malformed JSON body".to_string())?;
            let Value::Object(fields) = value else {
                return Err("The body must be a JSON object".into());
            };
            return AuthTokenRequest::from_fields(
                optional_string(fields.get("username"), "username")?,
                optional_string(fields.get("password"), "password")?,
                optional_string(fields.get("url"), "url")?,
                device_id(fields.get("deviceId"))?,
            );
        }
        let params = Params::parse(body, None).map_err(|e| e.to_string())?;
        let field = |name: &'static str| -> Result<Option<String>, String> {
            let value = params.get(&[name]).map_err(|e| e.to_string())?;
            // Form clients spell JSON's null/false as text.
            Ok(value
                .filter(|v| *v != "null" && *v != "false")
                .map(String::from))
        };
        AuthTokenRequest::from_fields(
            field("username")?,
            field("password")?,
            field("url")?,
            field("deviceId")?,
        )
    }
}

#[derive(Serialize)]
struct Profile<'a> {
    id: &'a str,
    username: &'a str,
    realname: &'a str,
    accountname: &'a str,
    email: &'a str,
    address: Option<&'a str>,
    mobile: Option<&'a str>,
    expires: Option<&'a str>,
    status: Status,
    logo: &'a str,
}

#[derive(Serialize)]
struct Answer<'a> {
    token: &'a str,
    profile: Profile<'a>,
    max_file_size: u64,
    available_storage: u64,
}

/// The success body, field for field as the spec shows it.
fn answer(token: &str, account: &User, share_id: Option<&str>) -> Reply {
    let p = &account.profile;
    let body = Answer {
        token,
        profile: Profile {
            id: share_id.or(p.id.as_deref()).unwrap_or(&account.name),
            username: &account.name,
            realname: &p.realname,
            accountname: &p.accountname,
            email: &p.email,
            address: p.address.as_deref(),
            mobile: p.mobile.as_deref(),
            expires: p.expires.as_deref(),
            status: account.status,
            logo: &p.logo,
        },
        max_file_size: p.max_file_size,
        available_storage: p.available_storage,
    };
    Reply::json(200, &body).no_store()
}

fn store_unavailable(e: &crate::store::StoreError) -> Outcome {
    store_failed(e, Format::Json)
}

/// `POST /api/authtoken`.
pub async fn authtoken(
    auth: &Authenticator,
    body: &[u8],
    content_type: Option<&str>,
    client: Option<IpAddr>,
) -> Outcome {
    let request = match AuthTokenRequest::parse(body, content_type) {
        Ok(r) => r,
        Err(message) => return Outcome::bad_request(Format::Json, &message),
    };
    let (grant, who) = match &request.method {
        Method::ShareUrl(url) => match auth.share_login(url, client) {
            Ok(grant) => {
                let who = grant.account.name.clone();
                (grant, who)
            }
            Err(LoginError::Limited(limited)) => return login_limited(&limited, Format::Json),
            Err(_) => {
                let reply = Reply::message(401, "Unknown, expired or revoked share URL");
                return Outcome::new(reply, BadCredentialsReason::UnknownShare.as_str());
            }
        },
        Method::Password { username, password } => {
            match auth.check_user_password(username, password, client).await {
                Ok(account) => (
                    Grant {
                        account,
                        share: None,
                    },
                    username.clone(),
                ),
                Err(LoginError::BadCredentials(reason)) => {
                    let reply = Reply::message(401, "Invalid username or password");
                    let who = match reason {
                        BadCredentialsReason::UnknownUser => unknown_user_label(username),
                        _ => username.clone(),
                    };
                    return Outcome::new(reply, reason.as_str()).for_user(who);
                }
                Err(LoginError::Overloaded) => {
                    return Outcome::failed(
                        Failure::Overloaded,
                        Format::Json,
                        &"password verification queue full",
                    )
                }
                Err(LoginError::Limited(limited)) => return login_limited(&limited, Format::Json),
                Err(LoginError::Store(e)) => return store_unavailable(&e),
            }
        }
    };
    match auth
        .issue_iogates_token(&grant, request.device_id.as_deref())
        .await
    {
        Ok(token) => {
            let share_id = grant.share.as_deref().map(|s| s.id.as_str());
            let result = if share_id.is_some() {
                "share_success"
            } else {
                "success"
            };
            Outcome::new(answer(&token, &grant.account, share_id), result).for_user(who)
        }
        Err(e) => store_unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, ct: &str) -> Result<AuthTokenRequest, String> {
        AuthTokenRequest::parse(body.as_bytes(), Some(ct))
    }

    #[test]
    fn json_share_url_with_string_or_numeric_device() {
        let r = parse(
            r#"{"url":"http://h/show/1","deviceId":"ab12","appName":"iotransfer"}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(r.method, Method::ShareUrl("http://h/show/1".into()));
        assert_eq!(r.device_id.as_deref(), Some("ab12"));
        let r = parse(
            r#"{"url":"u","deviceId":1700000000123,"username":null,"password":false}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(r.device_id.as_deref(), Some("1700000000123"));
        let r = parse(
            r#"{"username":"a","password":"p","url":null}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(
            r.method,
            Method::Password {
                username: "a".into(),
                password: "p".into()
            }
        );
        assert_eq!(r.device_id, None);
    }

    #[test]
    fn form_bodies_work_too() {
        let r = parse(
            "url=http%3A%2F%2Fh%2Fshow%2F1&deviceId=42",
            "application/x-www-form-urlencoded",
        )
        .unwrap();
        assert_eq!(r.method, Method::ShareUrl("http://h/show/1".into()));
        let r = parse(
            "username=a&password=p&url=null",
            "application/x-www-form-urlencoded",
        )
        .unwrap();
        assert!(matches!(r.method, Method::Password { .. }));
    }

    #[test]
    fn malformed_missing_and_contradictory_requests_are_refused() {
        for (body, ct) in [
            ("{not json", "application/json"),
            ("[1,2]", "application/json"),
            ("{}", "application/json"),
            (r#"{"username":"a"}"#, "application/json"),
            (
                r#"{"username":"a","password":"p","url":"u"}"#,
                "application/json",
            ),
            (r#"{"url":5}"#, "application/json"),
            (r#"{"url":"u","deviceId":[1]}"#, "application/json"),
            ("url=a&url=b", "application/x-www-form-urlencoded"),
            ("username=%FF", "application/x-www-form-urlencoded"),
        ] {
            assert!(parse(body, ct).is_err(), "{body}");
        }
    }
}
