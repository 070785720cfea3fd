//! The memory floor set by moka itself: 1 000 000 entries with a 32-byte key and an 8-byte value,
//! with per-entry expiry (as authgate's cache uses it). Compare with `cache_memory`.
//!
//! Run: `cargo bench --bench moka_floor`.

use moka::future::Cache;
use std::sync::Arc;
#[path = "support/mod.rs"]
mod support;
use std::time::{Duration, Instant};
use support::rss_mib;

struct FiveMinutes;

impl moka::Expiry<[u8; 32], Arc<u64>> for FiveMinutes {
    fn expire_after_create(&self, _: &[u8; 32], _: &Arc<u64>, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(300))
    }
}

fn main() {
    const COUNT: u64 = 1_000_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache: Cache<[u8; 32], Arc<u64>> = Cache::builder()
            .max_capacity(COUNT + 1)
            .expire_after(FiveMinutes)
            .build();
        let before = rss_mib();
        for i in 0..COUNT {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_le_bytes());
            cache.insert(key, Arc::new(i)).await;
        }
        cache.run_pending_tasks().await;
        let grown = rss_mib() - before;
        println!(
            "moka_floor: {COUNT} minimal entries: +{grown:.0} MiB ({:.0} bytes/entry)",
            grown * 1024.0 * 1024.0 / COUNT as f64
        );
    });
}
