//! The durable embedded default: redb, one file in the data directory.
//!
//! redb is synchronous (and `insert`/`revoke` wait for fsync), so every call runs on the blocking
//! pool. Touches and purges commit with eventual durability: losing one costs at most a little
//! sliding time, never a token a client holds.

use super::{StoreError, TokenRecord, TokenStore};
use crate::auth::token::TokenHash;
use async_trait::async_trait;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use std::path::Path;
use std::sync::Arc;

/// token hash → JSON record
const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");
/// subject → token hashes (for per-user caps and share revocation)
const BY_SUBJECT: MultimapTableDefinition<&str, &[u8; 32]> =
    MultimapTableDefinition::new("by_subject");

pub struct RedbStore {
    db: Arc<Database>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(record: &TokenRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("a token record always serialises")
}

impl RedbStore {
    /// Open (or create) `tokens.redb` in `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("tokens.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(TOKENS).map_err(io)?;
        txn.open_multimap_table(BY_SUBJECT).map_err(io)?;
        txn.commit().map_err(io)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StoreError::Io(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl TokenStore for RedbStore {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            {
                let mut tokens = txn.open_table(TOKENS).map_err(io)?;
                tokens
                    .insert(&hash.0, encode(&record).as_slice())
                    .map_err(io)?;
                let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(io)?;
                by_subject
                    .insert(record.subject.as_str(), &hash.0)
                    .map_err(io)?;
            }
            txn.commit().map_err(io)
        })
        .await
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let tokens = txn.open_table(TOKENS).map_err(io)?;
            let found = tokens.get(&hash.0).map_err(io)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            let existed = {
                let mut tokens = txn.open_table(TOKENS).map_err(io)?;
                let removed = tokens.remove(&hash.0).map_err(io)?;
                let record = removed.map(|v| decode(v.value())).transpose()?;
                if let Some(record) = &record {
                    let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(io)?;
                    by_subject
                        .remove(record.subject.as_str(), &hash.0)
                        .map_err(io)?;
                }
                record.is_some()
            };
            txn.commit().map_err(io)?;
            Ok(existed)
        })
        .await
    }

    async fn touch(&self, hash: TokenHash, last_used: u64) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::Eventual);
            {
                let mut tokens = txn.open_table(TOKENS).map_err(io)?;
                let current = tokens.get(&hash.0).map_err(io)?.map(|v| decode(v.value()));
                if let Some(mut record) = current.transpose()? {
                    if last_used > record.last_used {
                        record.last_used = last_used;
                        tokens
                            .insert(&hash.0, encode(&record).as_slice())
                            .map_err(io)?;
                    }
                }
            }
            txn.commit().map_err(io)
        })
        .await
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        let subject = subject.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(io)?;
            let tokens = txn.open_table(TOKENS).map_err(io)?;
            let mut found = Vec::new();
            for hash in by_subject.get(subject.as_str()).map_err(io)? {
                let hash = *hash.map_err(io)?.value();
                if let Some(v) = tokens.get(&hash).map_err(io)? {
                    found.push((TokenHash(hash), decode(v.value())?));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::Eventual);
            let purged = {
                let mut tokens = txn.open_table(TOKENS).map_err(io)?;
                let mut dead = Vec::new();
                for entry in tokens.iter().map_err(io)? {
                    let (key, value) = entry.map_err(io)?;
                    // A corrupt record can never validate: purge it too.
                    let live = decode(value.value()).ok().filter(|r| r.is_live_at(now));
                    if live.is_none() {
                        let subject = decode(value.value()).map(|r| r.subject).ok();
                        dead.push((*key.value(), subject));
                    }
                }
                let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(io)?;
                for (hash, subject) in &dead {
                    tokens.remove(hash).map_err(io)?;
                    if let Some(subject) = subject {
                        by_subject.remove(subject.as_str(), hash).map_err(io)?;
                    }
                }
                dead.len()
            };
            txn.commit().map_err(io)?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(io)?;
            txn.open_table(TOKENS).map_err(io)?.len().map_err(io)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn redb_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        contract::run_all(&RedbStore::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn tokens_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let h = TokenHash::of("t");
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.insert(h, contract::record("u", 1)).await.unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.get(h).await.unwrap(), Some(contract::record("u", 1)));
    }
}
