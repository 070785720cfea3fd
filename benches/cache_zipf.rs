//! A million live tokens with the cache bounded below them: the redb store (on the default
//! settings) holds every token, the cache the hot ones. Requests pick tokens by a Zipf law, as
//! real traffic does (a few clients busy, most idle). Prints the hit ratio, the latency of a miss
//! (a store read) and of a hit, and this process's resident memory: the store's page cache, the
//! cache and everything else the two need.
//!
//! The store is filled first (about 4 minutes for a million), and measured by a fresh process, as
//! a gateway restarted on it would be: what filling it left in the allocator is not counted.
//!
//! Run: `cargo bench --bench cache_zipf`. Knobs: `TOKENS` (1 000 000), `CAPACITY` (the default
//! `cache.capacity`), `ZIPF_S` (exponent, 1.0), `REQUESTS` (2 000 000), `DATA_DIR` (where the
//! filled store is kept for the next run: `/dev/shm/authgate-zipf-<TOKENS>` by default, a tmpfs so
//! that filling does not wait for a million fsyncs; the reads measured are served from redb's
//! page cache either way).

use authgate::cache::{CacheTimes, Lookup, TokenCache};
use authgate::config::Config;
use authgate::metrics::{Metrics, CACHE_LOOKUPS};
use authgate::store::{now_ms, OnDamage, RedbStore, TokenKind, TokenRecord, TokenStore};
use authgate::token::TokenHash;
use rand::prelude::*;
use rand_distr::Zipf;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
// The allocator of the authgate binary: resident memory depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;
use support::{rss_mib, runtime};

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Token `i`: derived, not kept, so the bench holds no list of a million tokens. Shaped as the
/// gateway issues GWOS tokens.
fn token_value(i: u64) -> String {
    format!("{:08x}-0000-4000-8000-{i:012x}", i as u32)
}

fn token(i: u64) -> TokenHash {
    TokenHash::of(&token_value(i))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let tokens: u64 = knob("TOKENS", 1_000_000);
    let dir = PathBuf::from(
        std::env::var("DATA_DIR").unwrap_or_else(|_| format!("/dev/shm/authgate-zipf-{tokens}")),
    );
    if std::env::var_os("CACHE_ZIPF_MEASURE").is_some() {
        return measure(tokens, &dir);
    }
    if std::env::var_os("CACHE_ZIPF_GATEWAY").is_some() {
        return gateway(tokens, &dir);
    }
    if !dir.join("filled").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        fill(tokens, &dir);
        std::fs::write(dir.join("filled"), b"").expect("the filled mark");
    }
    for phase in ["CACHE_ZIPF_MEASURE", "CACHE_ZIPF_GATEWAY"] {
        let status = std::process::Command::new(std::env::current_exe().expect("this bench"))
            .env(phase, "1")
            .env("DATA_DIR", &dir)
            .status()
            .expect("a measuring process");
        assert!(status.success());
    }
}

/// Put `tokens` live tokens in a redb store in `dir`.
fn fill(tokens: u64, dir: &Path) {
    runtime().block_on(async {
        let store: Arc<dyn TokenStore> =
            Arc::new(RedbStore::open(dir, OnDamage::Refuse).expect("the store"));
        // Live for a day from now: the measuring run comes later.
        let now = now_ms();
        // Seed from several tasks: redb serialises the writes, the hashing runs alongside.
        let seeded = Instant::now();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (w..tokens).step_by(4) {
                        let record = TokenRecord {
                            kind: TokenKind::Gwos,
                            // A demo account: the gateway phase runs on the demo users.
                            subject: "admin".into(),
                            role: "admin".into(),
                            app_name: "monitoring-app".into(),
                            device_id: None,
                            issued_at: now,
                            last_used: now,
                            idle_timeout_ms: Some(24 * 3600 * 1000),
                            max_expires_at: None,
                        };
                        store.insert(token(i), record).await.expect("seeding");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("a seeding task");
        }
        println!(
            "cache_zipf: {tokens} tokens put in the store in {:.0} s",
            seeded.elapsed().as_secs_f64()
        );
    });
}

