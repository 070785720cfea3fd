//! The per-request cost of checking a token, against the floor of a plain `HashMap` lookup.
//!
//! Run: `cargo bench --bench hot_path`. Compare the ratios printed by criterion within one run;
//! absolute times on a shared machine are noise.

use authgate::auth::password::PasswordVerifier;
use authgate::auth::users::UserDirectory;
use authgate::auth::{Authenticator, CredentialSource, Credentials, TokenPolicy};
use authgate::cache::{CacheTimes, TokenCache};
use authgate::config::Config;
use authgate::metrics::Metrics;
use authgate::proxy::headers::credentials;
use authgate::proxy::route::Route;
use authgate::store::{now_ms, RedbStore, TokenKind, TokenRecord, TokenStore};
use authgate::target::{PathPolicy, RequestTarget};
use authgate::token::{new_gwos_token, TokenHash};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn record() -> TokenRecord {
    let now = now_ms();
    TokenRecord {
        kind: TokenKind::Gwos,
        subject: "admin".into(),
        role: "admin".into(),
        app_name: "bench".into(),
        device_id: None,
        issued_at: now,
        last_used: now,
        idle_timeout_ms: Some(8 * 3600 * 1000),
        max_expires_at: None,
    }
}

fn authenticator(store: Arc<dyn TokenStore>, max_ttl: Duration) -> Authenticator {
    let metrics = Arc::new(Metrics::new());
    let cache = TokenCache::new(
        store,
        1_000_000,
        CacheTimes {
            max_ttl,
            negative_ttl: Duration::from_secs(5),
            touch_step: Duration::from_secs(60),
            outage_grace: Duration::ZERO,
        },
        metrics.clone(),
    );
    Authenticator::new(
        UserDirectory::demo(),
        PasswordVerifier::new(1, 1, 1, metrics.password_rejected.clone()),
        cache,
        None,
        TokenPolicy::from_config(&Config::default()),
        metrics,
        Arc::new(authgate::clock::SystemClock),
    )
}

fn token_checks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TokenStore> =
        Arc::new(RedbStore::open(dir.path(), authgate::store::OnDamage::Refuse).unwrap());
    let token = new_gwos_token();
    rt.block_on(store.insert(TokenHash::of(&token), record()))
        .unwrap();
    let unknown = new_gwos_token();
    let get = http::Method::GET;
    let creds = |t| Credentials {
        token: Some(t),
        app_name: Some("bench"),
        source: CredentialSource::Gwos,
    };

    let mut floor: HashMap<String, Arc<TokenRecord>> = HashMap::new();
    floor.insert(token.clone(), Arc::new(record()));
    let mut group = c.benchmark_group("token check");
    group.bench_function("floor: HashMap<String, _> lookup", |b| {
        b.iter(|| floor.get(black_box(token.as_str())).cloned())
    });

    let warm = authenticator(store.clone(), Duration::from_secs(300));
    rt.block_on(warm.authorize(creds(&token), &get, "/x"))
        .unwrap();
    group.bench_function("authorize: cache hit", |b| {
        b.to_async(&rt)
            .iter(|| warm.authorize(creds(black_box(&token)), &get, "/x"))
    });
    let _ = rt.block_on(warm.authorize(creds(&unknown), &get, "/x"));
    group.bench_function("authorize: negative hit (unknown token)", |b| {
        b.to_async(&rt)
            .iter(|| warm.authorize(creds(black_box(&unknown)), &get, "/x"))
    });
    // A cache whose entries expire at once: every check is a miss served by redb.
    let cold = authenticator(store.clone(), Duration::from_nanos(1));
    group.bench_function("authorize: cache miss, served by redb", |b| {
        b.to_async(&rt)
            .iter(|| cold.authorize(creds(black_box(&token)), &get, "/x"))
    });
    group.bench_function("sha256 of a token", |b| {
        b.iter(|| TokenHash::of(black_box(&token)))
    });
    group.finish();
}

fn request_parsing(c: &mut Criterion) {
    let mut req = RequestHeader::build("GET", b"/api/hostgroups?depth=shallow", None).unwrap();
    req.insert_header("Host", "gw").unwrap();
    req.insert_header("Accept", "application/json").unwrap();
    req.insert_header("GWOS-API-TOKEN", new_gwos_token())
        .unwrap();
    req.insert_header("GWOS-APP-NAME", "bench").unwrap();
    let mut group = c.benchmark_group("request parsing");
    group.bench_function("credentials from headers", |b| {
        b.iter(|| credentials(black_box(&req)).token.is_some())
    });
    group.bench_function("route classification", |b| {
        b.iter(|| Route::classify(black_box(&req.method), black_box(req.uri.path())))
    });
    let policy = PathPolicy::default();
    group.bench_function("request target canonicalisation", |b| {
        b.iter(|| RequestTarget::parse(black_box(req.raw_path()), &policy).is_ok())
    });
    group.finish();
}

criterion_group!(benches, token_checks, request_parsing);
criterion_main!(benches);
