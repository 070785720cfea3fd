//! Issuing tokens, and checking a GWOS token for the auth endpoints (validatetoken, logout).
//! The check of a forwarded request's token is `access`.

use super::login::Grant;
use super::revocation::RevokeError;
use super::users::User;
use super::{ct_eq, plausible_token, Authenticator};
use crate::cache::{CachedToken, Lookup};
use crate::metrics::RevokeReason;
use crate::store::{earliest, StoreError, TokenKind, TokenRecord};
use crate::token::{self, TokenHash};
use std::sync::Arc;

impl Authenticator {
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
            .with_label_values(&[TokenKind::Gwos.as_str()])
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
            let _ = self.revoke(hash, RevokeReason::Evicted).await;
            tracing::info!(target: "authgate::audit", event = "token_evicted", user = subject, token = %hash.short());
        }
        Ok(())
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
            Some((hash, _)) => self.revoke(hash, RevokeReason::Logout).await,
            None => Ok(false),
        }
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
            .with_label_values(&[TokenKind::Iogates.as_str()])
            .inc();
        for (old, r) in earlier {
            if r.kind == TokenKind::Iogates
                && device_id.is_some()
                && r.device_id.as_deref() == device_id
            {
                // Not saved: held in memory and retried (see `revoke`); the login itself stands.
                let _ = self.revoke(old, RevokeReason::Replaced).await;
            }
        }
        Ok(token)
    }
}
