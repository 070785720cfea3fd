//! The decision for a forwarded request: who it is (a token, through the cache) and whether it may
//! do this (role, app name, share scope).

use super::shares::Share;
use super::users::{Role, User};
use super::{ct_eq, plausible_token, Authenticator};
use crate::cache::{CachedToken, Lookup};
use crate::store::TokenKind;
use crate::target::has_prefix;
use crate::token::TokenHash;
use crate::url_token::Permission;
use http::Method;
use std::sync::Arc;

/// Which header carried the token: it decides the error format (GWOS text or ioGates JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// `GWOS-API-TOKEN`
    #[default]
    Gwos,
    /// ioGates' `token` header
    TokenHeader,
    /// `Authorization: Bearer`
    Bearer,
    /// The URL, where a route carries it (`url_tokens`: ioGates transfers).
    Url,
}

/// The credentials a forwarded request carries (trimmed; empty counts as absent).
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub source: CredentialSource,
}

/// Why a forwarded request was not let through; mapped to a status in one place (`proxy::reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No credential at all.
    Missing,
    /// A GWOS token without an app name.
    MissingAppName,
    /// Unknown, revoked or malformed token, or its account or share is gone or inactive.
    Invalid,
    Expired,
    /// The token was issued for another app name.
    AppMismatch,
    /// Authenticated, but the role does not allow this method and path.
    Forbidden,
    /// A share token outside its share's paths or permissions.
    OutOfScope,
    /// The token store did not answer.
    Unavailable,
}

impl Denial {
    /// Every denial, to create each metric series at zero at start-up.
    pub const ALL: [Denial; 8] = [
        Denial::Missing,
        Denial::MissingAppName,
        Denial::Invalid,
        Denial::Expired,
        Denial::AppMismatch,
        Denial::Forbidden,
        Denial::OutOfScope,
        Denial::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::MissingAppName => "missing_app_name",
            Denial::Invalid => "invalid",
            Denial::Expired => "expired",
            Denial::AppMismatch => "app_mismatch",
            Denial::Forbidden => "forbidden",
            Denial::OutOfScope => "out_of_scope",
            Denial::Unavailable => "unavailable",
        }
    }
}

/// Who a forwarded request acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: Arc<CachedToken>,
    pub cache_hit: bool,
    /// The account acting: the user, or the share's owner.
    pub account: Arc<User>,
    pub share: Option<Arc<Share>>,
}

impl Principal {
    pub fn subject(&self) -> &str {
        &self.account.name
    }
    /// `admin`, `reader`, or `share` for a share token.
    pub fn role_label(&self) -> &'static str {
        match self.share {
            Some(_) => "share",
            None => self.account.role.as_str(),
        }
    }
    pub fn app_name(&self) -> &str {
        &self.token.binding.app_name
    }
    pub fn share_id(&self) -> Option<&str> {
        self.share.as_deref().map(|s| s.id.as_str())
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn is_write(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT || method == Method::PATCH
}

impl Authenticator {
    /// The whole decision for a forwarded request (`path` canonical: `target::RequestTarget`).
    pub async fn authorize(
        &self,
        credentials: Credentials<'_>,
        method: &Method,
        path: &str,
    ) -> Result<Principal, Denial> {
        self.authorize_needing(credentials, method, path, Permission::Method)
            .await
    }

    /// The same, on a route where a share token needs `permission` whatever the method.
    pub async fn authorize_needing(
        &self,
        credentials: Credentials<'_>,
        method: &Method,
        path: &str,
        permission: Permission,
    ) -> Result<Principal, Denial> {
        let Some(token) = credentials.token else {
            return Err(Denial::Missing);
        };
        let gwos_header_without_app =
            credentials.source == CredentialSource::Gwos && credentials.app_name.is_none();
        if !plausible_token(token, self.policy.max_token_length) {
            return Err(if gwos_header_without_app {
                Denial::MissingAppName
            } else {
                Denial::Invalid
            });
        }
        let now = self.now_ms();
        let hash = TokenHash::of(token);
        let lookup = self.cache.lookup(hash, now).await.map_err(|e| {
            tracing::error!(error = %e, "token store lookup failed");
            Denial::Unavailable
        })?;
        let (cached, cache_hit) = match lookup {
            Lookup::Valid { token, cache_hit } => (token, cache_hit),
            // GWOS clients without an app name get 400 whatever the token: the contract.
            _ if gwos_header_without_app => return Err(Denial::MissingAppName),
            Lookup::Unknown { .. } => return Err(Denial::Invalid),
            Lookup::Expired => return Err(Denial::Expired),
        };
        let binding = &cached.binding;
        if binding.kind == TokenKind::Gwos {
            let Some(app_name) = credentials.app_name else {
                return Err(Denial::MissingAppName);
            };
            if !ct_eq(&binding.app_name, app_name) {
                return Err(Denial::AppMismatch);
            }
        }
        // The account (and share) as configured now: removed or deactivated means no access.
        let directory = self.users.load();
        let share = match binding.subject.strip_prefix("share:") {
            Some(id) => {
                let share = directory.share(id).ok_or(Denial::Invalid)?;
                if share.is_expired_at(now) {
                    return Err(Denial::Expired);
                }
                Some(share.clone())
            }
            None => None,
        };
        let owner = share
            .as_deref()
            .map_or(&*binding.subject, |s| s.owner.as_str());
        let account = directory.active(owner).ok_or(Denial::Invalid)?.clone();
        match &share {
            Some(share) => Self::share_allows(share, method, path, permission)?,
            None if !self.role_allows(account.role, method, path) => return Err(Denial::Forbidden),
            None => {}
        }
        self.cache.touch(hash, &cached, now);
        Ok(Principal {
            token: cached,
            cache_hit,
            account,
            share,
        })
    }

    fn role_allows(&self, role: Role, method: &Method, path: &str) -> bool {
        match role {
            Role::Admin => true,
            Role::Reader => {
                is_read(method)
                    || (method == Method::POST
                        && self.policy.reader_post_paths.iter().any(|p| p == path))
            }
        }
    }

    fn share_allows(
        share: &Share,
        method: &Method,
        path: &str,
        permission: Permission,
    ) -> Result<(), Denial> {
        let in_scope = share.paths.iter().any(|prefix| has_prefix(path, prefix));
        let granted = &share.permissions;
        let permitted = match permission {
            Permission::Method => {
                (is_read(method) && granted.may_download()) || (is_write(method) && granted.upload)
            }
            Permission::Upload => granted.upload,
            Permission::Download => granted.may_download(),
        };
        if in_scope && permitted {
            Ok(())
        } else {
            Err(Denial::OutOfScope)
        }
    }
}
