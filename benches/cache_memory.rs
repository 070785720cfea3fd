//! Resident memory of the token cache holding 1 000 000 live tokens.
//!
//! Run: `cargo bench --bench cache_memory` (prints RSS before and after; target ≤ 300 MB).

use authgate::cache::{CacheTimes, TokenCache};
use authgate::metrics::Metrics;
use authgate::store::{now_ms, MemoryStore, TokenKind, TokenRecord};
use authgate::token::{new_gwos_token, TokenHash};
use std::sync::Arc;
// The allocator of the authgate binary: resident memory depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;
use std::time::Duration;
use support::{rss_mib, runtime};

fn main() {
    let count: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    runtime().block_on(async {
        // The store is not measured: only what the cache itself holds.
        let cache = TokenCache::new(
            Arc::new(MemoryStore::new()),
            count as u64 + 1,
            CacheTimes {
                max_ttl: Duration::from_secs(3600),
                negative_ttl: Duration::from_secs(5),
                touch_step: Duration::from_secs(60),
                outage_grace: Duration::ZERO,
            },
            Arc::new(Metrics::new()),
        );
        let before = rss_mib();
        let now = now_ms();
        for i in 0..count {
            let record = TokenRecord {
                kind: TokenKind::Gwos,
                subject: format!("user-{}", i % 1000),
                role: "admin".into(),
                app_name: "monitoring-app".into(),
                device_id: None,
                issued_at: now,
                last_used: now,
                idle_timeout_ms: Some(8 * 3600 * 1000),
                max_expires_at: None,
            };
            cache.remember(TokenHash::of(&new_gwos_token()), &record).await;
        }
        cache.run_pending_tasks().await;
        let after = rss_mib();
        println!(
            "cache_memory: {count} tokens cached: RSS {before:.0} MiB -> {after:.0} MiB (+{:.0} MiB, {:.0} bytes/token)",
            after - before,
            (after - before) * 1024.0 * 1024.0 / count as f64
        );
    });
}
