//! authgate's own endpoints (the auth calls): the body read within limits, the call handed to
//! its wire contract in `api`, and the audit event. The answer goes back through `respond`.

use super::body::{self, BodyError};
use super::headers;
use super::route::Route;
use super::Gateway;
use crate::api::form::Params;
use crate::api::gwos::{GwosApi, LOGIN_BAD_REQUEST, TOKEN_BAD_REQUEST};
use crate::api::{iogates, revocation, Outcome};
use crate::metrics::LoginProtocol;
use crate::reply::{Failure, Format};
use pingora::proxy::Session;
use std::net::IpAddr;

impl Gateway {
    /// Read the body of an auth call and answer it.
    pub(super) async fn answer_auth_call(
        &self,
        session: &mut Session,
        route: Route,
        client: Option<IpAddr>,
    ) -> Outcome {
        let body = match body::read_bounded(
            session,
            self.settings.auth_body_limit,
            self.settings.auth_body_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Outcome::of(Failure::TooLarge, Format::Text),
            Err(BodyError::Malformed) => {
                return Outcome::bad_request(Format::Text, "Malformed request body")
            }
        };
        let api = GwosApi {
            auth: &self.auth,
            failed_login_status: self.settings.failed_login_status,
            client,
        };
        let req = session.req_header();
        let credentials = headers::credentials(req);
        match route {
            Route::AuthenticatePassword => {
                return api.authenticate_password(&body, credentials.app_name).await
            }
            Route::AuthToken => {
                let content_type = req
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                return iogates::authtoken(&self.auth, &body, content_type, client).await;
            }
            Route::RevokeToken => {
                return revocation::revoke_presented(&self.auth, credentials).await
            }
            Route::AdminRevoke => {
                return revocation::admin_revoke(&self.auth, credentials, &body).await
            }
            _ => {}
        }
        let params = match Params::parse(&body, req.uri.query()) {
            Ok(p) => p,
            Err(_) => {
                let message = if route == Route::Login {
                    LOGIN_BAD_REQUEST
                } else {
                    TOKEN_BAD_REQUEST
                };
                return Outcome::bad_request(Format::Text, message);
            }
        };
        match route {
            Route::Login => api.login(&params).await,
            Route::Logout => api.logout(&params).await,
            _ => api.validate(&params).await,
        }
    }
}

/// The protocol label of a login call, if `route` is one.
pub(super) fn login_protocol(route: Route) -> Option<LoginProtocol> {
    match route {
        Route::Login => Some(LoginProtocol::Gwos),
        Route::AuthenticatePassword => Some(LoginProtocol::Gw8),
        Route::AuthToken => Some(LoginProtocol::Iogates),
        _ => None,
    }
}

/// One audit event per login or logout: who, from where, and how it went (never a secret).
pub(super) fn audit(route: Route, outcome: &Outcome, client: Option<IpAddr>) {
    tracing::info!(
        target: "authgate::audit",
        event = route.as_str(),
        result = outcome.result,
        status = outcome.reply.status,
        user = outcome.user.as_deref(),
        client = client.map(tracing::field::display),
    );
}
