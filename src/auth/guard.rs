//! Password guessing, bounded, on every credential endpoint:
//! - a rate limit per client address and one per user name (governor's GCRA, keyed);
//! - a lockout per user name *from one client address* after repeated failures, doubling with each
//!   further failure up to a cap. Keyed by address as well as name, so that an attacker locks out
//!   only their own address, never the real user's; the per-name limit bounds guessing spread over
//!   many addresses.
//!
//! Checked before the password is verified, so a limited attempt costs no argon2 work. The state
//! lives in this process. With a store shared by several replicas, each one tells the others
//! what it counted ([`GuardEvent`], carried by the store) and applies what they tell it, so that
//! limits and lockouts count across replicas, a few milliseconds late at most. Every limit reads the gateway's [`Clock`], so a
//! test or a bench can run an hour of guessing in milliseconds.

use crate::clock::Clock;
use crate::config::LoginLimitsConfig;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one replica counted, for the others to count too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GuardEvent {
    /// An attempt let through to a password check: it used up rate.
    Attempt {
        user: String,
        client: IpAddr,
        per_user: bool,
    },
    Failed {
        user: String,
        client: IpAddr,
    },
    Succeeded {
        user: String,
        client: IpAddr,
    },
}

/// Which limit refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ClientAddress,
    UserName,
    Lockout,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::ClientAddress, Limit::UserName, Limit::Lockout];

    /// The `result` of the audit event and the `limit` label of `authgate_login_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ClientAddress => "limited_client",
            Limit::UserName => "limited_user",
            Limit::Lockout => "locked_out",
        }
    }
}

/// A refused login attempt: which limit, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until_ms: u64,
}

/// Longest user name kept as a key: a name longer than any real one is cut, so that a client
/// cannot make the guard hold megabytes per attempt.
const MAX_KEY_LEN: usize = 128;

/// The name share-URL logins are counted under (no user name can hold a NUL).
pub const SHARE_LOGIN: &str = "\0share-url";

/// Counts waiting to be sent to the other replicas; beyond, new ones are dropped (a flood from
/// many addresses while Redis is slow must not grow memory without bound).
const EVENTS_WAITING: usize = 10_000;

/// Sweep the rate limiters' idle keys after this many checks.
const SWEEP_EVERY: u64 = 4096;

/// The gateway's clock, as governor reads time.
#[derive(Clone)]
struct GuardClock(Arc<dyn Clock>);

impl governor::clock::Clock for GuardClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, GuardClock, NoOpMiddleware<Duration>>;

pub struct LoginGuard {
    per_client: KeyedLimiter<IpAddr>,
    per_user: KeyedLimiter<String>,
    failures: moka::sync::Cache<(String, IpAddr), Failures>,
    lockout_after: u32,
    lockout_base_ms: u64,
    lockout_max_ms: u64,
    clock: Arc<dyn Clock>,
    checks: AtomicU64,
    /// Where this replica's counts go, when other replicas listen (`share_events`).
    events: std::sync::OnceLock<tokio::sync::mpsc::Sender<GuardEvent>>,
}