/// Look tokens up through a bounded cache over the filled store, as a gateway just restarted.
fn measure(tokens: u64, dir: &Path) {
    let capacity: u64 = knob("CAPACITY", Config::default().cache.capacity.get());
    let s: f64 = knob("ZIPF_S", 1.0);
    let requests: u64 = knob("REQUESTS", 2_000_000);
    runtime().block_on(async {
        let start_rss = rss_mib();
        let store: Arc<dyn TokenStore> =
            Arc::new(RedbStore::open(dir, OnDamage::Refuse).expect("the store"));
        let opened_rss = rss_mib();
        let cache = TokenCache::new(
            store,
            capacity,
            CacheTimes {
                max_ttl: Duration::from_secs(3600),
                negative_ttl: Duration::from_secs(5),
                touch_step: Duration::from_secs(60),
                outage_grace: Duration::ZERO,
            },
            Arc::new(Metrics::new()),
        );
        let zipf = Zipf::new(tokens as f64, s).expect("a Zipf law");
        let mut rng = StdRng::seed_from_u64(17);
        // Warm-up: the cache fills and its admission learns the popular tokens.
        for _ in 0..requests / 2 {
            let rank = zipf.sample(&mut rng) as u64 - 1;
            let _ = cache.lookup(token(rank), now_ms()).await;
        }
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        for _ in 0..requests {
            let rank = zipf.sample(&mut rng) as u64 - 1;
            let hash = token(rank);
            let asked = Instant::now();
            let answer = cache.lookup(hash, now_ms()).await;
            let took = asked.elapsed();
            match answer {
                Ok(Lookup::Valid {
                    cache_hit: true, ..
                }) => hits.push(took),
                Ok(Lookup::Valid {
                    cache_hit: false, ..
                }) => misses.push(took),
                other => panic!("a seeded token is valid: {other:?}"),
            }
        }
        cache.run_pending_tasks().await;
        hits.sort_unstable();
        misses.sort_unstable();
        let ratio = hits.len() as f64 / requests as f64;
        let held = cache.entry_count();
        // What the vectors of timings take is not the gateway's: subtract it.
        let timings = ((hits.capacity() + misses.capacity()) * 16) as f64 / (1024.0 * 1024.0);
        let rss = rss_mib() - timings;
        println!(
            "cache_zipf: capacity {capacity}, Zipf s={s}: hit ratio {:.1} % over {requests} \
             lookups ({held} cached); hit p50 {:?} p99 {:?}; miss p50 {:?} p99 {:?} max {:?}",
            ratio * 100.0,
            percentile(&hits, 0.5),
            percentile(&hits, 0.99),
            percentile(&misses, 0.5),
            percentile(&misses, 0.99),
            misses.last().copied().unwrap_or_default(),
        );
        println!(
            "cache_zipf: resident {rss:.0} MiB with {tokens} live tokens (process start \
             {start_rss:.0} MiB, store opened {opened_rss:.0} MiB)"
        );
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The sum of a metric's series whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The real gateway (release build, defaults but for ports and log level) restarted on the filled
/// store, serving Zipf-picked tokens over HTTP from four clients: its resident memory, and the
/// hit ratio it reports in its metrics.
fn gateway(tokens: u64, dir: &Path) {
    let requests: u64 = knob("HTTP_REQUESTS", 400_000);
    let s: f64 = knob("ZIPF_S", 1.0);
    let work = tempfile::tempdir().expect("a work directory");
    let (port, admin, demo) = (free_port(), free_port(), free_port());
    let config = work.path().join("authgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{listen: 127.0.0.1:{admin}}}\n\
             demo_upstream: 127.0.0.1:{demo}\nupstreams: {{demo: {{addresses: [\"127.0.0.1:{demo}\"]}}}}\n\
             store: {{data_dir: {}}}\nlog: {{level: warn}}\n",
            dir.display()
        ),
    )
    .expect("the config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["run", "--config"])
        .arg(&config)
        .spawn()
        .expect("the gateway");
    let status = |key: &str| -> f64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        let started = Instant::now();
        while !client.get(&ready).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(started.elapsed() < Duration::from_secs(120), "the gateway never got ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started_rss = status("VmRSS:");
        let scrape = || async {
            client
                .get(format!("http://127.0.0.1:{admin}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text")
        };
        let send = |count: u64, seed: u64| {
            let client = client.clone();
            tokio::spawn(async move {
                let zipf = Zipf::new(tokens as f64, s).expect("a Zipf law");
                let mut rng = StdRng::seed_from_u64(seed);
                for _ in 0..count {
                    let rank = zipf.sample(&mut rng) as u64 - 1;
                    let answer = client
                        .get(format!("http://127.0.0.1:{port}/api/x"))
                        .header("GWOS-API-TOKEN", token_value(rank))
                        .header("GWOS-APP-NAME", "monitoring-app")
                        .send()
                        .await
                        .expect("an answer");
                    assert_eq!(answer.status(), 200, "token {rank}");
                }
            })
        };
        let mut hits = [0.0; 2];
        let mut misses = [0.0; 2];
        for (round, count) in [requests / 2, requests].into_iter().enumerate() {
            let clients: Vec<_> = (0..4)
                .map(|c| send(count / 4, 100 * round as u64 + c))
                .collect();
            for c in clients {
                c.await.expect("a client");
            }
            let text = scrape().await;
            hits[round] = metric(&text, CACHE_LOOKUPS, "result=\"hit\"");
            misses[round] = metric(&text, CACHE_LOOKUPS, "result=\"miss\"");
        }
        let (hit, miss) = (hits[1] - hits[0], misses[1] - misses[0]);
        println!(
            "cache_zipf: gateway, default capacity {}, Zipf s={s}: hit ratio {:.1} % over {requests} \
             requests after {} of warm-up; resident {:.0} MiB (peak {:.0} MiB, {started_rss:.0} MiB \
             when ready)",
            Config::default().cache.capacity,
            100.0 * hit / (hit + miss),
            requests / 2,
            status("VmRSS:"),
            status("VmHWM:"),
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
