//! Prometheus metrics, in a registry owned by the gateway (several gateways in one process must not
//! collide). Names are constants; labels are low-cardinality classes, never a user, token or path.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const REQUESTS: &str = "authgate_requests_total";
pub const REQUEST_DURATION: &str = "authgate_request_duration_seconds";
pub const AUTH_DECISIONS: &str = "authgate_auth_decisions_total";
pub const LOGINS: &str = "authgate_logins_total";
pub const TOKENS_ISSUED: &str = "authgate_tokens_issued_total";
pub const TOKENS_REVOKED: &str = "authgate_tokens_revoked_total";
pub const TOKENS_LIVE: &str = "authgate_tokens_live";
pub const CACHE_LOOKUPS: &str = "authgate_token_cache_lookups_total";
pub const STORE_DURATION: &str = "authgate_store_operation_seconds";
pub const STORE_ERRORS: &str = "authgate_store_errors_total";
pub const STORE_WRITABLE: &str = "authgate_store_writable";
pub const STORE_UNDECODABLE: &str = "authgate_store_undecodable_records";
pub const REVOCATIONS_UNSAVED: &str = "authgate_revocations_unsaved";
pub const UPSTREAM_DURATION: &str = "authgate_upstream_response_seconds";
pub const UPSTREAM_ERRORS: &str = "authgate_upstream_errors_total";
pub const UPSTREAM_POOL_RACES: &str = "authgate_upstream_pool_races_total";
pub const PASSWORD_WAITING: &str = "authgate_password_verifications_waiting";
pub const PASSWORD_RUNNING: &str = "authgate_password_verifications_running";
pub const PASSWORD_REJECTED: &str = "authgate_password_verifications_rejected_total";
pub const LOGINS_LIMITED: &str = "authgate_login_limited_total";
pub const CONNECTIONS_OPEN: &str = "authgate_connections_open";
pub const CONNECTIONS_REFUSED: &str = "authgate_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "authgate_connections_closed_total";
pub const BUILD_INFO: &str = "authgate_build_info";
pub const REQUESTS_IN_FLIGHT: &str = "authgate_requests_in_flight";
pub const CACHE_ENTRIES: &str = "authgate_token_cache_entries";
pub const USERS: &str = "authgate_users";
pub const USERS_RELOADS: &str = "authgate_users_reloads_total";

/// Label values, typed: a call site names a variant, never a string.
macro_rules! label {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, to create each series at zero at start-up.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $value),+ }
            }
        }
    };
}

label!(
    /// Why a token was revoked (`authgate_tokens_revoked_total{reason}`).
    RevokeReason {
        Logout => "logout",
        Replaced => "replaced",
        Evicted => "evicted",
        Revoked => "revoked",
        ConfigReload => "config_reload",
    }
);

label!(
    /// A token store operation (`authgate_store_operation_seconds`, `authgate_store_errors_total`).
    StoreOp {
        Insert => "insert",
        Get => "get",
        Revoke => "revoke",
        Touch => "touch",
        TokensOf => "tokens_of",
        Purge => "purge",
        Count => "count",
        Recover => "recover",
    }
);

label!(
    /// What became of a changed users file (`authgate_users_reloads_total{result}`).
    UsersReloadResult {
        Applied => "applied",
        /// It does not parse, has no user, or leaves out too many token holders.
        Refused => "refused",
        /// The store could not say who holds tokens: tried again at the next check.
        Deferred => "deferred",
        Unreadable => "unreadable",
    }
);

label!(
    /// How an upstream failed (`authgate_upstream_errors_total{kind}`).
    UpstreamErrorKind {
        Connect => "connect",
        Timeout => "timeout",
        Status5xx => "5xx",
        Other => "other",
    }
);

label!(
    /// What a token cache lookup found (`authgate_token_cache_lookups_total{result}`); `stale_hit`:
    /// served past `max_ttl` because the store could not be asked (the Redis outage grace).
    CacheLookup {
        Hit => "hit",
        Miss => "miss",
        NegativeHit => "negative_hit",
        StaleHit => "stale_hit",
    }
);

label!(
    /// The protocol of a login call (`authgate_logins_total{protocol}`).
    LoginProtocol {
        Gwos => "gwos",
        Gw8 => "gw8",
        Iogates => "iogates",
    }
);

label!(
    /// Which connection limit refused a new connection (`authgate_connections_refused_total`).
    ConnectionLimit {
        Total => "total",
        PerClient => "per_client",
    }
);

label!(
    /// Why authgate closed a client connection itself (`authgate_connections_closed_total`): a
    /// request header not whole in time, no next request on a kept-alive connection in time, or
    /// a connection waiting for a request closed early to make room (the limits under pressure).
    CloseReason {
        HeaderTimeout => "header_timeout",
        Idle => "idle",
        Shed => "shed",
    }
);

