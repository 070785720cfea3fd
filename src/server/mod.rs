//! Wiring: from a validated `Config` to a pingora `Server` with all its services, and the
//! server-side services themselves (admin port, demo upstream, users reload, shutdown).

pub mod admin;
pub mod demo;
pub mod flood_report;
pub mod lifecycle;
pub mod shutdown;
pub mod users_reload;

use crate::auth::guard::GuardEvent;
use crate::auth::jasypt::JasyptKey;
use crate::auth::password::PasswordVerifier;
use crate::auth::users::UserDirectory;
use crate::auth::{Authenticator, TokenPolicy};
use crate::cache::{CacheTimes, TokenCache};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, RedisConfig, StoreKind};
use crate::connections::ConnectionLimits;
use crate::forwarded::TrustedProxies;
use crate::metrics::{Metrics, OutsideLabels};
use crate::proxy::connection::{Admission, ConnectionTiming};
use crate::proxy::headers::{IdentityHeaders, Strip};
use crate::proxy::upstream::Upstreams;
use crate::proxy::{Gateway, GatewaySettings};
use crate::reply::Failure;
use crate::store::{
    Announcement, Instrumented, MemoryStore, RedbStore, RedisEndpoint, RedisStore, StoreHealth,
    TokenStore,
};
use crate::telemetry::LogBudget;
use crate::url_token::UrlTokens;
use admin::AdminApp;
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use demo::DemoUpstream;
use flood_report::FloodReport;
use http::header::{HeaderName, HeaderValue};
use lifecycle::{Lifecycle, ListenWatch};
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use users_reload::UsersReload;

/// End the process now, with every queued log line written first.
fn exit(code: i32) -> ! {
    crate::telemetry::flush();
    std::process::exit(code)
}

/// Environment variable holding GroundWork's `jasypt.mainkey` value, as in `foundation.properties`.
pub const JASYPT_MAINKEY_ENV: &str = "AUTHGATE_JASYPT_MAINKEY";
/// Environment variable holding the decoded Jasypt key itself (e.g. `Gr0undW0rk123`).
pub const JASYPT_KEY_ENV: &str = "AUTHGATE_JASYPT_KEY";

/// A server ready to run, and what the caller may watch while it runs.
pub struct Built {
    pub server: Server,
    /// Listening and stopping, for `/readyz` (the shutdown marks it stopping).
    pub lifecycle: Arc<Lifecycle>,
    /// Requests in progress.
    pub in_flight: Arc<AtomicUsize>,
    /// The token store, to close cleanly once the server has stopped.
    pub store: Arc<dyn TokenStore>,
}

/// The two forms of the Jasypt main key an operator pastes (spec §4), named apart: guessing the
/// form from the value is ambiguous.
#[derive(Debug, Clone, Copy)]
enum KeyForm {
    /// `foundation.properties`' `jasypt.mainkey` value: 12 characters, then the key in Base64.
    Property,
    /// The key itself.
    Key,
}

