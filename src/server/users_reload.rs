//! Reloads the users file when its content changes (a Kubernetes secret update, an edit), and
//! refuses a file that cannot be what the operator meant:
//! - one that does not parse;
//! - one with no user at all;
//! - one that drops more than a configured share of the users holding live tokens. An editor
//!   saving in place can be read cut at a user boundary: such a file still parses, and applying it
//!   would revoke the missing users' tokens for good.
//!
//! A refused file leaves the previous users in force, with one ERROR line; the next change of the
//! file is read again.

use crate::auth::users::UserDirectory;
use crate::auth::Authenticator;
use crate::metrics::UsersReloadResult;
use crate::store::StoreError;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct UsersReload {
    pub path: PathBuf,
    pub auth: Arc<Authenticator>,
    pub every: Duration,
    /// `users_reload_max_removed_share`.
    pub max_removed_share: f64,
}

/// Why a file that parses is not applied.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoUsers,
    /// `missing` of the `holders` users holding live tokens are not in the new file.
    LooksTruncated {
        missing: usize,
        holders: usize,
    },
}

/// Whether dropping `missing` of `holders` token holders is more than the guard allows.
fn too_many_removed(missing: usize, holders: usize, max_share: f64) -> bool {
    missing > 0 && missing as f64 > max_share * holders as f64
}

impl UsersReload {
    fn digest(bytes: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(bytes).into()
    }

    /// Counts the users of the directory in force who hold a live token, and those of them the
    /// new file leaves out.
    async fn check(&self, new: &UserDirectory) -> Result<Option<Refusal>, StoreError> {
        if new.is_empty() {
            return Ok(Some(Refusal::NoUsers));
        }
        let old = self.auth.users();
        let store = self.auth.cache().store();
        let now = self.auth.now_ms();
        let (mut holders, mut missing) = (0, 0);
        for name in old.names() {
            let tokens = store.tokens_of(name).await?;
            if tokens.iter().any(|(_, r)| r.is_live_at(now)) {
                holders += 1;
                missing += usize::from(new.get(name).is_none());
            }
        }
        Ok(too_many_removed(missing, holders, self.max_removed_share)
            .then_some(Refusal::LooksTruncated { missing, holders }))
    }

    /// Apply the file's text if it can be, and count what became of it; `false` when the store
    /// did not answer, so the same content should be tried again at the next tick.
    async fn reload(&self, text: &str) -> bool {
        let result = self.apply(text).await;
        self.auth
            .metrics()
            .users_reloads
            .with_label_values(&[result.as_str()])
            .inc();
        result != UsersReloadResult::Deferred
    }

    async fn apply(&self, text: &str) -> UsersReloadResult {
        let file = self.path.display();
        let directory = match UserDirectory::parse(text) {
            Ok(directory) => directory,
            Err(e) => {
                tracing::error!(%file, error = %e, "users file not reloaded: the previous users stay in force");
                return UsersReloadResult::Refused;
            }
        };
        match self.check(&directory).await {
            Ok(None) => {}
            Ok(Some(Refusal::NoUsers)) => {
                tracing::error!(%file, "users file has no user (cut short?): not reloaded, the previous users stay in force");
                return UsersReloadResult::Refused;
            }
            Ok(Some(Refusal::LooksTruncated { missing, holders })) => {
                tracing::error!(
                    %file,
                    missing,
                    holders,
                    max_share = self.max_removed_share,
                    "users file leaves out too many users holding live tokens (cut short while \
                     being written?): not reloaded, the previous users stay in force. Replace the \
                     file atomically; raise users_reload_max_removed_share to remove them on purpose",
                );
                return UsersReloadResult::Refused;
            }
            Err(e) => {
                tracing::error!(%file, error = %e, "users file not reloaded yet: cannot tell which users hold tokens");
                return UsersReloadResult::Deferred;
            }
        }
        let (users, shares) = (directory.len(), directory.shares().count());
        match self.auth.replace_users(directory).await {
            Ok(revoked) => tracing::info!(
                target: "authgate::audit",
                event = "config_reload",
                %file,
                users,
                shares,
                revoked,
            ),
            Err(e) => tracing::error!(
                error = %e,
                "users reloaded; revoking the tokens of removed users is retried until it succeeds"
            ),
        }
        UsersReloadResult::Applied
    }
}

#[async_trait]
impl BackgroundService for UsersReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last = std::fs::read(&self.path).map(|b| Self::digest(&b)).ok();
        // Said once when the file goes, once when it comes back: never a line per tick.
        let mut unreadable = false;
        let mut ticks = tokio::time::interval(self.every);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticks.tick() => {
                    let bytes = match tokio::fs::read(&self.path).await {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            if !std::mem::replace(&mut unreadable, true) {
                                self.auth
                                    .metrics()
                                    .users_reloads
                                    .with_label_values(&[UsersReloadResult::Unreadable.as_str()])
                                    .inc();
                                tracing::error!(
                                    file = %self.path.display(),
                                    error = %e,
                                    "users file cannot be read: the users loaded before stay in force",
                                );
                            }
                            continue;
                        }
                    };
                    if std::mem::replace(&mut unreadable, false) {
                        tracing::info!(file = %self.path.display(), "users file readable again");
                    }
                    let digest = Self::digest(&bytes);
                    if last != Some(digest) && self.reload(&String::from_utf8_lossy(&bytes)).await {
                        last = Some(digest);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::too_many_removed;

    #[test]
    fn the_guard_counts_a_share_of_the_token_holders() {
        assert!(
            !too_many_removed(0, 0, 0.5),
            "nothing held, nothing missing"
        );
        assert!(!too_many_removed(1, 2, 0.5), "half is the limit itself");
        assert!(too_many_removed(2, 3, 0.5));
        assert!(too_many_removed(1, 1, 0.5));
        assert!(!too_many_removed(10, 10, 1.0), "1.0 turns it off");
        assert!(too_many_removed(1, 100, 0.0), "0.0: no holder may go");
    }
}
