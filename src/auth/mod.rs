//! Authentication and authorisation: users, passwords, tokens, and the decisions built on them.
//! Protocol-free: the wire contracts live in `api`, the HTTP plumbing in `proxy`.

pub mod jasypt;
pub mod password;
pub mod token;
pub mod users;

use crate::cache::{CachedToken, Lookup, TokenCache};
use crate::config::GwosConfig;
use crate::store::{now_ms, StoreError, TokenKind, TokenRecord};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use jasypt::JasyptKey;
use password::{Overloaded, PasswordVerifier};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use token::TokenHash;
use users::{Role, Status, User, UserDirectory};

/// Why a login failed. Every credential problem is the same `BadCredentials` to the client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("bad credentials")]
    BadCredentials(BadCredentialsReason),
    #[error("too many password verifications in progress")]
    Overloaded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// For audit logs only; never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCredentialsReason {
    UnknownUser,
    WrongPassword,
    UndecodablePassword,
    NotActive,
}

impl BadCredentialsReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::UndecodablePassword => "undecodable_password",
            Self::NotActive => "not_active",
        }
    }
}

impl From<Overloaded> for LoginError {
    fn from(_: Overloaded) -> Self {
        LoginError::Overloaded
    }
}

/// Why a forwarded request was not let through; mapped to a status in one place (`proxy::reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No credential at all.
    Missing,
    /// A GWOS token without an app name.
    MissingAppName,
    /// Unknown, revoked or malformed token.
    Invalid,
    Expired,
    /// The token was issued for another app name.
    AppMismatch,
    /// Authenticated, but the role does not allow this method and path.
    Forbidden,
    /// The token store did not answer.
    Unavailable,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::MissingAppName => "missing_app_name",
            Denial::Invalid => "invalid",
            Denial::Expired => "expired",
            Denial::AppMismatch => "app_mismatch",
            Denial::Forbidden => "forbidden",
            Denial::Unavailable => "unavailable",
        }
    }
}

/// The credentials a forwarded request carries (already trimmed; empty counts as absent).
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub app_name: Option<&'a str>,
}

/// Who a forwarded request acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: Arc<CachedToken>,
    pub cache_hit: bool,
}

impl Principal {
    pub fn subject(&self) -> &str {
        &self.token.record.subject
    }
    pub fn role(&self) -> Role {
        self.token.record.role
    }
    pub fn app_name(&self) -> &str {
        &self.token.record.app_name
    }
}

/// Token lifetime and role settings, from `gwos:` in the config.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub idle_timeout_ms: u64,
    pub max_lifetime_ms: Option<u64>,
    pub max_tokens_per_user: Option<usize>,
    pub reader_post_paths: Vec<String>,
    pub max_token_length: usize,
}

impl TokenPolicy {
    pub fn from_config(gwos: &GwosConfig, max_token_length: usize) -> TokenPolicy {
        TokenPolicy {
            idle_timeout_ms: gwos.idle_timeout_seconds.saturating_mul(1000),
            max_lifetime_ms: gwos.max_lifetime_seconds.map(|s| s.saturating_mul(1000)),
            max_tokens_per_user: gwos.max_tokens_per_user,
            reader_post_paths: gwos.reader_post_paths.clone(),
            max_token_length,
        }
    }
}

pub struct Authenticator {
    users: UserDirectory,
    verifier: PasswordVerifier,
    cache: TokenCache,
    jasypt: Option<JasyptKey>,
    policy: TokenPolicy,
}

/// Base64 as GroundWork clients send it: standard or URL-safe alphabet, padding optional.
fn lenient_base64(value: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    // A `+` left unescaped in a form arrives as a space (even a trailing one).
    let value = value.replace(' ', "+");
    let value = value.trim();
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(value)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(value))
        .ok()
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A credential worth looking up: not absurdly long, printable ASCII only.
fn plausible_token(token: &str, max_len: usize) -> bool {
    !token.is_empty() && token.len() <= max_len && token.bytes().all(|b| b.is_ascii_graphic())
}