/// The Jasypt key from the environment (which wins) or from a file; one source per level.
/// `env` reads an environment variable (a parameter, so tests need not touch the process's).
fn jasypt_key(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<JasyptKey>> {
    let encryption = &config.gwos.encryption;
    if !encryption.enabled {
        return Ok(None);
    }
    let from_env: Vec<(String, KeyForm, String)> = [
        (JASYPT_MAINKEY_ENV, KeyForm::Property),
        (JASYPT_KEY_ENV, KeyForm::Key),
    ]
    .into_iter()
    .filter_map(|(name, form)| env(name).map(|value| (name.to_string(), form, value)))
    .collect();
    let sources = if from_env.is_empty() {
        let files = [
            (
                "gwos.encryption.main_key_file",
                &encryption.main_key_file,
                KeyForm::Property,
            ),
            (
                "gwos.encryption.key_file",
                &encryption.key_file,
                KeyForm::Key,
            ),
        ];
        let mut read = Vec::new();
        for (key, path, form) in files {
            if let Some(path) = path {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{key}: cannot read {}", path.display()))?;
                read.push((key.to_string(), form, text));
            }
        }
        read
    } else {
        from_env
    };
    let (source, form, value) = match <[_; 1]>::try_from(sources) {
        Ok([one]) => one,
        Err(sources) if sources.is_empty() => {
            return Err(anyhow!(
                "gwos.encryption: enabled, but no key: set {JASYPT_KEY_ENV} (the key) or \
                 {JASYPT_MAINKEY_ENV} (foundation.properties' jasypt.mainkey value), or \
                 gwos.encryption.key_file / main_key_file"
            ))
        }
        Err(sources) => {
            let names: Vec<&str> = sources.iter().map(|(name, _, _)| name.as_str()).collect();
            return Err(anyhow!(
                "gwos.encryption: set one of {}, not both",
                names.join(" and ")
            ));
        }
    };
    // A file's trailing line ending is not part of the key.
    let value = value.trim_end_matches(['\n', '\r']);
    let key = match form {
        KeyForm::Property => {
            JasyptKey::from_foundation_property(value).map_err(|e| anyhow!("{source}: {e}"))?
        }
        KeyForm::Key if value.is_empty() => {
            return Err(anyhow!(
                "{source}: empty (want the key itself, e.g. Gr0undW0rk123)"
            ))
        }
        KeyForm::Key => JasyptKey::from_plain(value),
    };
    Ok(Some(key))
}

/// The token store of `kind`, with the settings of `config.store` (`kind` may differ from the
/// configured one: `authgate migrate-store` opens both).
pub fn open_store(config: &Config, kind: StoreKind) -> anyhow::Result<Arc<dyn TokenStore>> {
    Ok(match kind {
        StoreKind::Redb => Arc::new(RedbStore::open(
            &config.store.data_dir,
            config.store.on_damage,
        )?),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redis => {
            let redis = &config.store.redis;
            Arc::new(
                RedisStore::connect(
                    &redis_endpoint(redis)?,
                    &redis.key_prefix,
                    Duration::from_millis(redis.timeout_ms.get()),
                )
                .context("store.redis")?,
            )
        }
    })
}

/// Where `store.redis` points, with its secrets read.
fn redis_endpoint(redis: &RedisConfig) -> anyhow::Result<RedisEndpoint> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("store.redis.{key}: {}", path.display()))
    };
    let password = match &redis.password_file {
        Some(path) => {
            let text = String::from_utf8(read("password_file", path)?)
                .map_err(|_| anyhow!("store.redis.password_file: not UTF-8"))?;
            let password = text.strip_suffix('\n').unwrap_or(&text);
            Some(password.strip_suffix('\r').unwrap_or(password).to_string())
        }
        None => None,
    };
    let ca_pem = match &redis.ca_file {
        Some(path) => Some(read("ca_file", path)?),
        None => None,
    };
    let urls = match (
        redis.cluster_nodes.is_empty(),
        std::env::var("AUTHGATE_REDIS_URL"),
    ) {
        (false, _) => redis.cluster_nodes.clone(),
        (true, Ok(url)) => vec![url],
        (true, Err(_)) => vec![redis.url.clone()],
    };
    Ok(RedisEndpoint {
        urls,
        cluster: !redis.cluster_nodes.is_empty(),
        password,
        ca_pem,
    })
}

/// How long a validated token stays cached. With Redis, other replicas revoke too: the cache
/// asks again at least every `store.redis.cache_max_ttl_ms`, the bound on how long a revocation
/// elsewhere goes unseen.
fn cache_max_ttl(config: &Config) -> Duration {
    let configured = Duration::from_secs(config.cache.max_ttl_seconds.get());
    match config.store.kind {
        StoreKind::Redis => configured.min(Duration::from_millis(
            config.store.redis.cache_max_ttl_ms.get(),
        )),
        StoreKind::Redb | StoreKind::Memory => configured,
    }
}

