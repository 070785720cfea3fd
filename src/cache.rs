//! moka in front of the token store: the hot path is one cache lookup.
//!
//! - positive entries are trusted `max_ttl` after the store confirmed them, then asked for again,
//!   and a token's own deadline is checked on every hit;
//! - while the store cannot answer, a confirmed entry keeps serving for `outage_grace` more
//!   (stale-if-error), and nothing else does;
//! - unknown tokens are remembered for a few seconds, so a flood of junk cannot hammer the store;
//! - sliding expiry is tracked in memory and written back at a coarse step, in the background;
//! - a revocation the store could not save is held here, and refused on every path, until the
//!   write succeeds.

use crate::metrics::{CacheLookup, Metrics};
use crate::store::{earliest, StoreError, TokenKind, TokenRecord, TokenStore};
use crate::token::TokenHash;
use moka::future::Cache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What a token is bound to. One shared copy per kind, subject and app name: a million tokens of
/// a few accounts must not hold a million copies of the same names.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    pub kind: TokenKind,
    /// The user name, or `share:<id>`.
    pub subject: Box<str>,
    /// The GWOS app name (empty for ioGates tokens).
    pub app_name: Box<str>,
}

/// A validated token as the cache holds it. Kept small on purpose (48 bytes plus its `Arc`): the
/// cache's memory is this times the number of live tokens.
#[derive(Debug)]
pub struct CachedToken {
    pub binding: Arc<Binding>,
    idle_timeout_ms: Option<NonZeroU64>,
    max_expires_at: Option<NonZeroU64>,
    /// Latest use seen by this process (ms), ahead of the store's copy.
    last_used: AtomicU64,
    /// Latest use written back to the store (ms).
    persisted: AtomicU64,
    /// When the store last said the token exists (ms).
    confirmed_at: AtomicU64,
}

impl CachedToken {
    fn live_at(&self, now: u64) -> bool {
        let idle = self.idle_timeout_ms.map(|t| {
            self.last_used
                .load(Ordering::Relaxed)
                .saturating_add(t.get())
        });
        earliest(idle, self.max_expires_at.map(NonZeroU64::get))
            .is_none_or(|deadline| now < deadline)
    }
}

/// After the store failed to answer, how long lookups take that as its answer instead of asking
/// (and waiting for its timeout) again: during an outage, one request in this time pays the wait.
const OUTAGE_RECHECK_MS: u64 = 250;

/// Most revocations held in memory during a store outage (about 5 MiB).
const MAX_UNSAVED: usize = 100_000;

/// Most uses waiting to be written back (about 5 MiB), and most written in one store call.
const MAX_PENDING_USES: usize = 100_000;
const USES_PER_WRITE: usize = 1_000;

/// Sliding expiry's write-backs: the latest use per token, written by one task at a time, in
/// batches. A burst of distinct tokens (every token in use, just after a restart) then queues an
/// entry each, not a task and a store write each: with a task per use, a million tokens in use
/// had the gateway queue writes faster than redb made them, and grow by a gigabyte.
struct WriteBack {
    store: Arc<dyn TokenStore>,
    pending: Mutex<HashMap<TokenHash, u64>>,
    writing: AtomicBool,
}

impl WriteBack {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, u64>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a use, and start the writer if none is running. `false` when the queue is full:
    /// the caller leaves the use to a later request.
    fn queue(self: &Arc<Self>, hash: TokenHash, at: u64) -> bool {
        {
            let mut pending = self.pending();
            if pending.len() >= MAX_PENDING_USES && !pending.contains_key(&hash) {
                return false;
            }
            let latest = pending.entry(hash).or_insert(at);
            *latest = (*latest).max(at);
        }
        if !self.writing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move { this.write_all().await });
        }
        true
    }

    fn take_batch(&self) -> Vec<(TokenHash, u64)> {
        let mut pending = self.pending();
        if pending.len() <= USES_PER_WRITE {
            return pending.drain().collect();
        }
        let hashes: Vec<TokenHash> = pending.keys().take(USES_PER_WRITE).copied().collect();
        hashes
            .into_iter()
            .filter_map(|h| pending.remove(&h).map(|at| (h, at)))
            .collect()
    }

    async fn write_all(&self) {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                self.writing.store(false, Ordering::Release);
                // A use queued after the take found the writer still running: look once more.
                if self.pending().is_empty() || self.writing.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let count = batch.len();
            if let Err(e) = self.store.touch(batch).await {
                tracing::warn!(tokens = count, error = %e, "could not record token use");
            }
        }
    }
}

