//! Where issued tokens live: the `TokenStore` trait and its implementations.
//!
//! Records are keyed by the SHA-256 of the token, so a copy of the store yields no usable token.
//! Every write that a client relies on (`insert`, `revoke`) is durable before it returns.

mod instrumented;
mod memory;
mod migrate;
mod record;
mod redb;
mod redis;

pub use self::instrumented::{Instrumented, StoreHealth};
pub use self::memory::MemoryStore;
pub use self::record::{decode_record, encode_record, RECORD_FORMAT};
pub use self::redb::{OnDamage, OpenError, RedbStore};
pub use self::redis::{Endpoint as RedisEndpoint, RedisStore};

use crate::token::TokenHash;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Gwos,
    Iogates,
}

impl TokenKind {
    /// The metric label (`authgate_tokens_issued_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Gwos => "gwos",
            TokenKind::Iogates => "iogates",
        }
    }
}

/// What the store knows of one token. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub kind: TokenKind,
    /// The user name (or, for share tokens, the share id).
    pub subject: String,
    /// The role at issue time (`admin`, `reader`). Never read: every decision takes the role from
    /// the users file as it is now. Still written, because earlier releases require the field.
    pub role: String,
    /// The GWOS app name the token is bound to (empty for ioGates tokens).
    pub app_name: String,
    pub device_id: Option<String>,
    pub issued_at: u64,
    pub last_used: u64,
    /// Sliding idle timeout, if any.
    pub idle_timeout_ms: Option<u64>,
    /// Absolute end of life, if any.
    pub max_expires_at: Option<u64>,
}

impl TokenRecord {
    /// When the token dies if it is not used again; `None` = never.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at_if_last_used(self.last_used)
    }

    /// The same, had its latest use been at `last_used`.
    pub fn expires_at_if_last_used(&self, last_used: u64) -> Option<u64> {
        let idle = self.idle_timeout_ms.map(|t| last_used.saturating_add(t));
        earliest(idle, self.max_expires_at)
    }

    /// Strict: a token is dead from the millisecond its deadline is reached.
    pub fn is_live_at(&self, now: u64) -> bool {
        self.expires_at().is_none_or(|deadline| now < deadline)
    }
}

/// Why the store did not answer. Every variant fails closed: nothing is assumed valid.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// It cannot be read or written now: an I/O error (a full disk, say), or it is closed or
    /// being reopened. Retrying later may succeed.
    #[error("token store unavailable: {0}")]
    Unavailable(String),
    /// The file is damaged; reopening runs redb's repair.
    #[error("token store damaged: {0}")]
    Damaged(String),
    /// One record cannot be decoded. It is kept (a later version may read it), never deleted.
    #[error("token record cannot be decoded: {0}")]
    Undecodable(String),
}

impl StoreError {
    /// The metric label of this failure class.
    pub fn class(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Damaged(_) => "damaged",
            StoreError::Undecodable(_) => "undecodable",
        }
    }
}

/// What one purge pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub deleted: usize,
    /// Records skipped because they cannot be decoded (kept, and counted in a metric).
    pub undecodable: usize,
}

/// What a store shared by several replicas tells each of them about the others' revocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// This token was revoked (by any replica): drop it from the cache.
    Revoked(TokenHash),
    /// The feed was interrupted and is back: revocations may have been missed meanwhile, so
    /// nothing cached can be trusted.
    Interrupted,
    /// A message another replica sent with [`TokenStore::tell_replicas`] (never one's own).
    FromReplica(Vec<u8>),
}