pub struct Metrics {
    registry: Registry,
    /// route class × status class (`2xx` … `5xx`).
    pub requests: IntCounterVec,
    /// route class.
    pub request_duration: HistogramVec,
    /// outcome: allowed, public, missing, missing_app_name, invalid, expired, app_mismatch,
    /// forbidden, out_of_scope, unavailable.
    pub auth_decisions: IntCounterVec,
    /// protocol (gwos, gw8, iogates) × outcome (success, share_success, bad_request, …).
    pub logins: IntCounterVec,
    /// kind (gwos, iogates).
    pub tokens_issued: IntCounterVec,
    /// reason (logout, replaced, evicted, revoked, config_reload).
    pub tokens_revoked: IntCounterVec,
    pub tokens_live: IntGauge,
    /// result (hit, miss, negative_hit).
    pub cache_lookups: IntCounterVec,
    /// operation (insert, get, revoke, touch, tokens_of, purge, count).
    pub store_duration: HistogramVec,
    /// operation × class (unavailable, damaged, undecodable).
    pub store_errors: IntCounterVec,
    /// 1 while writes succeed, 0 from a failed write until a write succeeds again.
    pub store_writable: IntGauge,
    /// Records the last purge pass could not decode (kept, never deleted).
    pub store_undecodable: IntGauge,
    /// Revocations enforced in memory whose write has not succeeded yet.
    pub revocations_unsaved: IntGauge,
    pub upstream_duration: HistogramVec,
    /// kind (connect, timeout, 5xx, other).
    pub upstream_errors: IntCounterVec,
    /// Pooled upstream connections pingora could not hand out (its pool's race: a new
    /// connection is opened instead; no request fails).
    pub upstream_pool_races: IntCounter,
    pub password_waiting: IntGauge,
    pub password_running: IntGauge,
    pub password_rejected: IntCounter,
    /// limit (limited_client, limited_user, locked_out).
    pub logins_limited: IntCounterVec,
    /// Client connections open on the proxy listener.
    pub connections_open: IntGauge,
    /// limit (total, per_client).
    pub connections_refused: IntCounterVec,
    /// reason (header_timeout, idle, shed).
    pub connections_closed: IntCounterVec,
    pub requests_in_flight: IntGauge,
    pub cache_entries: IntGauge,
    pub users: IntGauge,
    pub users_reloads: IntCounterVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

/// HTTP status class label, e.g. `4xx`; `none` when nothing was sent.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// The series nearly every request lands in (a forwarded request answered 2xx, let through by
/// a token or a public path), resolved once: a labelled lookup hashes its label values on every
/// call.
pub struct ForwardedSeries {
    pub answered_2xx: IntCounter,
    pub duration: Histogram,
    pub allowed: IntCounter,
    pub public: IntCounter,
}

impl Metrics {
    /// `route` is the forwarded requests' route label.
    pub fn forwarded_series(&self, route: &str) -> ForwardedSeries {
        ForwardedSeries {
            answered_2xx: self.requests.with_label_values(&[route, "2xx"]),
            duration: self.request_duration.with_label_values(&[route]),
            allowed: self.auth_decisions.with_label_values(&["allowed"]),
            public: self.auth_decisions.with_label_values(&["public"]),
        }
    }