/// The cache's key: the first 128 bits of the token's SHA-256. Finding another token with the same
/// key is a second-preimage search over 128 bits; the full hash still keys the store.
type Key = u128;

fn key(hash: &TokenHash) -> Key {
    let mut half = [0u8; 16];
    half.copy_from_slice(&hash.0[..16]);
    u128::from_le_bytes(half)
}

/// Hands out the shared `Binding`s. Bindings no cached token uses any more are swept out when the
/// set has doubled since the last sweep, so it stays within twice the live ones.
#[derive(Default)]
struct Bindings {
    set: Mutex<(HashSet<Arc<Binding>>, usize)>,
}

impl Bindings {
    fn intern(&self, binding: Binding) -> Arc<Binding> {
        let mut guard = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, after_last_sweep) = &mut *guard;
        if let Some(shared) = set.get(&binding) {
            return shared.clone();
        }
        if set.len() >= 2 * *after_last_sweep + 64 {
            set.retain(|b| Arc::strong_count(b) > 1);
            *after_last_sweep = set.len();
        }
        let shared = Arc::new(binding);
        set.insert(shared.clone());
        shared
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

/// How long cache entries are trusted.
#[derive(Debug, Clone, Copy)]
pub struct CacheTimes {
    /// How long after the store confirmed a token it is served without asking again.
    pub max_ttl: Duration,
    /// How long an unknown token is remembered as such.
    pub negative_ttl: Duration,
    /// How often sliding expiry is written back.
    pub touch_step: Duration,
    /// How much longer than `max_ttl` a confirmed token is served while the store is unavailable.
    pub outage_grace: Duration,
}

pub struct TokenCache {
    /// Validated tokens, for `max_ttl + outage_grace` at most; past `max_ttl` from their
    /// confirmation they are asked for again. A token's own deadline is checked on every hit, so
    /// no per-entry expiry is needed (moka's per-entry timers cost memory on every entry).
    positive: Cache<Key, Arc<CachedToken>>,
    max_ttl_ms: u64,
    outage_grace_ms: u64,
    /// Until when (ms) the store is taken as unavailable without asking (`OUTAGE_RECHECK_MS`).
    unavailable_until: AtomicU64,
    negative: Cache<Key, ()>,
    bindings: Bindings,
    store: Arc<dyn TokenStore>,
    write_back: Arc<WriteBack>,
    /// Revoked tokens whose store write failed. Checked before anything else on every lookup;
    /// the count keeps that check to one atomic load while the set is empty.
    unsaved: Mutex<HashSet<TokenHash>>,
    unsaved_count: AtomicUsize,
    touch_step_ms: u64,
    /// Lookup counters, resolved once (a labelled lookup per request costs a hash and a lock).
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    negative_hits: prometheus::IntCounter,
    stale_hits: prometheus::IntCounter,
}

impl TokenCache {
    pub fn new(
        store: Arc<dyn TokenStore>,
        capacity: u64,
        times: CacheTimes,
        metrics: Arc<Metrics>,
    ) -> TokenCache {
        TokenCache {
            positive: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(times.max_ttl + times.outage_grace)
                .build(),
            max_ttl_ms: times.max_ttl.as_millis() as u64,
            outage_grace_ms: times.outage_grace.as_millis() as u64,
            unavailable_until: AtomicU64::new(0),
            negative: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(times.negative_ttl)
                .build(),
            bindings: Bindings::default(),
            write_back: Arc::new(WriteBack {
                store: store.clone(),
                pending: Mutex::default(),
                writing: AtomicBool::new(false),
            }),
            store,
            unsaved: Mutex::default(),
            unsaved_count: AtomicUsize::new(0),
            touch_step_ms: times.touch_step.as_millis() as u64,
            hits: metrics
                .cache_lookups
                .with_label_values(&[CacheLookup::Hit.as_str()]),
            misses: metrics
                .cache_lookups
                .with_label_values(&[CacheLookup::Miss.as_str()]),
            negative_hits: metrics
                .cache_lookups
                .with_label_values(&[CacheLookup::NegativeHit.as_str()]),
            stale_hits: metrics
                .cache_lookups
                .with_label_values(&[CacheLookup::StaleHit.as_str()]),
        }
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub async fn lookup(&self, hash: TokenHash, now: u64) -> Result<Lookup, StoreError> {
        if self.unsaved_count.load(Ordering::Acquire) > 0 && self.is_unsaved(&hash) {
            self.negative_hits.inc();
            return Ok(Lookup::Unknown { negative_hit: true });
        }
        let key = key(&hash);
        if let Some(token) = self.positive.get(&key).await {
            let confirmed_at = token.confirmed_at.load(Ordering::Relaxed);
            if now < confirmed_at.saturating_add(self.max_ttl_ms) {
                self.hits.inc();
                if token.live_at(now) {
                    return Ok(Lookup::Valid {
                        token,
                        cache_hit: true,
                    });
                }
                self.positive.invalidate(&key).await;
                return Ok(Lookup::Expired);
            }
            return self.confirm(hash, key, token, confirmed_at, now).await;
        }
        if self.negative.contains_key(&key) {
            self.negative_hits.inc();
            return Ok(Lookup::Unknown { negative_hit: true });
        }
        self.misses.inc();
        let Some(record) = self.ask_store(hash, now).await? else {
            self.negative.insert(key, ()).await;
            return Ok(Lookup::Unknown {
                negative_hit: false,
            });
        };
        if !record.is_live_at(now) {
            return Ok(Lookup::Expired);
        }
        let token = Arc::new(self.entry(&record, now));
        self.positive.insert(key, token.clone()).await;
        // A logout that raced with this load has marked the token negative: honour it.
        if self.negative.contains_key(&key) {
            self.positive.invalidate(&key).await;
            return Ok(Lookup::Unknown { negative_hit: true });
        }
        Ok(Lookup::Valid {
            token,
            cache_hit: false,
        })
    }

    /// Ask the store again about a cached token past `max_ttl`. While the store is unavailable,
    /// the entry keeps serving until `outage_grace` has passed as well.
    async fn confirm(
        &self,
        hash: TokenHash,
        key: Key,
        token: Arc<CachedToken>,
        confirmed_at: u64,
        now: u64,
    ) -> Result<Lookup, StoreError> {
        self.misses.inc();
        match self.ask_store(hash, now).await {
            Ok(Some(record)) => {
                token
                    .last_used
                    .fetch_max(record.last_used, Ordering::Relaxed);
                token
                    .persisted
                    .fetch_max(record.last_used, Ordering::Relaxed);
                token.confirmed_at.fetch_max(now, Ordering::Relaxed);
                if token.live_at(now) {
                    return Ok(Lookup::Valid {
                        token,
                        cache_hit: false,
                    });
                }
                self.positive.invalidate(&key).await;
                Ok(Lookup::Expired)
            }
            Ok(None) => {
                self.forget(hash).await;
                Ok(Lookup::Unknown {
                    negative_hit: false,
                })
            }
            Err(StoreError::Unavailable(_))
                if now < confirmed_at.saturating_add(self.max_ttl_ms + self.outage_grace_ms)
                    && token.live_at(now) =>
            {
                self.stale_hits.inc();
                Ok(Lookup::Valid {
                    token,
                    cache_hit: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The store's record of `hash`; while it has just failed to answer, its failure again.
    async fn ask_store(
        &self,
        hash: TokenHash,
        now: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        if now < self.unavailable_until.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "token store did not answer just now".into(),
            ));
        }
        let asked = std::time::Instant::now();
        let answer = self.store.get(hash).await;
        if let Err(StoreError::Unavailable(_)) = answer {
            // From when the failure came, which may have been a timeout after `now`.
            let waited = asked.elapsed().as_millis() as u64;
            self.unavailable_until
                .store(now + waited + OUTAGE_RECHECK_MS, Ordering::Relaxed);
        }
        answer
    }

    fn entry(&self, record: &TokenRecord, now: u64) -> CachedToken {
        let binding = self.bindings.intern(Binding {
            kind: record.kind,
            subject: record.subject.as_str().into(),
            app_name: record.app_name.as_str().into(),
        });
        CachedToken {
            binding,
            // A zero timeout (never configured so) would mean dead at once, not never.
            idle_timeout_ms: record
                .idle_timeout_ms
                .map(|t| NonZeroU64::new(t).unwrap_or(NonZeroU64::MIN)),
            max_expires_at: record
                .max_expires_at
                .map(|t| NonZeroU64::new(t).unwrap_or(NonZeroU64::MIN)),
            last_used: AtomicU64::new(record.last_used),
            persisted: AtomicU64::new(record.last_used),
            confirmed_at: AtomicU64::new(now),
        }
    }

    /// Write-back step: the configured one, but never more than a tenth of the idle timeout, so that
    /// the store's copy cannot fall far enough behind to expire a token in use.
    fn touch_step_for(&self, idle: NonZeroU64) -> u64 {
        self.touch_step_ms.min(idle.get() / 10)
    }

    /// Record a successful use of the token of `hash`. Written back to the store at most once per
    /// step, in the background.
    pub fn touch(&self, hash: TokenHash, token: &CachedToken, now: u64) {
        let Some(idle) = token.idle_timeout_ms else {
            return;
        };
        token.last_used.fetch_max(now, Ordering::Relaxed);
        let persisted = token.persisted.load(Ordering::Relaxed);
        if now.saturating_sub(persisted) < self.touch_step_for(idle) {
            return;
        }
        if token
            .persisted
            .compare_exchange(persisted, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is writing it back
        }
        if !self.write_back.queue(hash, now) {
            // Queue full: a later use writes it back.
            let _ = token.persisted.compare_exchange(
                now,
                persisted,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Insert a freshly issued token (just saved), so its first use is already a cache hit.
    pub async fn remember(&self, hash: TokenHash, record: &TokenRecord) {
        let key = key(&hash);
        self.negative.invalidate(&key).await;
        // Saved at its issue time: confirmed then.
        let entry = self.entry(record, record.last_used);
        self.positive.insert(key, Arc::new(entry)).await;
    }

    /// Forget a revoked token at once and remember it as unknown.
    pub async fn forget(&self, hash: TokenHash) {
        let key = key(&hash);
        self.negative.insert(key, ()).await;
        self.positive.invalidate(&key).await;
    }

    /// Forget every cached token: the feed of other replicas' revocations was interrupted.
    pub fn forget_all(&self) {
        self.positive.invalidate_all();
    }

    fn unsaved_set(&self) -> std::sync::MutexGuard<'_, HashSet<TokenHash>> {
        self.unsaved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_unsaved(&self, hash: &TokenHash) -> bool {
        self.unsaved_set().contains(hash)
    }

    /// A revocation the store could not save: refuse the token in this process from now on,
    /// until `saved` is called for it. Returns how many are held, or `None` when the set is full:
    /// anyone may ask to revoke any token value, so during an outage the set is bounded.
    pub async fn hold_revoked(&self, hash: TokenHash) -> Option<usize> {
        let held = {
            let mut set = self.unsaved_set();
            if set.len() >= MAX_UNSAVED && !set.contains(&hash) {
                return None;
            }
            set.insert(hash);
            self.unsaved_count.store(set.len(), Ordering::Release);
            set.len()
        };
        self.forget(hash).await;
        Some(held)
    }

    /// Whether any revocation waits to be saved (one atomic load).
    pub fn has_unsaved(&self) -> bool {
        self.unsaved_count.load(Ordering::Acquire) > 0
    }

    /// The revocations held in memory, to retry.
    pub fn unsaved(&self) -> Vec<TokenHash> {
        self.unsaved_set().iter().copied().collect()
    }

    /// The store has the revocation now. Returns how many are still held.
    pub fn saved(&self, hash: &TokenHash) -> usize {
        let mut set = self.unsaved_set();
        set.remove(hash);
        self.unsaved_count.store(set.len(), Ordering::Release);
        set.len()
    }

    /// Validated tokens held (moka's count, as of its last bookkeeping: `run_pending_tasks`).
    pub fn entry_count(&self) -> u64 {
        self.positive.entry_count()
    }

    /// Let moka finish its deferred bookkeeping (for measurements, counts and tests).
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
            CacheTimes {
                max_ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(60),
                touch_step: Duration::from_secs(60),
                outage_grace: Duration::ZERO,
            },
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn held_revocations_are_refused_and_bounded() {
        let c = cache(Arc::new(MemoryStore::new()));
        assert!(!c.has_unsaved());
        assert_eq!(c.hold_revoked(TokenHash::of("t")).await, Some(1));
        assert!(c.has_unsaved());
        assert!(matches!(
            c.lookup(TokenHash::of("t"), 0).await.unwrap(),
            Lookup::Unknown { .. }
        ));
        for i in 1..MAX_UNSAVED {
            c.unsaved_set().insert(TokenHash::of(&i.to_string()));
        }
        assert_eq!(c.hold_revoked(TokenHash::of("one more")).await, None);
        assert_eq!(c.hold_revoked(TokenHash::of("t")).await, Some(MAX_UNSAVED));
        assert_eq!(c.saved(&TokenHash::of("t")), MAX_UNSAVED - 1);
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
        c.touch(h, &token, 1_900);
        assert!(matches!(
            c.lookup(h, 2_800).await.unwrap(),
            Lookup::Valid { .. }
        ));
        assert!(matches!(c.lookup(h, 2_900).await.unwrap(), Lookup::Expired));
    }

    #[tokio::test]
    async fn tokens_of_one_account_and_app_share_one_binding() {
        let c = cache(Arc::new(MemoryStore::new()));
        let (a, b, other) = (TokenHash::of("a"), TokenHash::of("b"), TokenHash::of("o"));
        c.remember(a, &record("u", 1_000)).await;
        c.remember(b, &record("u", 1_000)).await;
        c.remember(other, &record("v", 1_000)).await;
        let c = &c;
        let binding = |h| async move {
            match c.lookup(h, 1_100).await.unwrap() {
                Lookup::Valid { token, .. } => token.binding.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert!(Arc::ptr_eq(&binding(a).await, &binding(b).await));
        assert!(!Arc::ptr_eq(&binding(a).await, &binding(other).await));
    }

    #[test]
    fn unused_bindings_are_swept() {
        let bindings = Bindings::default();
        let named = |i: usize| Binding {
            kind: TokenKind::Gwos,
            subject: format!("user-{i}").into(),
            app_name: "app".into(),
        };
        let kept = bindings.intern(named(0));
        for i in 1..1_000 {
            drop(bindings.intern(named(i)));
        }
        let held = bindings.set.lock().unwrap().0.len();
        assert!(held < 200, "{held} bindings held for 1 in use");
        assert!(Arc::ptr_eq(&kept, &bindings.intern(named(0))));
    }

    /// Three thousand tokens used at once, each past its step: every use reaches the store, in
    /// a few batched writes rather than a write each.
    #[tokio::test]
    async fn uses_of_many_tokens_are_written_back_in_batches() {
        use crate::metrics::StoreOp;
        use crate::store::Instrumented;
        let memory = Arc::new(MemoryStore::new());
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(Instrumented::new(memory.clone(), metrics.clone()));
        let c = TokenCache::new(
            store,
            10_000,
            CacheTimes {
                max_ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(60),
                touch_step: Duration::from_secs(1),
                outage_grace: Duration::ZERO,
            },
            metrics.clone(),
        );
        let hashes: Vec<TokenHash> = (0..3_000).map(|i| TokenHash::of(&i.to_string())).collect();
        for h in &hashes {
            memory.insert(*h, record("u", 1_000)).await.unwrap();
        }
        for h in &hashes {
            let Lookup::Valid { token, .. } = c.lookup(*h, 1_000).await.unwrap() else {
                panic!()
            };
            c.touch(*h, &token, 5_000);
        }
        let writes = || {
            metrics
                .store_duration
                .with_label_values(&[StoreOp::Touch.as_str()])
                .get_sample_count()
        };
        for _ in 0..200 {
            let mut written = 0;
            for h in &hashes {
                written += usize::from(memory.get(*h).await.unwrap().unwrap().last_used == 5_000);
            }
            if written == hashes.len() {
                assert!(writes() <= 10, "{} store writes for 3 000 uses", writes());
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not every use was written back");
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
        c.touch(h, &token, 5_000);
        tokio::task::yield_now().await;
        assert_eq!(
            store.get(h).await.unwrap().unwrap().last_used,
            1_000,
            "within the step"
        );
        c.touch(h, &token, 11_000);
        for _ in 0..100 {
            if store.get(h).await.unwrap().unwrap().last_used == 11_000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the use past the step was never written back");
    }
}