impl Authenticator {
    pub fn new(
        users: UserDirectory,
        verifier: PasswordVerifier,
        cache: TokenCache,
        jasypt: Option<JasyptKey>,
        policy: TokenPolicy,
    ) -> Authenticator {
        Authenticator {
            users,
            verifier,
            cache,
            jasypt,
            policy,
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn verifier(&self) -> &PasswordVerifier {
        &self.verifier
    }

    /// A user as named by a client: Base64 of the name (GW7) or the raw name (GW8).
    pub fn find_user(&self, given: &str) -> Option<&User> {
        lenient_base64(given)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|name| self.users.get(&name))
            .or_else(|| self.users.get(given))
    }

    /// The plain password: Jasypt-decrypted in encrypted mode, Base64-decoded otherwise.
    fn plain_password(&self, given: &str) -> Option<String> {
        match &self.jasypt {
            Some(key) => key.decrypt(given),
            None => lenient_base64(given).and_then(|bytes| String::from_utf8(bytes).ok()),
        }
    }

    /// Check a user's credentials as a GWOS client sends them. Costs one password verification
    /// whatever the outcome, so that timing tells nothing about which part was wrong.
    pub async fn check_gwos_credentials(
        &self,
        user_given: &str,
        password_given: &str,
    ) -> Result<&User, LoginError> {
        let user = self.find_user(user_given);
        let password = self.plain_password(password_given);
        let hash = user.filter(|_| password.is_some()).map(|u| &u.password);
        let matched = self
            .verifier
            .verify(hash, password.clone().unwrap_or_default())
            .await?;
        let reason = match (user, password.is_some(), matched) {
            (None, _, _) => BadCredentialsReason::UnknownUser,
            (Some(_), false, _) => BadCredentialsReason::UndecodablePassword,
            (Some(_), true, false) => BadCredentialsReason::WrongPassword,
            (Some(u), true, true) if u.status != Status::Active => BadCredentialsReason::NotActive,
            (Some(u), true, true) => return Ok(u),
        };
        Err(LoginError::BadCredentials(reason))
    }

    /// Issue a GWOS token bound to `app_name`, durably, then enforce the per-user cap.
    pub async fn issue_gwos_token(
        &self,
        user: &User,
        app_name: &str,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let token = token::new_gwos_token();
        let hash = TokenHash::of(&token);
        let record = TokenRecord {
            kind: TokenKind::Gwos,
            subject: user.name.clone(),
            role: user.role,
            app_name: app_name.to_string(),
            device_id: None,
            issued_at: now,
            last_used: now,
            idle_timeout_ms: Some(self.policy.idle_timeout_ms),
            max_expires_at: self.policy.max_lifetime_ms.map(|l| now.saturating_add(l)),
        };
        self.cache.store().insert(hash, record.clone()).await?;
        self.cache.remember(hash, record, now).await;
        if let Some(cap) = self.policy.max_tokens_per_user {
            self.evict_beyond_cap(&user.name, cap, now).await?;
        }
        Ok(token)
    }

    /// Revoke a user's oldest live GWOS tokens until at most `cap` remain.
    async fn evict_beyond_cap(
        &self,
        subject: &str,
        cap: usize,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut live: Vec<_> = self
            .cache
            .store()
            .tokens_of(subject)
            .await?
            .into_iter()
            .filter(|(_, r)| r.kind == TokenKind::Gwos && r.is_live_at(now))
            .collect();
        if live.len() <= cap {
            return Ok(());
        }
        live.sort_by_key(|(hash, r)| (r.issued_at, *hash));
        let excess = live.len() - cap;
        for (hash, _) in live.into_iter().take(excess) {
            self.revoke(hash).await?;
            tracing::info!(target: "authgate::audit", event = "token_evicted", user = subject, token = %hash.short());
        }
        Ok(())
    }

    /// Revoke durably, then forget in the cache, before answering anyone.
    pub async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        let existed = self.cache.store().revoke(hash).await?;
        self.cache.forget(hash).await;
        Ok(existed)
    }

