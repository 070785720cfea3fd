//! A `TokenStore` decorator, whatever the backend: it times every operation, counts failures by
//! class, and keeps `StoreHealth` (can the store be written now?) for readiness and recovery.

use super::{Announcement, Purged, StoreError, TokenRecord, TokenStore};
use crate::metrics::{Metrics, StoreOp};
use crate::token::TokenHash;
use async_trait::async_trait;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Whether the store takes writes now, and if not, why. A failed operation marks it failing; only
/// a successful write (an insert, a revocation, a recovery probe) marks it writable again: a read
/// that works proves nothing about a full disk.
pub struct StoreHealth {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// `authgate_store_writable`, kept in step.
    writable: prometheus::IntGauge,
}

impl StoreHealth {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Why it is failing (the last error), for `/readyz`.
    pub fn problem(&self) -> Option<String> {
        self.is_failing()
            .then(|| {
                self.last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .flatten()
    }

    fn failed(&self, e: &StoreError) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        self.writable.set(0);
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %e, "token store failing: logins and revocations cannot be saved until it recovers");
        }
    }

    /// A durable write succeeded. Also called by the recovery task once it has saved what was
    /// held in memory.
    pub fn wrote(&self) {
        self.writable.set(1);
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("token store writable again");
        }
    }
}

pub struct Instrumented {
    inner: Arc<dyn TokenStore>,
    metrics: Arc<Metrics>,
    health: Arc<StoreHealth>,
}

/// Whether an operation's success shows that writes work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn TokenStore>, metrics: Arc<Metrics>) -> Instrumented {
        metrics.store_writable.set(1);
        let health = Arc::new(StoreHealth {
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            writable: metrics.store_writable.clone(),
        });
        Instrumented {
            inner,
            metrics,
            health,
        }
    }

    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    async fn observe<T>(
        &self,
        operation: StoreOp,
        kind: Kind,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timer = self
            .metrics
            .store_duration
            .with_label_values(&[operation.as_str()])
            .start_timer();
        let result = work.await;
        timer.observe_duration();
        match &result {
            Err(e) => {
                self.metrics
                    .store_errors
                    .with_label_values(&[operation.as_str(), e.class()])
                    .inc();
                // One record that cannot be decoded is that token's problem, not the store's.
                if !matches!(e, StoreError::Undecodable(_)) {
                    self.health.failed(e);
                }
            }
            Ok(_) if kind == Kind::Write => self.health.wrote(),
            Ok(_) => {}
        }
        result
    }
}

#[async_trait]
impl TokenStore for Instrumented {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.observe(
            StoreOp::Insert,
            Kind::Write,
            self.inner.insert(hash, record),
        )
        .await
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.observe(StoreOp::Get, Kind::Read, self.inner.get(hash))
            .await
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        self.observe(StoreOp::Revoke, Kind::Write, self.inner.revoke(hash))
            .await
    }

    async fn touch(&self, uses: Vec<(TokenHash, u64)>) -> Result<(), StoreError> {
        // Not fsynced: its success says little about durable writes.
        self.observe(StoreOp::Touch, Kind::Read, self.inner.touch(uses))
            .await
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        self.observe(StoreOp::TokensOf, Kind::Read, self.inner.tokens_of(subject))
            .await
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        let purged = self
            .observe(StoreOp::Purge, Kind::Read, self.inner.purge_expired(now))
            .await?;
        self.metrics
            .store_undecodable
            .set(purged.undecodable as i64);
        Ok(purged)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.observe(StoreOp::Count, Kind::Read, self.inner.count())
            .await
    }

    async fn recover(&self) -> Result<(), StoreError> {
        // Its probe write alone does not make the store healthy again: the recovery task says so
        // once the revocations held meanwhile are saved too (no flapping while the disk is full).
        self.observe(StoreOp::Recover, Kind::Read, self.inner.recover())
            .await
    }

    async fn live(&self, now: u64) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        self.inner.live(now).await
    }

    fn close(&self) -> Result<(), StoreError> {
        self.inner.close()
    }

    fn announcements(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Announcement>> {
        self.inner.announcements()
    }

    async fn tell_replicas(&self, message: Vec<u8>) -> Result<(), StoreError> {
        self.inner.tell_replicas(message).await
    }
}
