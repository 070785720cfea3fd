//! Authentication and authorisation: users, passwords, tokens, and the decisions built on them.
//! Protocol-free: the wire contracts live in `api`, the HTTP plumbing in `proxy`.

pub mod access;
pub mod jasypt;
pub mod password;
pub mod shares;
pub mod users;

pub use access::{CredentialSource, Credentials, Denial, Principal};

use crate::cache::{CachedToken, Lookup, TokenCache};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{earliest, StoreError, TokenKind, TokenRecord};
use crate::token::{self, TokenHash};
use arc_swap::ArcSwap;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use jasypt::JasyptKey;
use password::{Overloaded, PasswordVerifier};
use shares::Share;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use users::{Status, User, UserDirectory};

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

/// A revocation that did not go as asked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The token could not be looked up: nothing was revoked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store could not save it. The token is refused in this process from now on, and the
    /// write is retried until it succeeds; only a restart before then would bring it back.
    #[error("revocation enforced in memory, not yet saved: {0}")]
    NotSaved(StoreError),
}

impl From<Overloaded> for LoginError {
    fn from(_: Overloaded) -> Self {
        LoginError::Overloaded
    }
}

/// Token lifetime and role settings, from `gwos:`, `iogates:` and `limits:` in the config.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub idle_timeout_ms: u64,
    pub max_lifetime_ms: Option<u64>,
    pub max_tokens_per_user: Option<usize>,
    pub reader_post_paths: Vec<String>,
    pub max_token_length: usize,
    /// ioGates tokens: no expiry unless set.
    pub iogates_max_lifetime_ms: Option<u64>,
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> TokenPolicy {
        let gwos = &config.gwos;
        TokenPolicy {
            idle_timeout_ms: gwos.idle_timeout_seconds.get().saturating_mul(1000),
            max_lifetime_ms: gwos
                .max_lifetime_seconds
                .map(|s| s.get().saturating_mul(1000)),
            max_tokens_per_user: gwos.max_tokens_per_user.map(|n| n.get()),
            reader_post_paths: gwos.reader_post_paths.clone(),
            max_token_length: config.limits.max_token_length,
            iogates_max_lifetime_ms: config
                .iogates
                .max_lifetime_seconds
                .map(|s| s.get().saturating_mul(1000)),
        }
    }
}

/// The account (and, for a share login, the share) an ioGates token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: Arc<User>,
    pub share: Option<Arc<Share>>,
}

pub struct Authenticator {
    users: ArcSwap<UserDirectory>,
    /// Subjects whose tokens a users reload had to revoke but could not list (store failing).
    unrevoked_subjects: std::sync::Mutex<Vec<String>>,
    verifier: PasswordVerifier,
    cache: TokenCache,
    jasypt: Option<JasyptKey>,
    policy: TokenPolicy,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

/// Base64 as GroundWork clients send it: standard or URL-safe alphabet, padding optional.
pub fn lenient_base64(value: &str) -> Option<Vec<u8>> {
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
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        Authenticator {
            users: ArcSwap::from_pointee(users),
            unrevoked_subjects: Default::default(),
            verifier,
            cache,
            jasypt,
            policy,
            metrics,
            clock,
        }
    }

    /// Now, by the clock the token logic uses.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn verifier(&self) -> &PasswordVerifier {
        &self.verifier
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The users and shares as configured now.
    pub fn users(&self) -> Arc<UserDirectory> {
        self.users.load_full()
    }

