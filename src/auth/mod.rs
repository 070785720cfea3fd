//! Authentication and authorisation: users, passwords, tokens, and the decisions built on them.
//! Protocol-free: the wire contracts live in `api`, the HTTP plumbing in `proxy`.
//!
//! The `Authenticator` is defined here; what it does is split by concern:
//! - `login`: checking credentials as each protocol writes them;
//! - `tokens`: issuing tokens, and checking one for validatetoken and logout;
//! - `access`: the decision for a forwarded request (token, role, share scope);
//! - `revocation`: ending tokens, durably or held in memory until the store takes it.

pub mod access;
pub mod guard;
pub mod jasypt;
pub mod login;
pub mod password;
pub mod revocation;
pub mod shares;
pub mod tokens;
pub mod users;

pub use access::{CredentialSource, Credentials, Denial, Principal};
pub use login::{lenient_base64, BadCredentialsReason, Grant, LoginError};
pub use revocation::RevokeError;

use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::config::{Config, LoginLimitsConfig};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use jasypt::JasyptKey;
use password::PasswordVerifier;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use users::UserDirectory;

/// Token lifetime and role settings, from `gwos:`, `iogates:` and `limits:` in the config.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub idle_timeout_ms: u64,
    pub max_lifetime_ms: Option<u64>,
    pub max_tokens_per_user: Option<usize>,
    pub reader_post_paths: Vec<String>,
    pub max_token_length: usize,
    /// ioGates tokens: no expiry unless set.
    pub iogates_max_lifetime_ms: Option<u64>,
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> TokenPolicy {
        let gwos = &config.gwos;
        TokenPolicy {
            idle_timeout_ms: gwos.idle_timeout_seconds.get().saturating_mul(1000),
            max_lifetime_ms: gwos
                .max_lifetime_seconds
                .map(|s| s.get().saturating_mul(1000)),
            max_tokens_per_user: gwos.max_tokens_per_user.map(|n| n.get()),
            reader_post_paths: gwos.reader_post_paths.clone(),
            max_token_length: config.limits.max_token_length,
            iogates_max_lifetime_ms: config
                .iogates
                .max_lifetime_seconds
                .map(|s| s.get().saturating_mul(1000)),
        }
    }
}

pub struct Authenticator {
    users: ArcSwap<UserDirectory>,
    /// Subjects whose tokens a users reload had to revoke but could not list (store failing).
    unrevoked_subjects: std::sync::Mutex<Vec<String>>,
    verifier: PasswordVerifier,
    cache: TokenCache,
    jasypt: Option<JasyptKey>,
    policy: TokenPolicy,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    guard: guard::LoginGuard,
}

pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A credential worth looking up: not absurdly long, printable ASCII only.
fn plausible_token(token: &str, max_len: usize) -> bool {
    !token.is_empty() && token.len() <= max_len && token.bytes().all(|b| b.is_ascii_graphic())
}

impl Authenticator {
    pub fn new(
        users: UserDirectory,
        verifier: PasswordVerifier,
        cache: TokenCache,
        jasypt: Option<JasyptKey>,
        policy: TokenPolicy,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        Authenticator {
            users: ArcSwap::from_pointee(users),
            unrevoked_subjects: Default::default(),
            verifier,
            cache,
            jasypt,
            policy,
            metrics,
            guard: guard::LoginGuard::new(&LoginLimitsConfig::default(), clock.clone()),
            clock,
        }
    }

    /// The login limits (`auth::guard`), when not the defaults.
    pub fn with_login_limits(mut self, limits: &LoginLimitsConfig) -> Authenticator {
        self.guard = guard::LoginGuard::new(limits, self.clock.clone());
        self
    }

    /// The login limits, to share their counts with other replicas.
    pub fn guard(&self) -> &guard::LoginGuard {
        &self.guard
    }

    /// Now, by the clock the token logic uses.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn verifier(&self) -> &PasswordVerifier {
        &self.verifier
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The users and shares as configured now.
    pub fn users(&self) -> Arc<UserDirectory> {
        self.users.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_base64_accepts_what_clients_send() {
        let expect = Some(b"RESTAPIACCESS".to_vec());
        assert_eq!(lenient_base64("UkVTVEFQSUFDQ0VTUw=="), expect);
        assert_eq!(
            lenient_base64("UkVTVEFQSUFDQ0VTUw"),
            expect,
            "padding dropped"
        );
        // "??>" is Pz8+ in standard Base64, Pz8- URL-safe, and "Pz8 " when `+` lost its escape.
        for v in ["Pz8+", "Pz8-", "Pz8 "] {
            assert_eq!(lenient_base64(v), Some(b"??>".to_vec()), "{v}");
        }
        assert_eq!(lenient_base64("not base64!"), None);
    }

    #[test]
    fn plausible_tokens_are_bounded_printable_ascii() {
        assert!(plausible_token("0b6e1d2a-1111-4222-8333-444455556666", 256));
        assert!(!plausible_token("", 256));
        assert!(!plausible_token(&"a".repeat(257), 256));
        assert!(!plausible_token("a b", 256));
        assert!(!plausible_token("a\u{7f}", 256));
    }
}
