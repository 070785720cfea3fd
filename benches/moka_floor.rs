//! The memory floor set by moka itself: 1 000 000 entries configured as authgate's token cache
//! (128-bit key, time-to-live, size bound) but holding only an `Arc<u64>`. Compare with
//! `cache_memory`: the difference is what authgate's own entry costs.
//!
//! Run: `cargo bench --bench moka_floor` (`NO_TTL=1`: without the time-to-live, to see what
//! moka's expiry bookkeeping costs per entry).

use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;
// The allocator of the authgate binary: resident memory depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;
use support::{rss_mib, runtime};

fn main() {
    const COUNT: u64 = 1_000_000;
    runtime().block_on(async {
        let builder = Cache::builder().max_capacity(COUNT + 1);
        let cache: Cache<u128, Arc<u64>> = if std::env::var_os("NO_TTL").is_some() {
            builder.build()
        } else {
            builder.time_to_live(Duration::from_secs(3600)).build()
        };
        let before = rss_mib();
        for i in 0..COUNT {
            // Spread like hash prefixes are.
            let key = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
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