    /// A live GWOS token issued for exactly this app name.
    async fn live_gwos_token(
        &self,
        token: &str,
        app_name: &str,
    ) -> Result<Option<Arc<CachedToken>>, StoreError> {
        if !plausible_token(token, self.policy.max_token_length) {
            return Ok(None);
        }
        match self.cache.lookup(TokenHash::of(token), now_ms()).await? {
            Lookup::Valid { token, .. }
                if token.record.kind == TokenKind::Gwos
                    && ct_eq(&token.record.app_name, app_name) =>
            {
                Ok(Some(token))
            }
            _ => Ok(None),
        }
    }

    /// `/api/auth/validatetoken`: true for a live token of this app; a successful check is a use.
    pub async fn validate_gwos(&self, token: &str, app_name: &str) -> Result<bool, StoreError> {
        let found = self.live_gwos_token(token, app_name).await?;
        if let Some(t) = &found {
            self.cache.touch(t, now_ms());
        }
        Ok(found.is_some())
    }

    /// `/api/auth/logout`: revoke a live token of this app; `false` (and nothing revoked) otherwise.
    pub async fn logout_gwos(&self, token: &str, app_name: &str) -> Result<bool, StoreError> {
        match self.live_gwos_token(token, app_name).await? {
            Some(t) => self.revoke(t.hash).await,
            None => Ok(false),
        }
    }

    /// The whole decision for a forwarded request: who it is and whether it may do this.
    pub async fn authorize(
        &self,
        credentials: Credentials<'_>,
        method: &http::Method,
        normalized_path: &str,
    ) -> Result<Principal, Denial> {
        let Some(token) = credentials.token else {
            return Err(Denial::Missing);
        };
        if !plausible_token(token, self.policy.max_token_length) {
            return Err(if credentials.app_name.is_none() {
                Denial::MissingAppName
            } else {
                Denial::Invalid
            });
        }
        let now = now_ms();
        let lookup = self
            .cache
            .lookup(TokenHash::of(token), now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token store lookup failed");
                Denial::Unavailable
            })?;
        let (cached, cache_hit) = match lookup {
            Lookup::Valid { token, cache_hit } => (token, cache_hit),
            // GWOS clients without an app name get 400 whatever the token: the contract.
            _ if credentials.app_name.is_none() => return Err(Denial::MissingAppName),
            Lookup::Unknown { .. } => return Err(Denial::Invalid),
            Lookup::Expired => return Err(Denial::Expired),
        };
        if cached.record.kind == TokenKind::Gwos {
            let Some(app_name) = credentials.app_name else {
                return Err(Denial::MissingAppName);
            };
            if !ct_eq(&cached.record.app_name, app_name) {
                return Err(Denial::AppMismatch);
            }
        }
        if !self.role_allows(cached.record.role, method, normalized_path) {
            return Err(Denial::Forbidden);
        }
        self.cache.touch(&cached, now);
        Ok(Principal {
            token: cached,
            cache_hit,
        })
    }

    fn role_allows(&self, role: Role, method: &http::Method, path: &str) -> bool {
        match role {
            Role::Admin => true,
            Role::Reader => {
                method == http::Method::GET
                    || method == http::Method::HEAD
                    || (method == http::Method::POST
                        && self.policy.reader_post_paths.iter().any(|p| p == path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_base64_accepts_what_clients_send() {
        let expect = Some(b"RESTAPIACCESS".to_vec());
        assert_eq!(lenient_base64("UkVTVEFQSUFDQ0VTUw=="), expect);
        assert_eq!(
            lenient_base64("UkVTVEFQSUFDQ0VTUw"),
            expect,
            "padding dropped"
        );
        // "??>" is Pz8+ in standard Base64, Pz8- URL-safe, and "Pz8 " when `+` lost its escape.
        for v in ["Pz8+", "Pz8-", "Pz8 "] {
            assert_eq!(lenient_base64(v), Some(b"??>".to_vec()), "{v}");
        }
        assert_eq!(lenient_base64("not base64!"), None);
    }

    #[test]
    fn plausible_tokens_are_bounded_printable_ascii() {
        assert!(plausible_token("0b6e1d2a-1111-4222-8333-444455556666", 256));
        assert!(!plausible_token("", 256));
        assert!(!plausible_token(&"a".repeat(257), 256));
        assert!(!plausible_token("a b", 256));
        assert!(!plausible_token("a\u{7f}", 256));
    }
}
