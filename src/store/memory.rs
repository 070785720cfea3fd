//! Tokens in process memory: lost on exit. For tests and throwaway runs.

use super::{Purged, StoreError, TokenRecord, TokenStore};
use crate::token::TokenHash;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct MemoryStore {
    tokens: RwLock<HashMap<TokenHash, TokenRecord>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TokenHash, TokenRecord>> {
        self.tokens
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TokenHash, TokenRecord>> {
        self.tokens
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.write().insert(hash, record);
        Ok(())
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.read().get(&hash).cloned())
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        Ok(self.write().remove(&hash).is_some())
    }

    async fn touch(&self, uses: Vec<(TokenHash, u64)>) -> Result<(), StoreError> {
        let mut records = self.write();
        for (hash, last_used) in uses {
            if let Some(record) = records.get_mut(&hash) {
                record.last_used = record.last_used.max(last_used);
            }
        }
        Ok(())
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        Ok(self
            .read()
            .iter()
            .filter(|(_, r)| r.subject == subject)
            .map(|(h, r)| (*h, r.clone()))
            .collect())
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        let mut tokens = self.write();
        let before = tokens.len();
        tokens.retain(|_, r| r.is_live_at(now));
        Ok(Purged {
            deleted: before - tokens.len(),
            undecodable: 0,
        })
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.read().len() as u64)
    }

    async fn live(&self, now: u64) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        Ok(self
            .read()
            .iter()
            .filter(|(_, r)| r.is_live_at(now))
            .map(|(h, r)| (*h, r.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        super::super::contract::run_all(&super::MemoryStore::new()).await;
    }
}