fn key(user: &str) -> String {
    let mut end = user.len().min(MAX_KEY_LEN);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

impl LoginGuard {
    pub fn new(settings: &LoginLimitsConfig, clock: Arc<dyn Clock>) -> LoginGuard {
        let lockout_max_ms = settings.lockout_max_seconds.get().saturating_mul(1000);
        LoginGuard {
            per_client: RateLimiter::dashmap_with_clock(
                Quota::per_minute(settings.per_client_per_minute),
                GuardClock(clock.clone()),
            ),
            per_user: RateLimiter::dashmap_with_clock(
                Quota::per_minute(settings.per_user_per_minute),
                GuardClock(clock.clone()),
            ),
            // A failure count is forgotten once it has been idle longer than the longest lockout.
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_millis(lockout_max_ms).max(Duration::from_secs(60)))
                .build(),
            lockout_after: settings.lockout_after_failures.get(),
            lockout_base_ms: settings.lockout_seconds.get().saturating_mul(1000),
            lockout_max_ms,
            clock,
            checks: AtomicU64::new(0),
            events: std::sync::OnceLock::new(),
        }
    }

    /// From now on, every attempt, failure and success counted here is also sent on the
    /// returned channel, for the other replicas (`None` if already asked). At most
    /// `EVENTS_WAITING` wait to be sent; beyond, new ones are dropped.
    pub fn share_events(&self) -> Option<tokio::sync::mpsc::Receiver<GuardEvent>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(EVENTS_WAITING);
        self.events.set(sender).ok().map(|()| receiver)
    }

    fn tell(&self, event: GuardEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.try_send(event);
        }
    }

    /// Count what another replica counted (never told on again).
    pub fn apply(&self, event: GuardEvent) {
        match event {
            GuardEvent::Attempt {
                user,
                client,
                per_user,
            } => {
                let _ = self.per_client.check_key(&client);
                if per_user {
                    let _ = self.per_user.check_key(&key(&user));
                }
            }
            GuardEvent::Failed { user, client } => self.count_failure(key(&user), client),
            GuardEvent::Succeeded { user, client } => {
                self.failures.invalidate(&(key(&user), client))
            }
        }
    }

    /// May this attempt go on to a password check? A locked-out pair consumes no rate.
    pub fn admit(&self, client: Option<IpAddr>, user: &str) -> Result<(), Limited> {
        self.admit_keyed(client, user, true)
    }

    /// May this share-URL login go on? It has no user name: the address's limit and a lockout
    /// of that address (under `SHARE_LOGIN`) apply, not a per-name limit, which would bound all
    /// share logins together.
    pub fn admit_share_login(&self, client: Option<IpAddr>) -> Result<(), Limited> {
        self.admit_keyed(client, SHARE_LOGIN, false)
    }

    fn admit_keyed(
        &self,
        client: Option<IpAddr>,
        user: &str,
        per_user: bool,
    ) -> Result<(), Limited> {
        let ip = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let user = key(user);
        let now = self.clock.now_ms();
        if let Some(f) = self.failures.get(&(user.clone(), ip)) {
            if now < f.locked_until_ms {
                return Err(Limited {
                    limit: Limit::Lockout,
                    retry_after: Duration::from_millis(f.locked_until_ms - now),
                });
            }
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.per_client.retain_recent();
            self.per_user.retain_recent();
        }
        let wait = |not_until: governor::NotUntil<Duration>| {
            not_until.wait_time_from(GuardClock(self.clock.clone()).now())
        };
        self.per_client.check_key(&ip).map_err(|n| Limited {
            limit: Limit::ClientAddress,
            retry_after: wait(n),
        })?;
        if per_user {
            self.per_user.check_key(&user).map_err(|n| Limited {
                limit: Limit::UserName,
                retry_after: wait(n),
            })?;
        }
        self.tell(GuardEvent::Attempt {
            user,
            client: ip,
            per_user,
        });
        Ok(())
    }

    /// A wrong password (or unknown user): count it, and lock the pair out past the threshold,
    /// for twice as long after each further failure, up to the cap.
    pub fn failed(&self, client: Option<IpAddr>, user: &str) {
        let ip = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.count_failure(key(user), ip);
        self.tell(GuardEvent::Failed {
            user: key(user),
            client: ip,
        });
    }

    fn count_failure(&self, user: String, ip: IpAddr) {
        let pair = (user, ip);
        let now = self.clock.now_ms();
        let mut f = self.failures.get(&pair).unwrap_or(Failures {
            count: 0,
            locked_until_ms: 0,
        });
        f.count = f.count.saturating_add(1);
        if f.count >= self.lockout_after {
            let doublings = (f.count - self.lockout_after).min(32);
            let lockout = self
                .lockout_base_ms
                .saturating_mul(1u64 << doublings)
                .min(self.lockout_max_ms);
            f.locked_until_ms = now.saturating_add(lockout);
        }
        self.failures.insert(pair, f);
    }

    /// A successful login ends the pair's failure count.
    pub fn succeeded(&self, client: Option<IpAddr>, user: &str) {
        let ip = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.failures.invalidate(&(key(user), ip));
        self.tell(GuardEvent::Succeeded {
            user: key(user),
            client: ip,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::num::{NonZeroU32, NonZeroU64};

    fn guard(clock: Arc<ManualClock>) -> LoginGuard {
        let settings = LoginLimitsConfig {
            per_client_per_minute: NonZeroU32::new(1000).unwrap(),
            per_user_per_minute: NonZeroU32::new(1000).unwrap(),
            lockout_after_failures: NonZeroU32::new(3).unwrap(),
            lockout_seconds: NonZeroU64::new(1).unwrap(),
            lockout_max_seconds: NonZeroU64::new(8).unwrap(),
            ..LoginLimitsConfig::default()
        };
        LoginGuard::new(&settings, clock)
    }

    #[test]
    fn the_lockout_doubles_is_capped_and_binds_one_address_only() {
        let clock = Arc::new(ManualClock::new());
        let g = guard(clock.clone());
        let (attacker, user) = (Some("10.0.0.1".parse().unwrap()), "admin");
        let other = Some("10.0.0.2".parse().unwrap());
        let mut lockouts = Vec::new();
        for _ in 0..7 {
            g.admit(attacker, user).unwrap();
            g.failed(attacker, user);
            if let Err(limited) = g.admit(attacker, user) {
                assert_eq!(limited.limit, Limit::Lockout);
                lockouts.push(limited.retry_after.as_secs());
                clock.advance(limited.retry_after);
            }
        }
        assert_eq!(
            lockouts,
            [1, 2, 4, 8, 8],
            "from the third failure on, capped at 8 s"
        );
        assert!(
            g.admit(other, user).is_ok(),
            "the real user's address is not locked out"
        );
        g.succeeded(attacker, user);
        g.failed(attacker, user);
        assert!(
            g.admit(attacker, user).is_ok(),
            "a success starts the count again"
        );
    }

    #[test]
    fn rate_limits_per_address_and_per_name() {
        let clock = Arc::new(ManualClock::new());
        let settings = LoginLimitsConfig {
            per_client_per_minute: NonZeroU32::new(3).unwrap(),
            per_user_per_minute: NonZeroU32::new(5).unwrap(),
            ..LoginLimitsConfig::default()
        };
        let g = LoginGuard::new(&settings, clock);
        let a = Some("10.0.0.1".parse().unwrap());
        for i in 0..3 {
            g.admit(a, &format!("user{i}")).unwrap();
        }
        let limited = g.admit(a, "user9").unwrap_err();
        assert_eq!(limited.limit, Limit::ClientAddress);
        assert!(limited.retry_after_secs() >= 1);
        // One name from many addresses.
        for i in 2..7 {
            g.admit(Some(IpAddr::from([10, 0, 1, i])), "admin").unwrap();
        }
        let limited = g
            .admit(Some("10.0.2.1".parse().unwrap()), "admin")
            .unwrap_err();
        assert_eq!(limited.limit, Limit::UserName);
    }

    /// The figure: one address guessing one user's password for an hour, retrying the
    /// moment it may, under the default limits.
    #[test]
    fn an_hour_of_guessing_one_password_from_one_address_gets_24_attempts() {
        let clock = Arc::new(ManualClock::new());
        let g = LoginGuard::new(&LoginLimitsConfig::default(), clock.clone());
        let attacker = Some("203.0.113.1".parse().unwrap());
        let (start, mut attempts) = (clock.now_ms(), 0);
        while clock.now_ms() - start < 3_600_000 {
            match g.admit(attacker, "admin") {
                Ok(()) => {
                    attempts += 1;
                    g.failed(attacker, "admin");
                }
                Err(limited) => clock.advance(limited.retry_after),
            }
        }
        assert_eq!(attempts, 24);
    }

    /// Two replicas: what one counts, the other applies; three failures split between them lock
    /// the pair out on both.
    #[test]
    fn counts_told_to_another_replica_lock_out_there_too() {
        let clock = Arc::new(ManualClock::new());
        let (one, other) = (guard(clock.clone()), guard(clock));
        let mut told = one.share_events().unwrap();
        assert!(one.share_events().is_none(), "given once");
        let ip = Some("203.0.113.5".parse().unwrap());
        for _ in 0..2 {
            one.admit(ip, "admin").unwrap();
            one.failed(ip, "admin");
        }
        while let Ok(event) = told.try_recv() {
            other.apply(event);
        }
        other.admit(ip, "admin").unwrap();
        other.failed(ip, "admin");
        assert_eq!(other.admit(ip, "admin").unwrap_err().limit, Limit::Lockout);
    }

    #[test]
    fn absurd_names_are_cut_to_a_bounded_key() {
        assert_eq!(key(&"é".repeat(200)).len(), 128);
        assert_eq!(key("admin"), "admin");
    }
}
