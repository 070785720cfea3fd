//! Password hashes (argon2id, or bcrypt from imported htpasswd lines) and their verification,
//! off the async threads on a bounded pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A stored password hash, checked for shape when the users file is loaded. Equal when the
/// stored strings are: a changed hash is a changed password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredHash {
    Argon2id(String),
    Bcrypt(String),
}

impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredHash::Argon2id(_) => f.write_str("Argon2id(..)"),
            StoredHash::Bcrypt(_) => f.write_str("Bcrypt(..)"),
        }
    }
}

impl StoredHash {
    /// Accept an argon2id PHC string or a bcrypt hash; refuse anything else (plain text above all).
    pub fn parse(value: &str) -> Result<StoredHash, String> {
        if value.starts_with("$argon2") {
            let phc =
                PasswordHash::new(value).map_err(|e| format!("not a valid PHC string: {e}"))?;
            if phc.algorithm.as_str() != "argon2id" {
                return Err(format!("{} is not accepted, use argon2id", phc.algorithm));
            }
            return Ok(StoredHash::Argon2id(value.to_string()));
        }
        let is_bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| value.starts_with(p))
            && value.len() == 60;
        if is_bcrypt {
            return Ok(StoredHash::Bcrypt(value.to_string()));
        }
        Err(
            "not an argon2id PHC string nor a bcrypt hash (plain-text passwords are refused; \
             make one with `authgate hash-password`)"
                .into(),
        )
    }

    /// Blocking: tens of milliseconds of CPU. Call through [`PasswordVerifier`].
    fn verify_blocking(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2id(phc) => PasswordHash::new(phc)
                .map(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
                .unwrap_or(false),
            StoredHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// Hash a password as argon2id with the crate's recommended parameters (for `hash-password`).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Too many verifications already waiting, in all or from this client: the caller answers 503 at
/// once.
#[derive(Debug, PartialEq, Eq)]
pub struct Overloaded;

/// One verification handed to the pool.
struct Job {
    hash: StoredHash,
    password: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// How much less CPU a verification thread gets than a proxy thread when both want it: at nice 19
/// it has 1.5% of a proxy thread's weight, so a login flood slows logins down, not proxying
/// (measured: nice 10 let proxied p99 grow 2.7x during a flood, nice 19 1.7-1.9x). Idle CPU is
/// still all theirs.
#[cfg(target_os = "linux")]
const PASSWORD_THREAD_NICE: libc::c_int = 19;

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux the nice value is per thread; `who` = this thread's id.
    // SAFETY: plain syscalls on the calling thread, no memory is shared with them.
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, PASSWORD_THREAD_NICE)
    };
    if result != 0 {
        tracing::warn!("could not lower the priority of a password thread");
    }
}

/// Elsewhere (macOS, for development) a nice value would apply to the whole process: the
/// verification threads keep the default priority there.
#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// Waiting verifications, served one client at a time in turn (round robin), so that a flood
/// from some addresses delays another address's login by one verification per flooding address,
/// not by the whole queue. `None` is the bucket of requests with no known address.
#[derive(Default)]
struct FairQueue {
    by_client: HashMap<Option<IpAddr>, VecDeque<Job>>,
    /// Clients with jobs waiting, in the order they are served next.
    turns: VecDeque<Option<IpAddr>>,
    waiting: usize,
    closed: bool,
}

impl FairQueue {
    fn push(&mut self, client: Option<IpAddr>, job: Job, limits: QueueLimits) -> Result<(), Job> {
        if self.waiting >= limits.total {
            return Err(job);
        }
        let queue = self.by_client.entry(client).or_default();
        if queue.len() >= limits.per_client {
            return Err(job);
        }
        if queue.is_empty() {
            self.turns.push_back(client);
        }
        queue.push_back(job);
        self.waiting += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<Job> {
        let client = self.turns.pop_front()?;
        let queue = self.by_client.get_mut(&client)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.by_client.remove(&client);
        } else {
            self.turns.push_back(client);
        }
        self.waiting -= 1;
        Some(job)
    }
}

#[derive(Debug, Clone, Copy)]
struct QueueLimits {
    total: usize,
    per_client: usize,
}

struct Pool {
    queue: Mutex<FairQueue>,
    ready: Condvar,
    running: AtomicUsize,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, FairQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A verification thread: the next job in turn, until the verifier is dropped.
    fn work(&self) {
        lower_this_threads_priority();
        loop {
            let job = {
                let mut queue = self.lock();
                loop {
                    if queue.closed {
                        return;
                    }
                    if let Some(job) = queue.pop() {
                        break job;
                    }
                    queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.running.fetch_add(1, Ordering::AcqRel);
            let matched = job.hash.verify_blocking(job.password.as_bytes());
            self.running.fetch_sub(1, Ordering::AcqRel);
            let _ = job.reply.send(matched);
        }
    }
}

/// Verifies passwords on its own small pool of low-priority threads, at most `max_concurrent` at
/// once and at most `max_waiting` queued (`max_waiting_per_client` from one address), taking the
/// waiting clients in turn, so that a login flood can neither starve proxying nor other clients'
/// logins.
pub struct PasswordVerifier {
    pool: Arc<Pool>,
    limits: QueueLimits,
    /// Verified when the user is unknown, so that an unknown user costs what a wrong password costs.
    dummy: StoredHash,
    rejected: prometheus::IntCounter,
}

impl PasswordVerifier {
    /// `rejected` counts the verifications refused for overload.
    pub fn new(
        max_concurrent: usize,
        max_waiting: usize,
        max_waiting_per_client: usize,
        rejected: prometheus::IntCounter,
    ) -> PasswordVerifier {
        let pool = Arc::new(Pool {
            queue: Mutex::new(FairQueue::default()),
            ready: Condvar::new(),
            running: AtomicUsize::new(0),
        });
        for i in 0..max_concurrent.max(1) {
            let pool = pool.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("authgate-password-{i}"))
                .spawn(move || pool.work());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password thread");
            }
        }
        PasswordVerifier {
            pool,
            limits: QueueLimits {
                total: max_waiting,
                per_client: max_waiting_per_client,
            },
            dummy: StoredHash::Argon2id(hash_password("authgate-dummy-password")),
            rejected,
        }
    }

