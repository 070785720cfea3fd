//! A `TokenStore` decorator that times every operation and counts failures, whatever the backend.

use super::{StoreError, TokenRecord, TokenStore};
use crate::auth::token::TokenHash;
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;

pub struct Instrumented {
    inner: Arc<dyn TokenStore>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn TokenStore>, metrics: Arc<Metrics>) -> Instrumented {
        Instrumented { inner, metrics }
    }

    async fn observe<T>(
        &self,
        operation: &str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timer = self
            .metrics
            .store_duration
            .with_label_values(&[operation])
            .start_timer();
        let result = work.await;
        timer.observe_duration();
        if result.is_err() {
            self.metrics
                .store_errors
                .with_label_values(&[operation])
                .inc();
        }
        result
    }
}

#[async_trait]
impl TokenStore for Instrumented {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.observe("insert", self.inner.insert(hash, record))
            .await
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.observe("get", self.inner.get(hash)).await
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        self.observe("revoke", self.inner.revoke(hash)).await
    }

    async fn touch(&self, hash: TokenHash, last_used: u64) -> Result<(), StoreError> {
        self.observe("touch", self.inner.touch(hash, last_used))
            .await
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        self.observe("tokens_of", self.inner.tokens_of(subject))
            .await
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.observe("purge", self.inner.purge_expired(now)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.observe("count", self.inner.count()).await
    }
}