#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Durably record a new token.
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError>;
    /// The record, live or not (the caller decides); `None` when unknown or revoked.
    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError>;
    /// Durably forget a token; `false` when it was unknown.
    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError>;
    /// Record later uses (sliding expiry): each token's latest use, unknown tokens skipped. The
    /// cache writes them back at a coarse step, never per request, and in batches: one write
    /// where the store can.
    async fn touch(&self, uses: Vec<(TokenHash, u64)>) -> Result<(), StoreError>;
    /// Every token of one subject (for the per-user cap and for revoking a share's tokens). A
    /// record that cannot be decoded is left out (and kept).
    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError>;
    /// Delete the records dead at `now`. A record that cannot be decoded is skipped, never deleted.
    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError>;
    /// Number of records held.
    async fn count(&self) -> Result<u64, StoreError>;
    /// Every token live at `now` (to move them to another store). Records that cannot be decoded
    /// are left out, and left where they are.
    async fn live(&self, now: u64) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError>;
    /// Bring a failing store back if it can be: reopen it if needed, then prove that a durable
    /// write succeeds. `Ok` means writes work now.
    async fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Close cleanly (blocking; called once, at shutdown). Later calls fail as `Unavailable`.
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The feed of revocations made by any replica, for a store shared by several; `None` for a
    /// store of one process. Given once: later calls get `None`.
    fn announcements(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Announcement>> {
        None
    }
    /// Send a message to every other replica on this store (their `announcements`); nothing
    /// for a store of one process.
    async fn tell_replicas(&self, _message: Vec<u8>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The earlier of two optional deadlines (`None` = never).
/// Copy every live token from one store to another (`authgate migrate-store`): an operator moves
/// between redb and Redis without logging every client out. Returns how many were copied.
pub async fn copy_live_tokens(
    from: &dyn TokenStore,
    to: &dyn TokenStore,
    now: u64,
) -> Result<usize, StoreError> {
    let live = from.live(now).await?;
    for (hash, record) in &live {
        to.insert(*hash, record.clone()).await?;
    }
    Ok(live.len())
}

pub fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The system time in Unix milliseconds (see `crate::clock` for the clock the token logic uses).
pub use crate::clock::system_now_ms as now_ms;

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every `TokenStore` must have; each implementation runs these.
    use super::*;

    pub fn record(subject: &str, last_used: u64) -> TokenRecord {
        TokenRecord {
            kind: TokenKind::Gwos,
            subject: subject.into(),
            role: "admin".into(),
            app_name: "app".into(),
            device_id: None,
            issued_at: last_used,
            last_used,
            idle_timeout_ms: Some(1_000),
            max_expires_at: None,
        }
    }

    pub async fn run_all(store: &dyn TokenStore) {
        let a = TokenHash::of("a");
        let b = TokenHash::of("b");
        let c = TokenHash::of("c");
        assert_eq!(store.get(a).await.unwrap(), None);
        store.insert(a, record("alice", 10_000)).await.unwrap();
        store.insert(b, record("alice", 20_000)).await.unwrap();
        store.insert(c, record("bob", 5_000)).await.unwrap();
        assert_eq!(store.get(a).await.unwrap(), Some(record("alice", 10_000)));
        assert_eq!(store.count().await.unwrap(), 3);

        let mut of_alice: Vec<_> = store.tokens_of("alice").await.unwrap();
        of_alice.sort_by_key(|(_, r)| r.issued_at);
        assert_eq!(
            of_alice.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
            vec![a, b]
        );

        store
            .touch(vec![(a, 30_000), (TokenHash::of("nobody"), 1), (c, 1)])
            .await
            .unwrap();
        assert_eq!(store.get(a).await.unwrap().unwrap().last_used, 30_000);
        assert_eq!(
            store.get(c).await.unwrap(),
            Some(record("bob", 5_000)),
            "never moved back"
        );

        assert!(store.revoke(b).await.unwrap());
        assert!(!store.revoke(b).await.unwrap());
        assert_eq!(store.get(b).await.unwrap(), None);
        assert_eq!(store.tokens_of("alice").await.unwrap().len(), 1);

        // c died at 6_000, a lives until 31_000.
        assert_eq!(store.purge_expired(20_000).await.unwrap().deleted, 1);
        assert_eq!(store.get(c).await.unwrap(), None);
        assert!(store.tokens_of("bob").await.unwrap().is_empty());
        assert_eq!(store.count().await.unwrap(), 1);
        let live = store.live(20_000).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, a);
        assert!(
            store.live(40_000).await.unwrap().is_empty(),
            "a died at 31_000"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::contract::record;

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let mut r = record("u", 1_000);
        assert_eq!(r.expires_at(), Some(2_000));
        assert!(r.is_live_at(1_999));
        assert!(!r.is_live_at(2_000));
        r.max_expires_at = Some(1_500);
        assert_eq!(r.expires_at(), Some(1_500));
        r.idle_timeout_ms = None;
        r.max_expires_at = None;
        assert!(r.is_live_at(u64::MAX));
    }
}