    /// Verifications currently waiting for a thread.
    pub fn waiting(&self) -> usize {
        self.pool.lock().waiting
    }

    /// Verifications currently running.
    pub fn running(&self) -> usize {
        self.pool.running.load(Ordering::Relaxed)
    }

    /// `Ok(true)` only when `hash` is present and matches. With no hash the dummy is verified and the
    /// answer is `Ok(false)`. `client` is whose turn this verification waits for.
    pub async fn verify(
        &self,
        hash: Option<&StoredHash>,
        password: String,
        client: Option<IpAddr>,
    ) -> Result<bool, Overloaded> {
        let known = hash.is_some();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            hash: hash.unwrap_or(&self.dummy).clone(),
            password,
            reply,
        };
        if self.pool.lock().push(client, job, self.limits).is_err() {
            self.rejected.inc();
            return Err(Overloaded);
        }
        self.pool.ready.notify_one();
        // No answer: no thread could be started.
        let matched = answer.await.map_err(|_| Overloaded)?;
        Ok(known && matched)
    }
}

impl Drop for PasswordVerifier {
    fn drop(&mut self) {
        self.pool.lock().closed = true;
        self.pool.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_plain_text_and_other_argon2_variants() {
        assert!(StoredHash::parse("secret")
            .unwrap_err()
            .contains("plain-text"));
        assert!(
            StoredHash::parse("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")
                .unwrap_err()
                .contains("argon2id")
        );
        assert!(StoredHash::parse(&hash_password("x")).is_ok());
    }

    #[test]
    fn argon2id_round_trip() {
        let h = StoredHash::parse(&hash_password("correct horse")).unwrap();
        assert!(h.verify_blocking(b"correct horse"));
        assert!(!h.verify_blocking(b"wrong horse"));
    }

    #[test]
    fn bcrypt_2y_from_htpasswd_is_accepted() {
        // `htpasswd -nbB alice secret` style line, with the $2y$ prefix Apache writes.
        let hash = bcrypt::hash_with_result("secret", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let h = StoredHash::parse(&hash).unwrap();
        assert!(h.verify_blocking(b"secret"));
        assert!(!h.verify_blocking(b"Secret"));
    }

    #[tokio::test]
    async fn unknown_user_is_false_and_overload_is_refused() {
        let rejected = prometheus::IntCounter::new("r", "r").unwrap();
        let v = PasswordVerifier::new(1, 0, 4, rejected.clone());
        assert_eq!(v.verify(None, "x".into(), None).await, Err(Overloaded));
        assert_eq!(rejected.get(), 1);
        let v = PasswordVerifier::new(1, 4, 4, rejected);
        assert_eq!(
            v.verify(None, "authgate-dummy-password".into(), None).await,
            Ok(false)
        );
        let h = StoredHash::parse(&hash_password("pw")).unwrap();
        assert_eq!(v.verify(Some(&h), "pw".into(), None).await, Ok(true));
        assert_eq!(v.waiting(), 0);
    }

    fn job() -> Job {
        Job {
            hash: StoredHash::Bcrypt(String::new()),
            password: String::new(),
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    /// A flooding address waits its turn like any other: the next job of another address comes
    /// second, not after the whole flood.
    #[test]
    fn waiting_clients_are_served_in_turn() {
        let limits = QueueLimits {
            total: 100,
            per_client: 50,
        };
        let mut queue = FairQueue::default();
        for _ in 0..40 {
            assert!(queue.push(ip(1), job(), limits).is_ok());
        }
        let mut marked = job();
        marked.password = "legit".into();
        assert!(queue.push(ip(2), marked, limits).is_ok());
        assert_eq!(queue.pop().unwrap().password, "");
        assert_eq!(queue.pop().unwrap().password, "legit");
        assert_eq!(queue.waiting, 39);
        while queue.pop().is_some() {}
        assert!(queue.by_client.is_empty() && queue.turns.is_empty());
    }

    #[test]
    fn one_address_holds_at_most_its_share_of_the_queue() {
        let limits = QueueLimits {
            total: 10,
            per_client: 3,
        };
        let mut queue = FairQueue::default();
        for _ in 0..3 {
            assert!(queue.push(ip(1), job(), limits).is_ok());
        }
        assert!(queue.push(ip(1), job(), limits).is_err());
        let accepted = (0..7)
            .filter(|_| queue.push(ip(2), job(), limits).is_ok())
            .count();
        assert_eq!(accepted, 3, "another address has its own share");
        assert_eq!(queue.waiting, 6, "3 each");
        for last in 3..10 {
            let _ = queue.push(ip(last), job(), limits);
        }
        assert_eq!(queue.waiting, 10);
        assert!(
            queue.push(ip(20), job(), limits).is_err(),
            "the total still holds"
        );
    }
}
