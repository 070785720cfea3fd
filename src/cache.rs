//! moka in front of the token store: the hot path is one cache lookup.
//!
//! - positive entries live no longer than `max_ttl` nor than the token's remaining life;
//! - unknown tokens are remembered for a few seconds, so a flood of junk cannot hammer the store;
//! - sliding expiry is tracked in memory and written back at a coarse step, in the background.

use crate::auth::token::TokenHash;
use crate::metrics::Metrics;
use crate::store::{StoreError, TokenRecord, TokenStore};
use moka::future::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A validated token as the cache holds it.
#[derive(Debug)]
pub struct CachedToken {
    pub hash: TokenHash,
    pub record: TokenRecord,
    /// Latest use seen by this process (ms), ahead of the store's copy.
    last_used: AtomicU64,
    /// Latest use written back to the store (ms).
    persisted: AtomicU64,
    /// How long this entry may stay cached.
    cache_ttl: Duration,
}

impl CachedToken {
    fn live_at(&self, now: u64) -> bool {
        self.record
            .expires_at_if_last_used(self.last_used.load(Ordering::Relaxed))
            .is_none_or(|deadline| now < deadline)
    }
}

/// The answer of a lookup.
#[derive(Debug)]
pub enum Lookup {
    Valid {
        token: Arc<CachedToken>,
        cache_hit: bool,
    },
    /// Never issued, revoked, or remembered as such.
    Unknown { negative_hit: bool },
    /// Known but past its deadline.
    Expired,
}

struct PerEntryTtl;

impl Expiry<TokenHash, Arc<CachedToken>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.cache_ttl)
    }
}

pub struct TokenCache {
    positive: Cache<TokenHash, Arc<CachedToken>>,
    negative: Cache<TokenHash, ()>,
    store: Arc<dyn TokenStore>,
    max_ttl: Duration,
    touch_step_ms: u64,
    /// Lookup counters, resolved once (a labelled lookup per request costs a hash and a lock).
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    negative_hits: prometheus::IntCounter,
}

