//! Password hashes (argon2id, or bcrypt from imported htpasswd lines) and their verification,
//! off the async threads on a bounded pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// Too many verifications already waiting: the caller answers 503 at once.
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

/// Verifies passwords on its own small pool of low-priority threads, at most `max_concurrent` at
/// once and at most `max_waiting` queued, so that a login flood cannot starve proxying.
pub struct PasswordVerifier {
    jobs: std::sync::mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Verified when the user is unknown, so that an unknown user costs what a wrong password costs.
    dummy: StoredHash,
    rejected: prometheus::IntCounter,
}

impl PasswordVerifier {
    /// `rejected` counts the verifications refused for overload.
    pub fn new(
        max_concurrent: usize,
        max_waiting: usize,
        rejected: prometheus::IntCounter,
    ) -> PasswordVerifier {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let waiting = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        for i in 0..max_concurrent.max(1) {
            let (queue, waiting, running) = (queue.clone(), waiting.clone(), running.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("authgate-password-{i}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        // The pool ends when the verifier (the only sender) is dropped.
                        let Ok(job) = queue
                            .lock()
                            .map_err(drop)
                            .and_then(|q| q.recv().map_err(drop))
                        else {
                            return;
                        };
                        waiting.fetch_sub(1, Ordering::AcqRel);
                        running.fetch_add(1, Ordering::AcqRel);
                        let matched = job.hash.verify_blocking(job.password.as_bytes());
                        running.fetch_sub(1, Ordering::AcqRel);
                        let _ = job.reply.send(matched);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password thread");
            }
        }
        PasswordVerifier {
            jobs,
            waiting,
            running,
            max_waiting,
            dummy: StoredHash::Argon2id(hash_password("authgate-dummy-password")),
            rejected,
        }
    }

    /// Verifications currently waiting for a thread.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Verifications currently running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// `Ok(true)` only when `hash` is present and matches. With no hash the dummy is verified and the
    /// answer is `Ok(false)`.
    pub async fn verify(
        &self,
        hash: Option<&StoredHash>,
        password: String,
    ) -> Result<bool, Overloaded> {
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        if queued >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.rejected.inc();
            return Err(Overloaded);
        }
        let known = hash.is_some();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            hash: hash.unwrap_or(&self.dummy).clone(),
            password,
            reply,
        };
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Overloaded); // no thread could be started
        }
        let matched = answer.await.unwrap_or(false);
        Ok(known && matched)
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
        let v = PasswordVerifier::new(1, 0, rejected.clone());
        assert_eq!(v.verify(None, "x".into()).await, Err(Overloaded));
        assert_eq!(rejected.get(), 1);
        let v = PasswordVerifier::new(1, 4, rejected);
        assert_eq!(
            v.verify(None, "authgate-dummy-password".into()).await,
            Ok(false)
        );
        let h = StoredHash::parse(&hash_password("pw")).unwrap();
        assert_eq!(v.verify(Some(&h), "pw".into()).await, Ok(true));
        assert_eq!(v.waiting(), 0);
    }
}
