//! The configuration: serde structs with defaults, read from a YAML file and then from the
//! environment, validated once at start-up.
//!
//! Everything downstream trusts a `Config` that passed [`Config::validate`]; nothing re-validates.
//!
//! Environment variables (figment's `Env`), over the file:
//! - `AUTHGATE_<KEY>` sets a key; `__` separates levels (`AUTHGATE_STORE__REDIS__URL`). Values are
//!   read as figment reads them: numbers, booleans, `[a, b]` lists; quote a string that looks
//!   like a number (`'"123"'`).
//! - `AUTHGATE_<KEY>__FILE` sets a key to the content of a file, as a string (one trailing newline
//!   dropped): a secret mounted as a file stays out of the environment. Two underscores, as
//!   between levels: `AUTHGATE_USERS_FILE` is the key `users_file`, not a file for `users`.

use crate::target::{check_configured_path, PathPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {why}")]
    Invalid { key: String, why: String },
}

/// The prefix of the environment variables that set keys.
pub const ENV_PREFIX: &str = "AUTHGATE_";
/// Variables with that prefix that are not keys (read elsewhere).
const ENV_NOT_KEYS: [&str; 4] = ["CONFIG", "REDIS_URL", "JASYPT_KEY", "JASYPT_MAINKEY"];

/// The key a variable name sets (`STORE__REDIS__URL` → `store.redis.url`).
fn env_key(name: &str) -> String {
    name.to_ascii_lowercase().replace("__", ".")
}

/// `AUTHGATE_*` variables (then `AUTHGATE_*__FILE` ones) over what `figment` holds.
fn with_environment(figment: figment::Figment) -> Result<figment::Figment, String> {
    use figment::providers::{Env, Serialized};
    let is_file = |name: &str| name.to_ascii_uppercase().ends_with("__FILE");
    let mut figment = figment.merge(
        Env::prefixed(ENV_PREFIX)
            .ignore(&ENV_NOT_KEYS)
            .filter(move |name| !is_file(name.as_str()))
            .map(|name| env_key(name.as_str()).into())
            .lowercase(false),
    );
    for (name, path) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let Some(key) = name
            .strip_prefix(ENV_PREFIX)
            .and_then(|rest| rest.strip_suffix("__FILE"))
        else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&key) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{name}: cannot read {}: {e}", Path::new(&path).display()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value).to_string();
        figment = figment.merge(Serialized::default(&env_key(key), value));
    }
    Ok(figment)
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: String,
    /// How long start-up waits for a listen address that another process holds (a previous
    /// instance still exiting), and for this process to hold its listeners; then it exits with
    /// an error.
    pub bind_timeout_ms: NonZeroU64,
    /// Worker threads of the proxy service. On the 2-core benchmark machine 1 and 2 served the same
    /// requests/s; 1 had the lower p99, 2 kept it steadier during a login flood (1.9-2.2x against
    /// 2.5-2.9x). A host of its own wants one per core.
    pub threads: NonZeroUsize,
    /// Let idle worker threads take tasks from busy ones (pingora's `work_stealing`). Off by
    /// default: each connection stays on one thread, which measured 7 % more proxied req/s.
    pub work_stealing: bool,
    pub admin: AdminConfig,
    pub shutdown: ShutdownConfig,
    pub store: StoreConfig,
    /// Users file (YAML). Absent: the built-in demo users (`admin`, `reader`).
    pub users_file: Option<PathBuf>,
    /// Start the built-in echo upstream on this address (for trying authgate out).
    pub demo_upstream: Option<String>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Path prefix → upstream name; the longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
    /// Upstream used when no route matches.
    pub default_upstream: String,
    /// Path prefixes forwarded without a token.
    pub public_paths: Vec<String>,
    /// How often the users file is checked for changes (and reloaded when it changed).
    pub users_reload_interval_seconds: NonZeroU64,
    /// A reload that would drop more than this share of the users holding live tokens looks like
    /// a file caught mid-write, and is refused. 1.0 turns the guard off.
    pub users_reload_max_removed_share: f64,
    pub gwos: GwosConfig,
    pub iogates: IogatesConfig,
    pub cors: CorsConfig,
    pub forwarding: ForwardingConfig,
    pub forward_auth: ForwardAuthConfig,
    /// Routes that carry their token in the URL (ioGates transfers); `conf/authgate.yaml` has the
    /// ioGates block to enable. The first that matches a request's canonical path wins.
    pub url_tokens: Vec<UrlTokenConfig>,
    /// How request paths are made canonical before any decision (and forwarded so).
    pub request_path: PathPolicy,
    pub limits: LimitsConfig,
    pub login_limits: LoginLimitsConfig,
    pub cache: CacheConfig,
    pub password_hashing: PasswordHashingConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM, first: not ready (`/readyz` 503) while still serving for this long, so that
    /// load balancers (a Kubernetes Service's endpoints) stop sending before the listeners close.
    /// A second signal meanwhile exits at once.
    pub delay_seconds: u64,
    /// Then: how long in-flight requests may take before the process exits.
    pub grace_period_seconds: u64,
    /// Then: how long runtimes get to wind down.
    pub graceful_shutdown_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Durable embedded store in `data_dir` (the default).
    Redb,
    /// Process memory: tokens die with the process. For tests and throwaway runs.
    Memory,
    /// Redis (or Valkey), shared by several replicas (`store.redis`).
    Redis,
}

