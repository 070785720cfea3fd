//! The forward-auth decision endpoint: an ingress asks whether to let a request through, and
//! gets the decision forwarding would have made, with the identity headers on a 200. Which
//! request it asks about is read by `forward_auth`; the decision is `authorize`'s, as for a
//! forwarded request. Nothing is forwarded from here.

use super::{headers, Ctx, Gateway, Route};
use crate::auth::Principal;
use crate::forward_auth::{self, Original};
use crate::reply::{Failure, Format, Reply};
use http::header::{HeaderName, HeaderValue};
use pingora::proxy::Session;

impl Gateway {
    /// 200, with every identity header (empty where it does not apply).
    fn allowed(&self, principal: Option<&Principal>) -> Reply {
        let mut reply = Reply::empty(200).no_store();
        for (name, value) in self.settings.identity.all_of(principal) {
            // Subjects and app names are validated header values where they are made.
            if let Ok(value) = HeaderValue::from_str(value) {
                reply = reply.with_header(HeaderName::clone(name), value);
            }
        }
        reply
    }

    /// The decision on the original request the proxy names.
    pub(super) async fn decide(&self, session: &Session, ctx: &mut Ctx) -> Reply {
        if !ctx.origin.trusted_peer {
            ctx.result = Some("forward_auth_untrusted");
            return Reply::text(
                403,
                "Forbidden: decisions are given to forwarding.trusted_proxies only",
            );
        }
        let req = session.req_header();
        let verify = self
            .settings
            .forward_auth_path
            .as_deref()
            .unwrap_or_default();
        let own_path = ctx.target.as_ref().map_or("", |t| t.path());
        let named = if own_path == verify {
            forward_auth::from_headers(&req.headers, &self.settings.path_policy)
        } else {
            // Envoy's form. The request's own target was made canonical already; the original
            // must be the very bytes Envoy sent.
            match ctx.target.as_ref().and_then(|t| t.rewritten()) {
                Some(_) => Err(forward_auth::OriginalError::NotCanonical),
                None => forward_auth::from_path(
                    &req.method,
                    req.raw_path(),
                    verify,
                    &self.settings.path_policy,
                ),
            }
        };
        let Original {
            method,
            target,
            query,
        } = match named {
            Ok(original) => original,
            Err(refused) => {
                ctx.result = Some(refused.as_str());
                return Failure::bad_request(Format::Text, &refused);
            }
        };
        let path = target.path();
        // authgate's own endpoints and CORS preflights need no token (authgate answers them
        // wherever the ingress sends them); public paths neither.
        if self.classify(&method, path) != Route::Forward || self.is_public(path) {
            ctx.public = true;
            return self.allowed(None);
        }
        let header = headers::credentials(req);
        let in_url = match self.url_token(path, query.as_deref(), &header) {
            Ok(found) => found,
            Err(refused) => {
                ctx.result = Some(refused.as_str());
                return Failure::bad_request(Format::Text, &refused);
            }
        };
        let (credentials, permission) = super::presented(header, in_url.as_ref());
        match self
            .auth
            .authorize_needing(credentials, &method, path, permission)
            .await
        {
            Ok(principal) => {
                let reply = self.allowed(Some(&principal));
                ctx.principal = Some(principal);
                reply
            }
            Err(denial) => {
                ctx.denial = Some(denial);
                Reply::decision_denied(denial)
            }
        }
    }
}