    pub fn new() -> Metrics {
        let r = Registry::new();
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        let store = vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            1.0,
        ];
        let metrics = Metrics {
            requests: counter_vec(
                &r,
                REQUESTS,
                "Requests answered, by route class and status class.",
                &["route", "status_class"],
            ),
            request_duration: histogram_vec(
                &r,
                REQUEST_DURATION,
                "Time from request to the end of the response, by route class.",
                &["route"],
                latency.clone(),
            ),
            auth_decisions: counter_vec(
                &r,
                AUTH_DECISIONS,
                "Decisions on forwarded requests, by outcome.",
                &["outcome"],
            ),
            logins: counter_vec(
                &r,
                LOGINS,
                "Login and authtoken calls, by protocol and outcome.",
                &["protocol", "outcome"],
            ),
            tokens_issued: counter_vec(&r, TOKENS_ISSUED, "Tokens issued, by kind.", &["kind"]),
            tokens_revoked: counter_vec(
                &r,
                TOKENS_REVOKED,
                "Tokens revoked, by reason.",
                &["reason"],
            ),
            tokens_live: gauge(
                &r,
                TOKENS_LIVE,
                "Token records in the store (read at scrape time).",
            ),
            cache_lookups: counter_vec(
                &r,
                CACHE_LOOKUPS,
                "Token cache lookups, by result (hit, miss, negative_hit).",
                &["result"],
            ),
            store_duration: histogram_vec(
                &r,
                STORE_DURATION,
                "Token store operation latency, by operation.",
                &["operation"],
                store,
            ),
            store_errors: counter_vec(
                &r,
                STORE_ERRORS,
                "Token store operations that failed, by operation and class.",
                &["operation", "class"],
            ),
            store_writable: gauge(
                &r,
                STORE_WRITABLE,
                "1 while token store writes succeed; 0 from a failed write until one succeeds.",
            ),
            store_undecodable: gauge(
                &r,
                STORE_UNDECODABLE,
                "Token records the last purge could not decode (kept, never deleted).",
            ),
            revocations_unsaved: gauge(
                &r,
                REVOCATIONS_UNSAVED,
                "Revocations enforced in memory whose store write has not succeeded yet.",
            ),
            upstream_duration: histogram_vec(
                &r,
                UPSTREAM_DURATION,
                "Time from choosing an upstream to its response header, by upstream.",
                &["upstream"],
                latency,
            ),
            upstream_errors: counter_vec(
                &r,
                UPSTREAM_ERRORS,
                "Upstream failures, by upstream and kind (connect, timeout, 5xx, other).",
                &["upstream", "kind"],
            ),
            password_waiting: gauge(
                &r,
                PASSWORD_WAITING,
                "Password verifications waiting for a thread.",
            ),
            password_running: gauge(&r, PASSWORD_RUNNING, "Password verifications running."),
            password_rejected: counter(
                &r,
                PASSWORD_REJECTED,
                "Password verifications refused because too many were waiting.",
            ),
            upstream_pool_races: counter(
                &r,
                UPSTREAM_POOL_RACES,
                "Idle upstream connections pingora's pool could not hand out (a new one opened).",
            ),
            logins_limited: counter_vec(
                &r,
                LOGINS_LIMITED,
                "Login attempts refused by a login limit (429), by limit.",
                &["limit"],
            ),
            connections_open: gauge(
                &r,
                CONNECTIONS_OPEN,
                "Client connections open on the proxy listener.",
            ),
            connections_refused: counter_vec(
                &r,
                CONNECTIONS_REFUSED,
                "New client connections closed at once because a connection limit was full.",
                &["limit"],
            ),
            connections_closed: counter_vec(
                &r,
                CONNECTIONS_CLOSED,
                "Client connections authgate closed itself, by reason (header_timeout, idle, shed).",
                &["reason"],
            ),
            requests_in_flight: gauge(
                &r,
                REQUESTS_IN_FLIGHT,
                "Requests being answered or forwarded (read at scrape time).",
            ),
            cache_entries: gauge(
                &r,
                CACHE_ENTRIES,
                "Validated tokens in the cache (read at scrape time).",
            ),
            users: gauge(&r, USERS, "Users in force (read at scrape time)."),
            users_reloads: counter_vec(
                &r,
                USERS_RELOADS,
                "Changes of the users file, by what became of them.",
                &["result"],
            ),
            registry: r,
        };
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric registered once");
        let build = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric definition");
        metrics
            .registry
            .register(Box::new(build.clone()))
            .expect("metric registered once");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        metrics
    }

    /// Create every error and outcome series at zero, so that a rate or an alert has a series
    /// from start-up, not only after the first event. `outside` holds the label values known
    /// outside this module.
    pub fn zero_series(&self, outside: &OutsideLabels) {
        let OutsideLabels {
            upstreams,
            denials,
            login_limits,
            login_failures,
        } = outside;
        for limit in *login_limits {
            self.logins_limited.with_label_values(&[limit]);
        }
        for protocol in LoginProtocol::ALL {
            for outcome in login_failures.iter().chain(*login_limits) {
                self.logins.with_label_values(&[protocol.as_str(), outcome]);
            }
        }
        for upstream in *upstreams {
            self.upstream_duration.with_label_values(&[upstream]);
            for kind in UpstreamErrorKind::ALL {
                self.upstream_errors
                    .with_label_values(&[upstream, kind.as_str()]);
            }
        }
        for outcome in denials.iter().copied().chain(["allowed", "public"]) {
            self.auth_decisions.with_label_values(&[outcome]);
        }
        for op in StoreOp::ALL {
            for class in ["unavailable", "damaged", "undecodable"] {
                self.store_errors.with_label_values(&[op.as_str(), class]);
            }
        }
        for reason in RevokeReason::ALL {
            self.tokens_revoked.with_label_values(&[reason.as_str()]);
        }
        for result in CacheLookup::ALL {
            self.cache_lookups.with_label_values(&[result.as_str()]);
        }
        for limit in ConnectionLimit::ALL {
            self.connections_refused
                .with_label_values(&[limit.as_str()]);
        }
        for reason in CloseReason::ALL {
            self.connections_closed
                .with_label_values(&[reason.as_str()]);
        }
        for result in UsersReloadResult::ALL {
            self.users_reloads.with_label_values(&[result.as_str()]);
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        out
    }
}

/// Label values that other modules own, for `Metrics::zero_series`.
pub struct OutsideLabels<'a> {
    /// Upstream names (the config's).
    pub upstreams: &'a [&'a str],
    /// Refusals of a forwarded request (`authgate_auth_decisions_total{outcome}`).
    pub denials: &'a [&'a str],
    /// Login limits (`authgate_login_limited_total{limit}`, and login outcomes).
    pub login_limits: &'a [&'a str],
    /// Failed login outcomes other than the limits (`authgate_logins_total{outcome}`).
    pub login_failures: &'a [&'a str],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