/// `store.redis`: where the shared store is.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. The environment variable
    /// `AUTHGATE_REDIS_URL` wins over it (a password then stays out of the file).
    pub url: String,
    /// The seed nodes of a Redis Cluster (URLs as above). When given, `url` is not used.
    pub cluster_nodes: Vec<String>,
    /// A file holding the password (a mounted Kubernetes secret); it replaces any in the URLs.
    /// One trailing newline is ignored.
    pub password_file: Option<PathBuf>,
    /// PEM certificates to trust for `rediss://`, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for Redis to connect or answer; past it, the call fails (and the request with
    /// it, closed).
    pub timeout_ms: NonZeroU64,
    /// How long a replica trusts a token it has cached before asking Redis again (it caps
    /// `cache.max_ttl_seconds`): the longest a revocation made on another replica goes unseen
    /// here.
    pub cache_max_ttl_ms: NonZeroU64,
    /// While Redis cannot be reached, how long a token this replica validated keeps working from
    /// its cache, counted from when Redis last confirmed it (0: not at all). Tokens not cached
    /// are refused meanwhile.
    pub outage_grace_ms: u64,
}

/// The URL may hold a password: never printed.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"(not shown)")
            .field("cluster_nodes", &"(not shown)")
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_max_ttl_ms", &self.cache_max_ttl_ms)
            .field("outage_grace_ms", &self.outage_grace_ms)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            cluster_nodes: Vec::new(),
            password_file: None,
            ca_file: None,
            key_prefix: "authgate:".into(),
            timeout_ms: nonzero(1000),
            cache_max_ttl_ms: nonzero(1000),
            outage_grace_ms: 30_000,
        }
    }
}

/// What to do with a store file that is damaged at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDamage {
    /// Refuse to start (the default: an operator decides, nothing is thrown away silently).
    #[default]
    Refuse,
    /// Rename the file to `tokens.redb.damaged-<unix seconds>` and start with an empty store.
    MoveAside,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub data_dir: PathBuf,
    /// How often expired tokens are purged from the store.
    pub purge_interval_seconds: NonZeroU64,
    /// What to do with a damaged store file at start-up. Only the command line sets it
    /// (`--move-damaged-store`): throwing tokens away is a decision for each start, not a setting.
    #[serde(skip)]
    pub on_damage: OnDamage,
    /// For `kind: redis`.
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// One or more `host:port`; several are balanced round-robin, with TCP health checks.
    pub addresses: Vec<String>,
    pub connect_timeout_ms: NonZeroU64,
    pub read_timeout_ms: NonZeroU64,
    pub write_timeout_ms: NonZeroU64,
    pub idle_timeout_ms: u64,
    pub health_check_interval_ms: NonZeroU64,
    /// `Host` sent upstream when the client sent none (HTTP/1.0); absent: the first address.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FailedLoginStatus {
    /// The documented contract.
    #[serde(rename = "401")]
    Unauthorized,
    /// What GroundWork 7 servers really answer.
    #[serde(rename = "404")]
    NotFound,
}

