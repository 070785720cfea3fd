//! Revocation: one token, a user's or a share's tokens, the tokens of users a reload removed or
//! gave a new password. Durable before anyone is answered; when the store cannot save it, the
//! token is refused in this process at once, and saving is retried.

use super::users::UserDirectory;
use super::{plausible_token, Authenticator};
use crate::metrics::RevokeReason;
use crate::store::StoreError;
use crate::token::TokenHash;
use std::sync::Arc;

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

impl Authenticator {
    /// Revoke durably, then forget in the cache, before answering anyone. `reason` labels the
    /// metric (logout, replaced, evicted, revoked, config_reload).
    ///
    /// When the store cannot save it, the token is still refused on every path of this process
    /// at once (held in the cache until `save_held_revocations` gets it written), and the caller
    /// learns so: never "an error, and the token still works".
    pub async fn revoke(&self, hash: TokenHash, reason: RevokeReason) -> Result<bool, RevokeError> {
        let counted = self
            .metrics
            .tokens_revoked
            .with_label_values(&[reason.as_str()]);
        match self.cache.store().revoke(hash).await {
            Ok(existed) => {
                self.cache.forget(hash).await;
                if existed {
                    counted.inc();
                }
                Ok(existed)
            }
            Err(e) => {
                let Some(held) = self.cache.hold_revoked(hash).await else {
                    // Full: answered as a store failure, nothing done (see `hold_revoked`).
                    return Err(RevokeError::Store(e));
                };
                self.metrics.revocations_unsaved.set(held as i64);
                counted.inc();
                tracing::error!(
                    target: "authgate::audit",
                    event = "revocation_not_saved",
                    token = %hash.short(),
                    reason = reason.as_str(),
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
            if let Err(e) = self
                .revoke_subject(subject, RevokeReason::ConfigReload)
                .await
            {
                self.unrevoked_subjects_list()
                    .extend(subjects[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether anything waits for `save_held_revocations`.
    pub fn has_held_revocations(&self) -> bool {
        self.cache.has_unsaved() || !self.unrevoked_subjects_list().is_empty()
    }

    fn unrevoked_subjects_list(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.unrevoked_subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Revoke one token by its value; `false` when it was unknown.
    pub async fn revoke_token(&self, token: &str) -> Result<bool, RevokeError> {
        if !plausible_token(token, self.policy.max_token_length) {
            return Ok(false);
        }
        self.revoke(TokenHash::of(token), RevokeReason::Revoked)
            .await
    }

    /// Revoke every token of a user or share subject; returns how many. A revocation the store
    /// cannot save counts: it is held in memory and retried (see `revoke`).
    pub async fn revoke_subject(
        &self,
        subject: &str,
        reason: RevokeReason,
    ) -> Result<usize, StoreError> {
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
            match self
                .revoke_subject(&subject, RevokeReason::ConfigReload)
                .await
            {
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