    /// A user as named by a GWOS client: Base64 of the name (GW7) or the raw name (GW8).
    pub fn find_user(&self, given: &str) -> Option<Arc<User>> {
        let directory = self.users.load();
        lenient_base64(given)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|name| directory.get(&name))
            .or_else(|| directory.get(given))
            .cloned()
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
    ) -> Result<Arc<User>, LoginError> {
        let user = self.find_user(user_given);
        let password = self.plain_password(password_given);
        self.check_password(user, password).await
    }

    /// Check GW8 credentials (`authenticatePassword`, spec §5): the exact user name, and the
    /// password as typed, or its Jasypt ciphertext in encrypted mode. Never Base64 as a second
    /// guess: that would let two passwords in per user and double the cost of a wrong one.
    pub async fn check_gw8_credentials(
        &self,
        name: &str,
        password_given: &str,
    ) -> Result<Arc<User>, LoginError> {
        match &self.jasypt {
            Some(key) => {
                let user = self.users.load().get(name).cloned();
                self.check_password(user, key.decrypt(password_given)).await
            }
            None => self.check_user_password(name, password_given).await,
        }
    }

    /// Check a plain password (ioGates sends it as is, inside TLS) for an exact user name.
    pub async fn check_user_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Arc<User>, LoginError> {
        let user = self.users.load().get(name).cloned();
        self.check_password(user, Some(password.to_string())).await
    }

    /// One password verification whatever the outcome (a dummy hash for unknown users), so that
    /// timing tells nothing about which part was wrong.
    async fn check_password(
        &self,
        user: Option<Arc<User>>,
        password: Option<String>,
    ) -> Result<Arc<User>, LoginError> {
        let decodable = password.is_some();
        let hash = user.as_ref().filter(|_| decodable).map(|u| &u.password);
        let matched = self
            .verifier
            .verify(hash, password.unwrap_or_default())
            .await?;
        let reason = match (user, decodable, matched) {
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
        let now = self.now_ms();
        let token = token::new_gwos_token();
        let hash = TokenHash::of(&token);
        let record = TokenRecord {
            kind: TokenKind::Gwos,
            subject: user.name.clone(),
            role: user.role.as_str().into(),
            app_name: app_name.to_string(),
            device_id: None,
            issued_at: now,
            last_used: now,
            idle_timeout_ms: Some(self.policy.idle_timeout_ms),
            max_expires_at: self.policy.max_lifetime_ms.map(|l| now.saturating_add(l)),
        };
        self.cache.store().insert(hash, record.clone()).await?;
        self.cache.remember(hash, &record).await;
        self.metrics
            .tokens_issued
            .with_label_values(&["gwos"])
            .inc();
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
            // Not saved: held in memory and retried (see `revoke`); the login itself stands.
            let _ = self.revoke(hash, "evicted").await;
            tracing::info!(target: "authgate::audit", event = "token_evicted", user = subject, token = %hash.short());
        }
        Ok(())
    }

    /// Revoke durably, then forget in the cache, before answering anyone. `reason` labels the
    /// metric (logout, replaced, evicted, revoked, config_reload).
    ///
    /// When the store cannot save it, the token is still refused on every path of this process
    /// at once (held in the cache until `save_held_revocations` gets it written), and the caller
    /// learns so: never "an error, and the token still works".
    pub async fn revoke(&self, hash: TokenHash, reason: &str) -> Result<bool, RevokeError> {
        let counted = self.metrics.tokens_revoked.with_label_values(&[reason]);
        match self.cache.store().revoke(hash).await {
            Ok(existed) => {
                self.cache.forget(hash).await;
                if existed {
                    counted.inc();
                }
                Ok(existed)
            }
            Err(e) => {
                let held = self.cache.hold_revoked(hash).await;
                self.metrics.revocations_unsaved.set(held as i64);
                counted.inc();
                tracing::error!(
                    target: "authgate::audit",
                    event = "revocation_not_saved",
                    token = %hash.short(),
                    reason,
                    error = %e,
                    "token refused in this process; saving the revocation is retried until it succeeds",
                );
                Err(RevokeError::NotSaved(e))
            }
        }
    }

    /// Retry what a failing store could not take: held revocations, then the subjects a users
    /// reload could not revoke. Stops at the first failure; `Ok` when nothing is left.
    pub async fn save_held_revocations(&self) -> Result<(), StoreError> {
        for hash in self.cache.unsaved() {
            self.cache.store().revoke(hash).await?;
            let left = self.cache.saved(&hash);
            self.metrics.revocations_unsaved.set(left as i64);
            tracing::info!(target: "authgate::audit", event = "revocation_saved", token = %hash.short());
        }
        let subjects = std::mem::take(&mut *self.unrevoked_subjects_list());
        for (i, subject) in subjects.iter().enumerate() {
            if let Err(e) = self.revoke_subject(subject, "config_reload").await {
                self.unrevoked_subjects_list()
                    .extend(subjects[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether anything waits for `save_held_revocations`.
    pub fn has_held_revocations(&self) -> bool {
        !self.cache.unsaved().is_empty() || !self.unrevoked_subjects_list().is_empty()
    }

    fn unrevoked_subjects_list(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.unrevoked_subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A live GWOS token issued for exactly this app name.
    async fn live_gwos_token(
        &self,
        token: &str,
        app_name: &str,
    ) -> Result<Option<(TokenHash, Arc<CachedToken>)>, StoreError> {
        if !plausible_token(token, self.policy.max_token_length) {
            return Ok(None);
        }
        let hash = TokenHash::of(token);
        match self.cache.lookup(hash, self.now_ms()).await? {
            Lookup::Valid { token, .. }
                if token.binding.kind == TokenKind::Gwos
                    && ct_eq(&token.binding.app_name, app_name) =>
            {
                Ok(Some((hash, token)))
            }
            _ => Ok(None),
        }
    }

    /// `/api/auth/validatetoken`: true for a live token of this app whose user is Active (the
    /// verdict a proxied request gets); a successful check is a use.
    pub async fn validate_gwos(&self, token: &str, app_name: &str) -> Result<bool, StoreError> {
        let found = self.live_gwos_token(token, app_name).await?;
        let Some((hash, t)) = found else {
            return Ok(false);
        };
        if self.users.load().active(&t.binding.subject).is_none() {
            return Ok(false);
        }
        self.cache.touch(hash, &t, self.now_ms());
        Ok(true)
    }

    /// `/api/auth/logout`: revoke a live token of this app; `false` (and nothing revoked) otherwise.
    pub async fn logout_gwos(&self, token: &str, app_name: &str) -> Result<bool, RevokeError> {
        match self.live_gwos_token(token, app_name).await? {
            Some((hash, _)) => self.revoke(hash, "logout").await,
            None => Ok(false),
        }
    }

    /// The share a client's share URL names, if usable now: known, not expired, owner active.
    pub fn share_grant(&self, url: &str) -> Option<Grant> {
        let directory = self.users.load();
        let share = directory.share_by_url(url)?;
        if share.is_expired_at(self.now_ms()) {
            return None;
        }
        let account = directory.active(&share.owner)?.clone();
        Some(Grant {
            account,
            share: Some(share.clone()),
        })
    }

    /// Issue an ioGates token. A client logs in again on every run: the earlier token of the same
    /// account or share and the same device is retired, so tokens do not pile up. Without a
    /// `deviceId` nothing is retired: two holders of one share are two clients, not one.
    pub async fn issue_iogates_token(
        &self,
        grant: &Grant,
        device_id: Option<&str>,
    ) -> Result<String, StoreError> {
        let subject = grant
            .share
            .as_ref()
            .map_or_else(|| grant.account.name.clone(), |s| s.subject());
        let now = self.now_ms();
        let lifetime_end = self
            .policy
            .iogates_max_lifetime_ms
            .map(|l| now.saturating_add(l));
        let share_end = grant.share.as_ref().and_then(|s| s.expires_at);
        let max_expires_at = earliest(lifetime_end, share_end);
        let token = token::new_opaque_token();
        let hash = TokenHash::of(&token);
        let record = TokenRecord {
            kind: TokenKind::Iogates,
            subject: subject.clone(),
            role: grant.account.role.as_str().into(),
            app_name: String::new(),
            device_id: device_id.map(String::from),
            issued_at: now,
            last_used: now,
            idle_timeout_ms: None,
            max_expires_at,
        };
        let store = self.cache.store();
        let earlier = store.tokens_of(&subject).await?;
        store.insert(hash, record.clone()).await?;
        self.cache.remember(hash, &record).await;
        self.metrics
            .tokens_issued
            .with_label_values(&["iogates"])
            .inc();
        for (old, r) in earlier {
            if r.kind == TokenKind::Iogates
                && device_id.is_some()
                && r.device_id.as_deref() == device_id
            {
                // Not saved: held in memory and retried (see `revoke`); the login itself stands.
                let _ = self.revoke(old, "replaced").await;
            }
        }
        Ok(token)
    }

    /// Revoke one token by its value; `false` when it was unknown.
    pub async fn revoke_token(&self, token: &str) -> Result<bool, RevokeError> {
        if !plausible_token(token, self.policy.max_token_length) {
            return Ok(false);
        }
        self.revoke(TokenHash::of(token), "revoked").await
    }

    /// Revoke every token of a user or share subject; returns how many. A revocation the store
    /// cannot save counts: it is held in memory and retried (see `revoke`).
    pub async fn revoke_subject(&self, subject: &str, reason: &str) -> Result<usize, StoreError> {
        let tokens = self.cache.store().tokens_of(subject).await?;
        let mut revoked = 0;
        for (hash, _) in tokens {
            match self.revoke(hash, reason).await {
                Ok(false) => {}
                Ok(true) | Err(_) => revoked += 1,
            }
        }
        Ok(revoked)
    }

    /// Swap in a reloaded users file. Tokens of users and shares no longer in it are revoked (they
    /// were already refused from the moment of the swap).
    pub async fn replace_users(&self, new: UserDirectory) -> Result<usize, StoreError> {
        let old = self.users.swap(Arc::new(new));
        let new = self.users.load();
        let mut gone: Vec<String> = old
            .shares()
            .filter(|s| new.share(&s.id).is_none())
            .map(|s| s.subject())
            .collect();
        // Removed users, and users whose password changed: a new password ends every session
        // the old one opened (the usual reason to change it is that it leaked).
        gone.extend(
            old.names()
                .filter(|n| {
                    let before = old.get(n).map(|u| &u.password);
                    new.get(n).is_none_or(|u| Some(&u.password) != before)
                })
                .cloned(),
        );
        let mut revoked = 0;
        let mut failed = None;
        for subject in gone {
            match self.revoke_subject(&subject, "config_reload").await {
                Ok(n) => revoked += n,
                // Retried by `save_held_revocations` once the store answers again.
                Err(e) => {
                    self.unrevoked_subjects_list().push(subject);
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(revoked), Err)
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
