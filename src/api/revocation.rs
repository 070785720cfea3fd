//! Revocation endpoints of authgate's own: a client retires its token, an admin retires any token
//! or all tokens of a share. Effective on the next request, on every path.

use super::{revocation_failed, store_failed, Outcome};
use crate::auth::shares::share_subject;
use crate::auth::{Authenticator, Credentials, Denial};
use crate::metrics::RevokeReason;
use crate::reply::{Format, Reply};
use serde::Deserialize;

/// `DELETE /api/authtoken`: revoke the token this request carries (in any accepted header).
pub async fn revoke_presented(auth: &Authenticator, credentials: Credentials<'_>) -> Outcome {
    let Some(token) = credentials.token else {
        return Outcome::bad_request(Format::Json, "No token to revoke");
    };
    match auth.revoke_token(token).await {
        Ok(true) => Outcome::new(Reply::message(200, "Token revoked"), "success"),
        Ok(false) => Outcome::new(Reply::message(401, "Invalid token"), "unknown_token"),
        Err(e) => revocation_failed(&e, Format::Json),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRevokeRequest {
    /// One token, by value.
    token: Option<String>,
    /// A share, by id or by share URL: all its tokens.
    share: Option<String>,
}

/// `POST /api/authgate/revoke` `{"token": …}` or `{"share": …}`, by a user with the admin role.
pub async fn admin_revoke(
    auth: &Authenticator,
    credentials: Credentials<'_>,
    body: &[u8],
) -> Outcome {
    let caller = match auth
        .authorize(credentials, &http::Method::POST, "/api/authgate/revoke")
        .await
    {
        Ok(p) if p.share.is_none() && p.account.role == crate::auth::users::Role::Admin => p,
        Ok(_) | Err(Denial::Forbidden) => {
            return Outcome::new(
                Reply::message(403, "Revocation needs an admin account"),
                "forbidden",
            )
        }
        Err(denial) => {
            return Outcome::new(Reply::denial(denial, credentials.source, false), "denied")
        }
    };
    let who = caller.subject().to_string();
    let request = match serde_json::from_slice::<AdminRevokeRequest>(body) {
        Ok(r) => r,
        Err(_) => {
            return Outcome::bad_request(Format::Json, "Expected {\"token\": …} or {\"share\": …}")
                .for_user(who)
        }
    };
    let revoked = match (request.token, request.share) {
        (Some(token), None) => match auth.revoke_token(&token).await {
            Ok(revoked) => Ok(usize::from(revoked)),
            Err(e) => return revocation_failed(&e, Format::Json).for_user(who),
        },
        (None, Some(share)) => {
            let users = auth.users();
            let id = users
                .share_by_url(&share)
                .map_or(share.clone(), |s| s.id.clone());
            auth.revoke_subject(&share_subject(&id), RevokeReason::Revoked)
                .await
        }
        _ => {
            return Outcome::bad_request(Format::Json, "Give exactly one of token or share")
                .for_user(who)
        }
    };
    match revoked {
        Ok(n) => Outcome::new(
            Reply::json(200, &serde_json::json!({ "revoked": n })),
            "success",
        )
        .for_user(who),
        Err(e) => store_failed(&e, Format::Json).for_user(who),
    }
}