impl FailedLoginStatus {
    pub fn code(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::NotFound => 404,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GwosConfig {
    /// Status of a failed login: "401" (documented) or "404" (GroundWork 7's real answer).
    pub failed_login_status: FailedLoginStatus,
    /// Sliding idle timeout of a token.
    pub idle_timeout_seconds: NonZeroU64,
    /// Absolute maximum lifetime of a token; absent = none.
    pub max_lifetime_seconds: Option<NonZeroU64>,
    /// Live tokens per user; the oldest is evicted beyond it. Absent = no cap.
    pub max_tokens_per_user: Option<NonZeroUsize>,
    /// POST paths a `reader` may call (exact paths).
    pub reader_post_paths: Vec<String>,
    pub encryption: EncryptionConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IogatesConfig {
    /// Maximum lifetime of an ioGates token; `null` = none (they live until revoked).
    pub max_lifetime_seconds: Option<NonZeroU64>,
}

/// ioGates clients log in again on every run, so a month costs them nothing, and it bounds how
/// long a token copied off a machine stays good.
pub const IOGATES_DEFAULT_MAX_LIFETIME_SECONDS: u64 = 30 * 24 * 3600;

impl Default for IogatesConfig {
    fn default() -> Self {
        IogatesConfig {
            max_lifetime_seconds: Some(nonzero(IOGATES_DEFAULT_MAX_LIFETIME_SECONDS)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Passwords arrive Jasypt-encrypted instead of Base64.
    pub enabled: bool,
    /// File holding GroundWork's `jasypt.mainkey` value as in `foundation.properties`
    /// (12 characters, then the key in Base64).
    pub main_key_file: Option<PathBuf>,
    /// File holding the decoded key itself (e.g. `Gr0undW0rk123`). Set this or `main_key_file`;
    /// the environment variables `AUTHGATE_JASYPT_KEY` / `AUTHGATE_JASYPT_MAINKEY` win over both.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins (exact, e.g. `https://monitor.example.com`) allowed cross-origin access.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    /// Keep `GWOS-API-TOKEN` / `GWOS-APP-NAME` on forwarded requests (for a backend that checks them too).
    pub keep_credentials: bool,
    pub user_header: String,
    pub role_header: String,
    pub app_header: String,
    /// Set to the share id for share tokens.
    pub share_header: String,
    /// More request headers to remove before forwarding (any case, `_` or `-`), on top of the
    /// identity headers and the method and URL override headers that are always removed.
    pub strip_headers: Vec<String>,
    /// Peers (CIDR, or a bare address) whose `X-Forwarded-For`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Host` and `Forwarded` are believed. From any other peer they are replaced.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest body accepted on the auth endpoints (413 beyond).
    pub auth_body_max_bytes: NonZeroUsize,
    /// How long reading an auth body may take.
    pub auth_body_timeout_ms: u64,
    /// Longer credentials are refused without a store lookup.
    pub max_token_length: usize,
    /// How long a kept-alive client connection may sit idle before the next request begins.
    pub keepalive_idle_seconds: NonZeroU64,
    /// How long a whole request header may take to arrive: from the connection's start for its
    /// first request, from the first byte for later ones.
    pub request_header_timeout_ms: NonZeroU64,
    /// How long a forwarded request body may go without a byte arriving.
    pub body_read_timeout_ms: NonZeroU64,
    /// How long an upgraded connection (WebSocket) may go without traffic either way.
    pub websocket_idle_timeout_seconds: NonZeroU64,
    /// Client connections open at once, in all; beyond, new ones are closed at once.
    pub max_connections: NonZeroUsize,
    /// Client connections open at once from one address (a trusted proxy: only the total).
    pub max_connections_per_client: NonZeroU32,
    /// How long a connection may wait for a request once 90 % of `max_connections` are open
    /// (until fewer than 75 % are): idle connections make room for new ones.
    pub wait_under_pressure_ms: NonZeroU64,
}

/// Password guessing, bounded (`auth::guard`): on GWOS login, GW8 authenticatePassword and ioGates
/// authtoken. Beyond a limit: 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimitsConfig {
    /// Login attempts one client address may make per minute, whatever the user names.
    pub per_client_per_minute: NonZeroU32,
    /// Login attempts per minute for one user name, from all addresses together.
    pub per_user_per_minute: NonZeroU32,
    /// Failures of one user name from one address before that pair is locked out.
    pub lockout_after_failures: NonZeroU32,
    /// The first lockout; each further failure doubles it.
    pub lockout_seconds: NonZeroU64,
    /// The longest lockout.
    pub lockout_max_seconds: NonZeroU64,
    /// How long a refused attempt waits before its 429 is sent (0: at once).
    pub refusal_delay_ms: u64,
}

impl Default for LoginLimitsConfig {
    fn default() -> Self {
        LoginLimitsConfig {
            per_client_per_minute: NonZeroU32::new(60).expect("non-zero"),
            // GroundWork deployments share one REST account among many connectors, which all
            // log in again when they restart: a user's limit must let a fleet through.
            per_user_per_minute: NonZeroU32::new(120).expect("non-zero"),
            lockout_after_failures: NonZeroU32::new(5).expect("non-zero"),
            lockout_seconds: nonzero(1),
            lockout_max_seconds: nonzero(300),
            refusal_delay_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Validated tokens kept in memory.
    pub capacity: NonZeroU64,
    /// Longest a validated token stays cached before the store is asked again.
    pub max_ttl_seconds: NonZeroU64,
    /// How long an unknown token is remembered as unknown.
    pub negative_ttl_seconds: u64,
    /// How often a token in use has its `last_used` written back to the store.
    pub touch_interval_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordHashingConfig {
    /// Password verifications running at once (each takes one blocking thread).
    pub max_concurrent: NonZeroUsize,
    /// Verifications allowed to wait; beyond, logins get 503 at once.
    pub max_waiting: usize,
    /// Of those, how many one client address may hold.
    pub max_waiting_per_client: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (e.g. `info`, `authgate=debug`); `RUST_LOG` wins over it.
    pub level: String,
    /// How often, during a flood, one summary line says what was refused or cut off.
    pub flood_report_seconds: NonZeroU64,
    /// Audit lines of failed and refused logins written per second at most (successes always
    /// are); the rest are counted in the flood report.
    pub audit_failures_per_second: NonZeroU32,
}

pub const DEMO_UPSTREAM_ADDR: &str = "127.0.0.1:8081";

/// A default that is not zero (checked when the defaults are built, in every test run).
fn nonzero(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).expect("a non-zero default")
}

fn nonzero_usize(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("a non-zero default")
}

impl Default for Config {
    fn default() -> Self {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            "demo".to_string(),
            UpstreamConfig {
                addresses: vec![DEMO_UPSTREAM_ADDR.to_string()],
                ..UpstreamConfig::default()
            },
        );
        Config {
            listen: "127.0.0.1:8080".into(),
            bind_timeout_ms: nonzero(5000),
            threads: nonzero_usize(2),
            work_stealing: false,
            admin: AdminConfig::default(),
            shutdown: ShutdownConfig::default(),
            store: StoreConfig::default(),
            users_file: None,
            users_reload_interval_seconds: nonzero(5),
            users_reload_max_removed_share: 0.5,
            demo_upstream: Some(DEMO_UPSTREAM_ADDR.into()),
            upstreams,
            routes: Vec::new(),
            default_upstream: "demo".into(),
            public_paths: Vec::new(),
            gwos: GwosConfig::default(),
            iogates: IogatesConfig::default(),
            cors: CorsConfig::default(),
            forwarding: ForwardingConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
            url_tokens: Vec::new(),
            request_path: PathPolicy::default(),
            limits: LimitsConfig::default(),
            login_limits: LoginLimitsConfig::default(),
            cache: CacheConfig::default(),
            password_hashing: PasswordHashingConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `url_tokens[]`: where a route carries its token in the URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlTokenConfig {
    /// A path pattern: literal segments, `*` for any one segment, `{token}` for the token's, and
    /// a final `**` for any rest.
    pub path: String,
    /// The query parameter holding the token, for a pattern without `{token}`.
    #[serde(default)]
    pub query: Option<String>,
    /// What a share token needs here whatever the method: `upload`, `download`, or `method`
    /// (the share's own rule, the default).
    #[serde(default)]
    pub permission: crate::url_token::Permission,
    /// Who answers `OPTIONS` here: `preflight` (authgate's CORS answer, the default) or
    /// `upstream` (tus discovery; the URL token is decided on first, like any request's).
    #[serde(default)]
    pub options: crate::url_token::OptionsAnswer,
}

impl UrlTokenConfig {
    pub fn pattern(&self) -> Result<crate::url_token::Pattern, String> {
        crate::url_token::Pattern::parse(
            &self.path,
            self.query.as_deref(),
            self.permission,
            self.options,
        )
    }
}

/// `forward_auth`: the decision endpoint for an ingress in front (nginx `auth_request`,
/// ingress-nginx, Traefik, Caddy, Envoy `ext_authz`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    pub enabled: bool,
    /// Where it answers on the main listener; Envoy appends the original path to it. Requests
    /// here are never forwarded. Only `forwarding.trusted_proxies` get decisions.
    pub path: String,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            enabled: true,
            path: "/authgate/verify".into(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9091".into(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        // pingora's own default grace is 300 s: far beyond Kubernetes' 30 s termination grace.
        ShutdownConfig {
            delay_seconds: 0,
            grace_period_seconds: 10,
            graceful_shutdown_timeout_seconds: 5,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Redb,
            data_dir: PathBuf::from("authgate-data"),
            purge_interval_seconds: nonzero(60),
            on_damage: OnDamage::Refuse,
            redis: RedisConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            addresses: Vec::new(),
            connect_timeout_ms: nonzero(2_000),
            read_timeout_ms: nonzero(30_000),
            write_timeout_ms: nonzero(30_000),
            idle_timeout_ms: 60_000,
            health_check_interval_ms: nonzero(5_000),
            host: None,
        }
    }
}

impl Default for GwosConfig {
    fn default() -> Self {
        GwosConfig {
            failed_login_status: FailedLoginStatus::Unauthorized,
            idle_timeout_seconds: nonzero(8 * 3600),
            max_lifetime_seconds: None,
            max_tokens_per_user: None,
            reader_post_paths: vec![
                "/api/biz/getindowntime".into(),
                "/api/biz/getauthorizedservices".into(),
                "/api/events/stateTransitions".into(),
            ],
            encryption: EncryptionConfig::default(),
        }
    }
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        ForwardingConfig {
            keep_credentials: false,
            user_header: "X-Authgate-User".into(),
            role_header: "X-Authgate-Role".into(),
            app_header: "X-Authgate-App".into(),
            share_header: "X-Authgate-Share".into(),
            strip_headers: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            auth_body_max_bytes: nonzero_usize(16 * 1024),
            auth_body_timeout_ms: 10_000,
            max_token_length: 256,
            keepalive_idle_seconds: nonzero(60),
            request_header_timeout_ms: nonzero(10_000),
            body_read_timeout_ms: nonzero(30_000),
            websocket_idle_timeout_seconds: nonzero(3600),
            max_connections: nonzero_usize(10_000),
            max_connections_per_client: NonZeroU32::new(256).expect("non-zero"),
            wait_under_pressure_ms: nonzero(1000),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: nonzero(250_000),
            max_ttl_seconds: nonzero(300),
            negative_ttl_seconds: 5,
            touch_interval_seconds: 60,
        }
    }
}

impl Default for PasswordHashingConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordHashingConfig {
            // Leave at least one core to proxying during a login flood.
            max_concurrent: nonzero_usize((cores / 2).max(1)),
            max_waiting: 64,
            max_waiting_per_client: nonzero_usize(16),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into(),
            flood_report_seconds: nonzero(10),
            audit_failures_per_second: NonZeroU32::new(20).expect("non-zero"),
        }
    }
}

impl Config {
    /// Read, parse and validate a configuration file.
    /// The file at `path` (none: the embedded defaults), then the environment's `AUTHGATE_*`
    /// variables over it; validated.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let source = path.map_or_else(|| PathBuf::from("(defaults)"), Path::to_path_buf);
        let parse_error = |message| ConfigError::Parse {
            path: source.clone(),
            message,
        };
        let mut figment = figment::Figment::new();
        if !text.trim().is_empty() {
            let yaml: serde_norway::Value =
                serde_norway::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
            figment = figment.merge(figment::providers::Serialized::defaults(yaml));
        }
        let config: Config = with_environment(figment)
            .map_err(parse_error)?
            .extract()
            .map_err(|e| parse_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parse YAML; an empty document gives the defaults.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    /// Check what serde cannot: addresses resolve, names refer to something, numbers make sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        resolve("listen", &self.listen)?;
        resolve("admin.listen", &self.admin.listen)?;
        if let Some(addr) = &self.demo_upstream {
            resolve("demo_upstream", addr)?;
        }
        if self.upstreams.is_empty() {
            return Err(invalid("upstreams", "at least one upstream is required"));
        }
        for (name, upstream) in &self.upstreams {
            if upstream.addresses.is_empty() {
                return Err(invalid(
                    format!("upstreams.{name}.addresses"),
                    "at least one address is required",
                ));
            }
            for (i, addr) in upstream.addresses.iter().enumerate() {
                resolve(&format!("upstreams.{name}.addresses[{i}]"), addr)?;
            }
            if let Some(host) = &upstream.host {
                if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
                    return Err(invalid(
                        format!("upstreams.{name}.host"),
                        format!("{host:?} is not a valid Host value"),
                    ));
                }
            }
        }
        if !self.upstreams.contains_key(&self.default_upstream) {
            return Err(invalid(
                "default_upstream",
                format!("no upstream named {:?}", self.default_upstream),
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            check_prefix(&format!("routes[{i}].prefix"), &route.prefix)?;
            if !self.upstreams.contains_key(&route.upstream) {
                return Err(invalid(
                    format!("routes[{i}].upstream"),
                    format!("no upstream named {:?}", route.upstream),
                ));
            }
        }
        for (i, route) in self.url_tokens.iter().enumerate() {
            route
                .pattern()
                .map_err(|why| invalid(format!("url_tokens[{i}].path"), why))?;
        }
        check_prefix("forward_auth.path", &self.forward_auth.path)?;
        if self.forward_auth.path == "/" {
            return Err(invalid(
                "forward_auth.path",
                "must not be / (every request would be a decision)",
            ));
        }
        for (i, prefix) in self.public_paths.iter().enumerate() {
            check_prefix(&format!("public_paths[{i}]"), prefix)?;
        }
        for (i, path) in self.gwos.reader_post_paths.iter().enumerate() {
            check_prefix(&format!("gwos.reader_post_paths[{i}]"), path)?;
        }
        if !(0.0..=1.0).contains(&self.users_reload_max_removed_share) {
            return Err(invalid(
                "users_reload_max_removed_share",
                "must be between 0.0 and 1.0 (1.0 turns the guard off)",
            ));
        }
        for (key, value) in [
            ("forwarding.user_header", &self.forwarding.user_header),
            ("forwarding.role_header", &self.forwarding.role_header),
            ("forwarding.app_header", &self.forwarding.app_header),
            ("forwarding.share_header", &self.forwarding.share_header),
        ] {
            if http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                return Err(invalid(
                    key,
                    format!("{value:?} is not a valid header name"),
                ));
            }
        }
        for (i, name) in self.forwarding.strip_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    format!("forwarding.strip_headers[{i}]"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
        }
        for (i, cidr) in self.forwarding.trusted_proxies.iter().enumerate() {
            crate::forwarded::parse_network(cidr)
                .map_err(|why| invalid(format!("forwarding.trusted_proxies[{i}]"), why))?;
        }
        self.store.redis.validate()?;
        if self.limits.max_token_length < 36 {
            return Err(invalid(
                "limits.max_token_length",
                "must be at least 36 (a UUID)",
            ));
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a tracing filter", self.log.level),
            ));
        }
        Ok(())
    }
}

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let urls = if self.cluster_nodes.is_empty() {
            vec![("store.redis.url".to_string(), &self.url)]
        } else {
            let key = |i| format!("store.redis.cluster_nodes[{i}]");
            self.cluster_nodes
                .iter()
                .enumerate()
                .map(|(i, url)| (key(i), url))
                .collect()
        };
        for (key, url) in urls {
            // Named without the URL: it may hold a password.
            match url::Url::parse(url) {
                Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.has_host() => {}
                _ => {
                    return Err(invalid(
                        key,
                        "must be a redis:// or rediss:// URL with a host",
                    ))
                }
            }
        }
        if self.key_prefix.is_empty() {
            return Err(invalid(
                "store.redis.key_prefix",
                "must not be empty (it names this deployment's keys)",
            ));
        }
        Ok(())
    }
}

/// Resolve an address once, at start-up (pingora would otherwise resolve with blocking DNS and panic).
pub fn resolve(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{addr:?} resolves to no address")))
}

/// A configured path must be canonical: requests are matched in that form.
fn check_prefix(key: &str, prefix: &str) -> Result<(), ConfigError> {
    check_configured_path(prefix).map_err(|why| invalid(key, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::parse("").unwrap().validate().unwrap();
    }

    #[test]
    // figment's Jail fixes the closure's error type (a large `figment::Error`).
    #[allow(clippy::result_large_err)]
    fn environment_variables_and_secret_files_override_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("authgate.yaml", "listen: 127.0.0.1:7000\nthreads: 1\n")?;
            jail.create_file("redis-url", "redis://:s3cret@redis:6379\n")?;
            jail.set_env("AUTHGATE_THREADS", "3");
            jail.set_env("AUTHGATE_STORE__KIND", "redis");
            jail.set_env(
                "AUTHGATE_FORWARDING__TRUSTED_PROXIES",
                "[10.0.0.0/8, 127.0.0.1]",
            );
            jail.set_env("AUTHGATE_STORE__REDIS__URL__FILE", "redis-url");
            jail.set_env("AUTHGATE_LOG__FORMAT", "json");
            jail.set_env("AUTHGATE_USERS_FILE", "/etc/authgate/users.yaml");
            // Read elsewhere, never a key: no "unknown field" for them.
            jail.set_env("AUTHGATE_CONFIG", "authgate.yaml");
            jail.set_env("AUTHGATE_JASYPT_KEY", "x");
            let config = Config::load(Some(Path::new("authgate.yaml"))).unwrap();
            assert_eq!(config.listen, "127.0.0.1:7000", "from the file");
            assert_eq!(config.threads.get(), 3, "the environment wins");
            assert_eq!(config.store.kind, StoreKind::Redis);
            assert_eq!(
                config.forwarding.trusted_proxies,
                vec!["10.0.0.0/8".to_string(), "127.0.0.1".to_string()]
            );
            assert_eq!(config.store.redis.url, "redis://:s3cret@redis:6379");
            assert_eq!(
                config.users_file.as_deref(),
                Some(Path::new("/etc/authgate/users.yaml")),
                "a key ending in _file, not a secret file"
            );
            let defaults = Config::load(None).unwrap();
            assert_eq!(defaults.threads.get(), 3, "over the defaults too");
            assert_eq!(defaults.listen, Config::default().listen);

            jail.set_env("AUTHGATE_NO_SUCH_KEY", "1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("no_such_key"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("gwos:\n  idle_timeout: 5\n").unwrap_err();
        assert!(err.contains("idle_timeout"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("default_upstream: nope\n", "default_upstream"),
            (
                "routes:\n  - prefix: /x\n    upstream: nope\n",
                "routes[0].upstream",
            ),
            ("public_paths: [api]\n", "public_paths[0]"),
            ("public_paths: [/a/../b]\n", "public_paths[0]"),
            (
                "forwarding:\n  trusted_proxies: [10.0.0.0/33]\n",
                "forwarding.trusted_proxies[0]",
            ),
            (
                "forwarding:\n  strip_headers: [\"a b\"]\n",
                "forwarding.strip_headers[0]",
            ),
            ("listen: not-an-address\n", "listen"),
            (
                "forwarding:\n  user_header: \"bad header\"\n",
                "forwarding.user_header",
            ),
            (
                "store:\n  redis:\n    url: \"http://u:secret@h:6379\"\n",
                "store.redis.url",
            ),
            (
                "store:\n  redis:\n    cluster_nodes: [\"redis://a:1\", \"b:2\"]\n",
                "store.redis.cluster_nodes[1]",
            ),
            (
                "store:\n  redis:\n    key_prefix: \"\"\n",
                "store.redis.key_prefix",
            ),
        ];
        for (yaml, key) in cases {
            let err = Config::parse(yaml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{yaml}: {err}");
            assert!(!err.contains("secret"), "a URL's password is never echoed");
        }
    }

    #[test]
    fn shipped_config_is_valid_and_is_exactly_the_defaults() {
        let shipped = Config::parse(include_str!("../conf/authgate.yaml")).unwrap();
        shipped.validate().unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn zeros_are_refused_naming_the_key_and_the_line() {
        for (yaml, key) in [
            (
                "gwos:\n  max_tokens_per_user: 0\n",
                "gwos.max_tokens_per_user",
            ),
            ("threads: 0\n", "threads"),
            ("cache:\n  capacity: 0\n", "cache.capacity"),
            (
                "upstreams:\n  demo:\n    addresses: [127.0.0.1:1]\n    read_timeout_ms: 0\n",
                "upstreams.demo.read_timeout_ms",
            ),
            (
                "store:\n  purge_interval_seconds: 0\n",
                "store.purge_interval_seconds",
            ),
        ] {
            let err = Config::parse(yaml).unwrap_err();
            assert!(err.starts_with(key), "{yaml}: {err}");
            assert!(err.contains("at line"), "{yaml}: {err}");
        }
    }

    #[test]
    fn iogates_tokens_have_a_lifetime_unless_null() {
        assert_eq!(
            Config::default().iogates.max_lifetime_seconds,
            NonZeroU64::new(30 * 24 * 3600)
        );
        let unlimited = Config::parse("iogates:\n  max_lifetime_seconds: null\n").unwrap();
        assert_eq!(unlimited.iogates.max_lifetime_seconds, None);
    }

    #[test]
    fn failed_login_status_parses_both_codes() {
        let c = Config::parse("gwos:\n  failed_login_status: \"404\"\n").unwrap();
        assert_eq!(c.gwos.failed_login_status.code(), 404);
    }
}