impl TokenCache {
    pub fn new(
        store: Arc<dyn TokenStore>,
        capacity: u64,
        max_ttl: Duration,
        negative_ttl: Duration,
        touch_step: Duration,
        metrics: Arc<Metrics>,
    ) -> TokenCache {
        TokenCache {
            positive: Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
            negative: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(negative_ttl)
                .build(),
            store,
            max_ttl,
            touch_step_ms: touch_step.as_millis() as u64,
            hits: metrics.cache_lookups.with_label_values(&["hit"]),
            misses: metrics.cache_lookups.with_label_values(&["miss"]),
            negative_hits: metrics.cache_lookups.with_label_values(&["negative_hit"]),
        }
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub async fn lookup(&self, hash: TokenHash, now: u64) -> Result<Lookup, StoreError> {
        if let Some(token) = self.positive.get(&hash).await {
            self.hits.inc();
            if token.live_at(now) {
                return Ok(Lookup::Valid {
                    token,
                    cache_hit: true,
                });
            }
            self.positive.invalidate(&hash).await;
            return Ok(Lookup::Expired);
        }
        if self.negative.contains_key(&hash) {
            self.negative_hits.inc();
            return Ok(Lookup::Unknown { negative_hit: true });
        }
        self.misses.inc();
        let Some(record) = self.store.get(hash).await? else {
            self.negative.insert(hash, ()).await;
            return Ok(Lookup::Unknown {
                negative_hit: false,
            });
        };
        if !record.is_live_at(now) {
            return Ok(Lookup::Expired);
        }
        let token = Arc::new(self.entry(hash, record, now));
        self.positive.insert(hash, token.clone()).await;
        // A logout that raced with this load has marked the token negative: honour it.
        if self.negative.contains_key(&hash) {
            self.positive.invalidate(&hash).await;
            return Ok(Lookup::Unknown { negative_hit: true });
        }
        Ok(Lookup::Valid {
            token,
            cache_hit: false,
        })
    }

    fn entry(&self, hash: TokenHash, record: TokenRecord, now: u64) -> CachedToken {
        let remaining = record.expires_at().map_or(self.max_ttl, |deadline| {
            Duration::from_millis(deadline.saturating_sub(now))
        });
        CachedToken {
            hash,
            last_used: AtomicU64::new(record.last_used),
            persisted: AtomicU64::new(record.last_used),
            cache_ttl: remaining.min(self.max_ttl),
            record,
        }
    }

    /// Write-back step: the configured one, but never more than a tenth of the idle timeout, so that
    /// the store's copy cannot fall far enough behind to expire a token in use.
    fn touch_step_for(&self, record: &TokenRecord) -> u64 {
        record
            .idle_timeout_ms
            .map_or(self.touch_step_ms, |idle| self.touch_step_ms.min(idle / 10))
    }

    /// Record a successful use. Writes to the store at most once per step, in the background.
    pub fn touch(&self, token: &Arc<CachedToken>, now: u64) {
        if token.record.idle_timeout_ms.is_none() {
            return;
        }
        token.last_used.fetch_max(now, Ordering::Relaxed);
        let persisted = token.persisted.load(Ordering::Relaxed);
        if now.saturating_sub(persisted) < self.touch_step_for(&token.record) {
            return;
        }
        if token
            .persisted
            .compare_exchange(persisted, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is writing it back
        }
        let store = self.store.clone();
        let hash = token.hash;
        tokio::spawn(async move {
            if let Err(e) = store.touch(hash, now).await {
                tracing::warn!(token = %hash.short(), error = %e, "could not record token use");
            }
        });
    }

    /// Insert a freshly issued token, so its first use is already a cache hit.
    pub async fn remember(&self, hash: TokenHash, record: TokenRecord, now: u64) {
        self.negative.invalidate(&hash).await;
        self.positive
            .insert(hash, Arc::new(self.entry(hash, record, now)))
            .await;
    }

    /// Forget a revoked token at once and remember it as unknown.
    pub async fn forget(&self, hash: TokenHash) {
        self.negative.insert(hash, ()).await;
        self.positive.invalidate(&hash).await;
    }

    /// Let moka finish its deferred bookkeeping (for measurements and tests).
    pub async fn run_pending_tasks(&self) {
        self.positive.run_pending_tasks().await;
        self.negative.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{contract::record, MemoryStore};

    fn cache(store: Arc<MemoryStore>) -> TokenCache {
        TokenCache::new(
            store,
            100,
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn miss_then_hit_then_forget() {
        let store = Arc::new(MemoryStore::new());
        let h = TokenHash::of("t");
        store.insert(h, record("u", 1_000)).await.unwrap();
        let c = cache(store.clone());
        assert!(matches!(
            c.lookup(h, 1_100).await.unwrap(),
            Lookup::Valid {
                cache_hit: false,
                ..
            }
        ));
        assert!(matches!(
            c.lookup(h, 1_200).await.unwrap(),
            Lookup::Valid {
                cache_hit: true,
                ..
            }
        ));
        c.forget(h).await;
        assert!(matches!(
            c.lookup(h, 1_300).await.unwrap(),
            Lookup::Unknown { negative_hit: true }
        ));
    }

    #[tokio::test]
    async fn unknown_tokens_are_cached_negatively() {
        let store = Arc::new(MemoryStore::new());
        let c = cache(store.clone());
        let h = TokenHash::of("junk");
        assert!(matches!(
            c.lookup(h, 1).await.unwrap(),
            Lookup::Unknown {
                negative_hit: false
            }
        ));
        // Even if it appeared in the store behind our back, the negative entry answers.
        store.insert(h, record("u", 1)).await.unwrap();
        assert!(matches!(
            c.lookup(h, 2).await.unwrap(),
            Lookup::Unknown { negative_hit: true }
        ));
    }

    #[tokio::test]
    async fn sliding_expiry_is_strict_and_extended_by_use() {
        let store = Arc::new(MemoryStore::new());
        let h = TokenHash::of("t");
        store.insert(h, record("u", 1_000)).await.unwrap(); // idle timeout 1 s
        let c = cache(store.clone());
        let Lookup::Valid { token, .. } = c.lookup(h, 1_500).await.unwrap() else {
            panic!()
        };
        c.touch(&token, 1_900);
        assert!(matches!(
            c.lookup(h, 2_800).await.unwrap(),
            Lookup::Valid { .. }
        ));
        assert!(matches!(c.lookup(h, 2_900).await.unwrap(), Lookup::Expired));
    }

    #[tokio::test]
    async fn touch_writes_back_at_a_coarse_step_only() {
        let store = Arc::new(MemoryStore::new());
        let h = TokenHash::of("t");
        let mut r = record("u", 1_000);
        r.idle_timeout_ms = Some(100_000); // step = min(60 s, 10 s) = 10 s
        store.insert(h, r).await.unwrap();
        let c = cache(store.clone());
        let Lookup::Valid { token, .. } = c.lookup(h, 1_000).await.unwrap() else {
            panic!()
        };
        c.touch(&token, 5_000);
        tokio::task::yield_now().await;
        assert_eq!(
            store.get(h).await.unwrap().unwrap().last_used,
            1_000,
            "within the step"
        );
        c.touch(&token, 11_000);
        for _ in 0..100 {
            if store.get(h).await.unwrap().unwrap().last_used == 11_000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the use past the step was never written back");
    }
}