fn header_name(value: &str) -> HeaderName {
    HeaderName::from_bytes(value.as_bytes()).expect("validated by Config::validate")
}

/// Every address authgate will listen on must be free now. pingora binds later, in its services,
/// and retries a taken port for ever while the rest of the process (and `/healthz`) carries on;
/// whatever holds the port meanwhile gets the traffic. So a taken port stops start-up here, with
/// the key named. (A port taken in the instant between this check and pingora's bind still
/// falls to pingora's behaviour.)
fn check_listen_addresses(config: &Config) -> anyhow::Result<()> {
    let mut addresses = vec![
        ("listen", &config.listen),
        ("admin.listen", &config.admin.listen),
    ];
    if let Some(demo) = &config.demo_upstream {
        addresses.push(("demo_upstream", demo));
    }
    // A previous instance may still be letting go of a port: try for a while.
    let deadline = std::time::Instant::now() + Duration::from_millis(config.bind_timeout_ms.get());
    for (key, address) in addresses {
        while let Err(e) = std::net::TcpListener::bind(address.as_str()) {
            if std::time::Instant::now() >= deadline {
                return Err(anyhow!(
                    "{key}: cannot listen on {address}: {e} (tried for {} ms: bind_timeout_ms)",
                    config.bind_timeout_ms
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Build the whole server. The config must have passed `Config::validate`.
/// Raise the open-file limit to its hard limit, and bound `configured` connections by it, leaving
/// a tenth of the descriptors (at least 256) for upstream connections, listeners and the store.
/// Lowered (with a warning) rather than running out of descriptors, when accepting fails for
/// everyone.
fn connection_limit(configured: usize) -> usize {
    let Some(files) = raise_open_file_limit() else {
        return configured;
    };
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    let fits = files.saturating_sub((files / 10).max(256)).max(1);
    if configured > fits {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = files,
            using = fits,
            "limits.max_connections needs more file descriptors than the open-file limit allows; \
             lowered to fit (raise the hard limit: ulimit -Hn, LimitNOFILE=)"
        );
        return fits;
    }
    configured
}

/// The open-file limit after raising the soft limit to the hard one.
fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Some(u64::from(limit.rlim_cur))
}

pub fn build_server(config: &Config) -> anyhow::Result<Built> {
    build_server_with_clock(config, Arc::new(SystemClock))
}

/// The same, with the clock token expiry reads (tests move a `ManualClock`).
pub fn build_server_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Built> {
    check_listen_addresses(config)?;
    let users = match &config.users_file {
        Some(path) => UserDirectory::load(path).map_err(|e| anyhow!("users_file: {e}"))?,
        None => {
            tracing::warn!(
                "no users_file configured: using the built-in demo users (admin, reader)"
            );
            UserDirectory::demo()
        }
    };
    let jasypt = jasypt_key(config, |name| std::env::var(name).ok())?;
    let metrics = Arc::new(Metrics::new());
    crate::telemetry::count_pool_races(metrics.upstream_pool_races.clone());
    let instrumented = Instrumented::new(open_store(config, config.store.kind)?, metrics.clone());
    let health = instrumented.health();
    let store: Arc<dyn TokenStore> = Arc::new(instrumented);
    let from_replicas = store.announcements();
    let cache = TokenCache::new(
        store.clone(),
        config.cache.capacity.get(),
        CacheTimes {
            max_ttl: cache_max_ttl(config),
            negative_ttl: Duration::from_secs(config.cache.negative_ttl_seconds),
            touch_step: Duration::from_secs(config.cache.touch_interval_seconds),
            outage_grace: match config.store.kind {
                StoreKind::Redis => Duration::from_millis(config.store.redis.outage_grace_ms),
                // An embedded store that cannot be read is damaged, not away for a while.
                StoreKind::Redb | StoreKind::Memory => Duration::ZERO,
            },
        },
        metrics.clone(),
    );
    let verifier = PasswordVerifier::new(
        config.password_hashing.max_concurrent.get(),
        config.password_hashing.max_waiting,
        config.password_hashing.max_waiting_per_client.get(),
        metrics.password_rejected.clone(),
    );
    let policy = TokenPolicy::from_config(config);
    let auth = Arc::new(
        Authenticator::new(
            users,
            verifier,
            cache,
            jasypt,
            policy,
            metrics.clone(),
            clock,
        )
        .with_login_limits(&config.login_limits),
    );

    let conf = ServerConf {
        threads: config.threads.get(),
        work_stealing: config.work_stealing,
        grace_period_seconds: Some(config.shutdown.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.shutdown.graceful_shutdown_timeout_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let (upstreams, health_checks) = Upstreams::build(config).context("upstreams")?;
    let upstream_names: Vec<&str> = upstreams.pools().iter().map(|p| p.name.as_str()).collect();
    let denials = crate::auth::Denial::ALL.map(crate::auth::Denial::as_str);
    let login_limits = crate::auth::guard::Limit::ALL.map(crate::auth::guard::Limit::as_str);
    let mut login_failures: Vec<&str> = crate::auth::login::BadCredentialsReason::ALL
        .map(crate::auth::login::BadCredentialsReason::as_str)
        .to_vec();
    login_failures.extend(
        [
            Failure::BadRequest,
            Failure::TooLarge,
            Failure::Overloaded,
            Failure::StoreUnavailable,
        ]
        .map(Failure::label),
    );
    metrics.zero_series(&OutsideLabels {
        upstreams: &upstream_names,
        denials: &denials,
        login_limits: &login_limits,
        login_failures: &login_failures,
    });
    let upstreams = Arc::new(upstreams);
    for check in health_checks {
        server.add_service(check);
    }

    let in_flight = Arc::new(AtomicUsize::new(0));
    let identity = IdentityHeaders {
        user: header_name(&config.forwarding.user_header),
        role: header_name(&config.forwarding.role_header),
        app: header_name(&config.forwarding.app_header),
        share: header_name(&config.forwarding.share_header),
    };
    let settings = GatewaySettings {
        public_paths: config.public_paths.clone(),
        cors_origins: config
            .cors
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect(),
        strip: Strip::new(
            &identity,
            config.forwarding.keep_credentials,
            &config.forwarding.strip_headers,
        ),
        identity,
        auth_body_limit: config.limits.auth_body_max_bytes.get(),
        auth_body_timeout: Duration::from_millis(config.limits.auth_body_timeout_ms),
        keepalive_idle_secs: config.limits.keepalive_idle_seconds.get(),
        body_read_timeout: Duration::from_millis(config.limits.body_read_timeout_ms.get()),
        websocket_idle: Duration::from_secs(config.limits.websocket_idle_timeout_seconds.get()),
        failed_login_status: config.gwos.failed_login_status.code(),
        login_refusal_delay: Duration::from_millis(config.login_limits.refusal_delay_ms),
        path_policy: config.request_path,
        trusted_proxies: TrustedProxies::new(&config.forwarding.trusted_proxies),
        url_tokens: UrlTokens::new(
            config
                .url_tokens
                .iter()
                .map(|r| r.pattern().expect("validated by Config::validate"))
                .collect(),
        ),
        forward_auth_path: config
            .forward_auth
            .enabled
            .then(|| config.forward_auth.path.trim_end_matches('/').to_string()),
    };
    let audit_budget = Arc::new(LogBudget::per_second(config.log.audit_failures_per_second));
    server.add_service(background_service(
        "flood report",
        FloodReport {
            auth: auth.clone(),
            audit_budget: audit_budget.clone(),
            every: Duration::from_secs(config.log.flood_report_seconds.get()),
        },
    ));
    let upstream_latency = upstreams
        .pools()
        .iter()
        .map(|p| {
            metrics
                .upstream_duration
                .with_label_values(&[p.name.as_str()])
        })
        .collect();
    let gateway = Gateway {
        upstream_latency,
        forwarded: metrics.forwarded_series(crate::proxy::route::Route::Forward.as_str()),
        auth: auth.clone(),
        upstreams: upstreams.clone(),
        settings,
        in_flight: in_flight.clone(),
        audit_budget,
    };
    let admission = Admission {
        app: Arc::new(pingora::proxy::http_proxy(&server.configuration, gateway)),
        limits: ConnectionLimits::new(
            connection_limit(config.limits.max_connections.get()),
            config.limits.max_connections_per_client.get(),
            TrustedProxies::new(&config.forwarding.trusted_proxies),
            metrics.connections_open.clone(),
        ),
        timing: ConnectionTiming {
            header: Duration::from_millis(config.limits.request_header_timeout_ms.get()),
            idle: Duration::from_secs(config.limits.keepalive_idle_seconds.get()),
            under_pressure: Duration::from_millis(config.limits.wait_under_pressure_ms.get()),
        },
        metrics: metrics.clone(),
    };
    let mut proxy = Service::new("authgate".into(), admission);
    // No 64 KiB read buffer per connection (pingora's default, zero-filled at accept): pingora
    // reads headers and bodies into buffers of its own, so it only added a copy, and it was most
    // of an idle connection's memory (70 KiB then, 9 KiB without; README, "Running on the
    // internet"). The 1460-byte write buffer still joins a small answer's header and body.
    proxy.add_listener(
        ListenerConfig::tcp(&config.listen)
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );
    server.add_service(proxy);

    let lifecycle = Arc::new(Lifecycle::new(vec![
        ("listen", crate::config::resolve("listen", &config.listen)?),
        (
            "admin.listen",
            crate::config::resolve("admin.listen", &config.admin.listen)?,
        ),
    ]));
    server.add_service(background_service(
        "listen watch",
        ListenWatch {
            lifecycle: lifecycle.clone(),
            timeout: Duration::from_millis(config.bind_timeout_ms.get()),
        },
    ));
    let mut admin = Service::new(
        "admin".into(),
        HttpServer::new_app(AdminApp {
            auth: auth.clone(),
            upstreams,
            store_health: health.clone(),
            lifecycle: lifecycle.clone(),
            in_flight: in_flight.clone(),
        }),
    );
    admin.add_tcp(&config.admin.listen);
    admin.threads = Some(1);
    server.add_service(admin);

    if let Some(addr) = &config.demo_upstream {
        let mut demo = Service::new("demo upstream".into(), HttpServer::new_app(DemoUpstream));
        demo.add_tcp(addr);
        demo.threads = Some(1);
        server.add_service(demo);
    }

    if let Some(path) = &config.users_file {
        let reload = UsersReload {
            path: path.clone(),
            auth: auth.clone(),
            every: Duration::from_secs(config.users_reload_interval_seconds.get()),
            max_removed_share: config.users_reload_max_removed_share,
        };
        server.add_service(background_service("users reload", reload));
    }

    let purge = StorePurge {
        auth: auth.clone(),
        every: Duration::from_secs(config.store.purge_interval_seconds.get()),
    };
    server.add_service(background_service("token purge", purge));
    let recovery = StoreRecovery {
        auth: auth.clone(),
        health,
        first_retry: Duration::from_millis(STORE_RETRY_FIRST_MS),
        max_retry: Duration::from_millis(STORE_RETRY_MAX_MS),
    };
    server.add_service(background_service("token store recovery", recovery));
    if let Some(feed) = from_replicas {
        if let Some(counts) = auth.guard().share_events() {
            let to = ToReplicas {
                store: auth.cache().store().clone(),
                counts: tokio::sync::Mutex::new(counts),
            };
            server.add_service(background_service("login counts to replicas", to));
        }
        let from = FromReplicas {
            auth,
            feed: tokio::sync::Mutex::new(feed),
        };
        server.add_service(background_service("from other replicas", from));
    }

    Ok(Built {
        server,
        lifecycle,
        in_flight,
        store,
    })
}

/// Deletes expired tokens from the store now and then, so that it does not grow without bound.
/// Records it cannot decode are kept and counted (`authgate_store_undecodable_records`).
struct StorePurge {
    /// Its store, and its clock: a token is purged when the clock that decides its validity
    /// says it is dead.
    auth: Arc<Authenticator>,
    every: Duration,
}

#[async_trait]
impl BackgroundService for StorePurge {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(self.every);
        let mut undecodable_said = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticks.tick() => match self.auth.cache().store().purge_expired(self.auth.now_ms()).await {
                    Ok(purged) => {
                        if purged.deleted > 0 {
                            tracing::info!(purged = purged.deleted, "expired tokens purged");
                        }
                        // Said when the number changes, not on every pass.
                        if purged.undecodable != undecodable_said {
                            undecodable_said = purged.undecodable;
                            tracing::warn!(
                                records = purged.undecodable,
                                "token records that cannot be decoded are kept, not purged"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "token purge failed"),
                },
            }
        }
    }
}

/// First retry after a store failure; doubled after each failed retry, up to the maximum.
const STORE_RETRY_FIRST_MS: u64 = 100;
const STORE_RETRY_MAX_MS: u64 = 2_000;

/// `work`'s output, or `None` once the server starts shutting down.
async fn unless_shutdown<F: std::future::Future>(
    shutdown: &mut ShutdownWatch,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        _ = shutdown.changed() => None,
        output = work => Some(output),
    }
}

/// What other replicas announce through a shared store, applied here at once: revocations to the
/// cache (after an interruption, nothing cached is trusted), login counts to the login limits.
struct FromReplicas {
    auth: Arc<Authenticator>,
    feed: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Announcement>>,
}

#[async_trait]
impl BackgroundService for FromReplicas {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut feed = self.feed.lock().await;
        loop {
            let Some(announcement) = unless_shutdown(&mut shutdown, feed.recv()).await.flatten()
            else {
                return;
            };
            match announcement {
                Announcement::Revoked(hash) => self.auth.cache().forget(hash).await,
                Announcement::Interrupted => self.auth.cache().forget_all(),
                Announcement::FromReplica(message) => {
                    match serde_json::from_slice::<GuardEvent>(&message) {
                        Ok(event) => self.auth.guard().apply(event),
                        Err(e) => tracing::debug!(error = %e, "unreadable message from a replica"),
                    }
                }
            }
        }
    }
}

/// This replica's login counts, sent to the others through the shared store, so that limits and
/// lockouts count across replicas. A count that cannot be sent (Redis down) is dropped: logins
/// fail closed then anyway, since no token can be saved.
struct ToReplicas {
    store: Arc<dyn TokenStore>,
    counts: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<GuardEvent>>,
}

#[async_trait]
impl BackgroundService for ToReplicas {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut counts = self.counts.lock().await;
        loop {
            let Some(event) = unless_shutdown(&mut shutdown, counts.recv())
                .await
                .flatten()
            else {
                return;
            };
            let message = serde_json::to_vec(&event).expect("a login count always serialises");
            if let Err(e) = self.store.tell_replicas(message).await {
                tracing::debug!(error = %e, "a login count was not sent to the other replicas");
            }
        }
    }
}

/// Brings a failing store back without a restart: reopens it and proves a durable write, then
/// saves the revocations held in memory meanwhile. While all is well a tick costs two atomic
/// loads and one uncontended lock.
struct StoreRecovery {
    auth: Arc<Authenticator>,
    health: Arc<StoreHealth>,
    first_retry: Duration,
    max_retry: Duration,
}

#[async_trait]
impl BackgroundService for StoreRecovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut wait = self.first_retry;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if !self.health.is_failing() && !self.auth.has_held_revocations() {
                wait = self.first_retry;
                continue;
            }
            let store = self.auth.cache().store();
            let recovered = match store.recover().await {
                Ok(()) => self.auth.save_held_revocations().await,
                Err(e) => Err(e),
            };
            wait = match recovered {
                Ok(()) => {
                    self.health.wrote();
                    self.first_retry
                }
                Err(_) => (wait * 2).min(self.max_retry),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = "7UZZVvnLbuRNk12Yk5H33zeYdWQpnA7j9shir7QfJgwh";
    const PROPERTY: &str = "3PHpHhaYzuc=R3IwdW5kVzByazEyMw==";

    fn encrypted(adjust: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config::default();
        config.gwos.encryption.enabled = true;
        adjust(&mut config);
        config
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn decrypts(key: anyhow::Result<Option<JasyptKey>>) -> bool {
        key.unwrap().unwrap().decrypt(VECTOR).as_deref() == Some("RESTAPIACCESSPASSWORD")
    }

    #[test]
    fn jasypt_key_in_either_form_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (property_file, key_file) = (dir.path().join("mainkey"), dir.path().join("key"));
        std::fs::write(&property_file, format!("{PROPERTY}\n")).unwrap();
        std::fs::write(&key_file, "Gr0undW0rk123\n").unwrap();
        let none = env(&[]);
        assert!(decrypts(jasypt_key(
            &encrypted(|_| {}),
            env(&[(JASYPT_MAINKEY_ENV, PROPERTY)])
        )));
        assert!(decrypts(jasypt_key(
            &encrypted(|_| {}),
            env(&[(JASYPT_KEY_ENV, "Gr0undW0rk123")])
        )));
        let with_property_file =
            encrypted(|c| c.gwos.encryption.main_key_file = Some(property_file.clone()));
        assert!(decrypts(jasypt_key(&with_property_file, &none)));
        let with_key_file = encrypted(|c| c.gwos.encryption.key_file = Some(key_file.clone()));
        assert!(decrypts(jasypt_key(&with_key_file, &none)));
        // The environment wins over a file.
        assert!(decrypts(jasypt_key(
            &encrypted(|c| c.gwos.encryption.key_file = Some(property_file.clone())),
            env(&[(JASYPT_KEY_ENV, "Gr0undW0rk123")])
        )));
        assert!(jasypt_key(&Config::default(), &none).unwrap().is_none());
    }

    #[test]
    fn jasypt_key_errors_name_the_setting_and_the_form() {
        let error = |config: &Config, vars: &[(&str, &str)]| {
            jasypt_key(config, env(vars)).unwrap_err().to_string()
        };
        let both = error(
            &encrypted(|_| {}),
            &[(JASYPT_MAINKEY_ENV, PROPERTY), (JASYPT_KEY_ENV, "k")],
        );
        assert!(
            both.contains(JASYPT_MAINKEY_ENV) && both.contains(JASYPT_KEY_ENV),
            "{both}"
        );
        let none = error(&encrypted(|_| {}), &[]);
        assert!(
            none.contains(JASYPT_KEY_ENV) && none.contains("key_file"),
            "{none}"
        );
        // The decoded key pasted where the property form belongs.
        let pasted = error(&encrypted(|_| {}), &[(JASYPT_MAINKEY_ENV, "Gr0undW0rk123")]);
        assert!(
            pasted.starts_with(JASYPT_MAINKEY_ENV) && pasted.contains("Base64"),
            "{pasted}"
        );
        let empty = error(&encrypted(|_| {}), &[(JASYPT_KEY_ENV, "")]);
        assert!(empty.starts_with(JASYPT_KEY_ENV), "{empty}");
        let missing = error(
            &encrypted(|c| c.gwos.encryption.key_file = Some("/nonexistent/key".into())),
            &[],
        );
        assert!(missing.starts_with("gwos.encryption.key_file"), "{missing}");
    }
}
