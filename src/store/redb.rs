//! The durable embedded default: redb, one file in the data directory.
//!
//! - redb is synchronous (and `insert`/`revoke` wait for fsync), so every call runs on the blocking
//!   pool. Touches and purges commit without fsync: losing one costs at most a little sliding
//!   time, never a token a client holds.
//! - After an I/O error (a full disk), redb refuses every later call ("previous I/O error") until
//!   the file is reopened. The handle is then marked broken, and `recover` reopens it, so the
//!   store comes back without a restart once the disk has room.
//! - A damaged file is refused at start-up with an error that says what to do; redb's own panics
//!   on damaged pages are caught and become `StoreError::Damaged`, never a crashed task.

use super::migrate;
use super::record::{decode_record, encode_record};
use super::{Purged, StoreError, TokenRecord, TokenStore};
pub use crate::config::OnDamage;
use crate::token::TokenHash;
use async_trait::async_trait;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// token hash → versioned JSON record (`record.rs`)
const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");
/// subject → token hashes (for per-user caps and share revocation)
const BY_SUBJECT: MultimapTableDefinition<&str, &[u8; 32]> =
    MultimapTableDefinition::new("by_subject");
/// `probe` → the last write-health probe (see `recover`)
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The probe's size: large enough to need fresh pages, so that it fails on a full disk where a
/// tiny write into pages the file already has would pass.
const PROBE_BYTES: usize = 64 * 1024;

pub const FILE_NAME: &str = "tokens.redb";

/// Why the store could not be opened at start-up. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("token store {path} is damaged ({detail})")]
    Damaged { path: PathBuf, detail: String },
    #[error("token store {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("token store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// redb's errors in the store's terms. Never Display a variant that carries a source location
/// (a build-machine path).
fn classify(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(detail) => StoreError::Damaged(detail),
        redb::Error::Io(e) => StoreError::Unavailable(format!("I/O error: {e}")),
        redb::Error::PreviousIo => {
            StoreError::Unavailable("failing since an earlier I/O error".into())
        }
        redb::Error::DatabaseClosed => StoreError::Unavailable("closed".into()),
        redb::Error::LockPoisoned(_) | redb::Error::TableAlreadyOpen(..) => {
            StoreError::Damaged("inconsistent internal state".into())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The text of a caught panic, for an error message.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "redb panicked".into())
}

struct Inner {
    path: PathBuf,
    /// `None` once closed, or while a reopen has not succeeded yet.
    db: RwLock<Option<Database>>,
    /// Set by an I/O error or a damaged page: the handle must be reopened before it works again.
    broken: AtomicBool,
    /// Set by `close`: nothing reopens it.
    closed: AtomicBool,
}

pub struct RedbStore {
    inner: Arc<Inner>,
}

/// Open the file, repairing it after a crash, and create the tables. With `verify` (at start-up),
/// every page is checked, so a damaged file is an error now rather than a panic later; a reopen
/// after an I/O error skips that whole-file read. A panic inside redb is a damaged file too.
fn open_file(path: &Path, verify: bool) -> Result<Database, StoreError> {
    if migrate::file_header(path).is_some_and(|h| h.needs_repair) {
        tracing::warn!(file = %path.display(), "token store was not closed cleanly: repairing");
    }
    let opened = catch_unwind(|| -> Result<Database, StoreError> {
        let db = Database::builder()
            .set_check_integrity_on_open(verify)
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(classify)?;
        let txn = db.begin_write().map_err(classify)?;
        txn.open_table(TOKENS).map_err(classify)?;
        txn.open_multimap_table(BY_SUBJECT).map_err(classify)?;
        txn.open_table(META).map_err(classify)?;
        txn.commit().map_err(classify)?;
        Ok(db)
    });
    opened.unwrap_or_else(|panic| Err(StoreError::Damaged(panic_text(&*panic))))
}

impl RedbStore {
    /// Open (or create) `tokens.redb` in `data_dir`, creating the directory if needed. A store
    /// written before redb 4 is migrated first (a copy of the old file is kept).
    pub fn open(data_dir: &Path, on_damage: OnDamage) -> Result<RedbStore, OpenError> {
        let path = data_dir.join(FILE_NAME);
        let io = |detail: String| OpenError::Io {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| io(e.to_string()))?;
        migrate::upgrade_if_needed(&path).map_err(io)?;
        let db = match open_file(&path, true) {
            Ok(db) => db,
            Err(StoreError::Damaged(detail)) if on_damage == OnDamage::MoveAside => {
                let aside = move_aside(&path).map_err(io)?;
                tracing::error!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    problem = %detail,
                    "token store was damaged: moved aside, starting with an empty store \
                     (every client must log in again)"
                );
                open_file(&path, true).map_err(|e| io(e.to_string()))?
            }
            Err(StoreError::Damaged(detail)) => {
                return Err(OpenError::Damaged {
                    path: path.clone(),
                    detail,
                })
            }
            Err(StoreError::Unavailable(detail)) if detail.contains("already open") => {
                return Err(OpenError::Locked { path: path.clone() })
            }
            Err(e) => return Err(io(e.to_string())),
        };
        Ok(RedbStore {
            inner: Arc::new(Inner {
                path,
                db: RwLock::new(Some(db)),
                broken: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_db(work))
            .await
            .map_err(|_| StoreError::Unavailable("store task cancelled".into()))?
    }
}

/// `tokens.redb` → `tokens.redb.damaged-<unix seconds>`.
fn move_aside(path: &Path) -> Result<PathBuf, String> {
    let stamp = super::now_ms() / 1000;
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".damaged-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|e| format!("cannot move aside: {e}"))?;
    Ok(aside)
}

impl Inner {
    /// Run `work` on the open handle. An I/O error or a damaged page (even a panic inside redb)
    /// marks the handle broken, for `recover` to reopen.
    fn with_db<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = guard.as_ref() else {
            return Err(StoreError::Unavailable(
                if self.closed.load(Ordering::Acquire) {
                    "closed".into()
                } else {
                    "reopening after a failure".into()
                },
            ));
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(db)))
            .unwrap_or_else(|panic| Err(StoreError::Damaged(panic_text(&*panic))));
        if matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Damaged(_))
        ) {
            self.broken.store(true, Ordering::Release);
        }
        result
    }

    /// Reopen a broken handle (running redb's repair), then commit a durable probe write.
    fn recover(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::Acquire) {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Unavailable("closed".into()));
            }
            // The old handle must be gone before the file can be locked again.
            if let Some(old) = slot.take() {
                let _ = catch_unwind(AssertUnwindSafe(|| old.close()));
            }
            *slot = Some(open_file(&self.path, false)?);
            self.broken.store(false, Ordering::Release);
        }
        self.with_db(|db| {
            let txn = db.begin_write().map_err(classify)?;
            let probe = super::now_ms().to_le_bytes().repeat(PROBE_BYTES / 8);
            txn.open_table(META)
                .map_err(classify)?
                .insert("probe", probe.as_slice())
                .map_err(classify)?;
            txn.commit().map_err(classify)
        })
    }

    fn close(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Release);
        match slot.take() {
            Some(db) => catch_unwind(AssertUnwindSafe(|| db.close()))
                .map_err(|panic| StoreError::Damaged(panic_text(&*panic)))?
                .map_err(classify),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl TokenStore for RedbStore {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(classify)?;
            {
                let mut tokens = txn.open_table(TOKENS).map_err(classify)?;
                tokens
                    .insert(&hash.0, encode_record(&record).as_slice())
                    .map_err(classify)?;
                let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(classify)?;
                by_subject
                    .insert(record.subject.as_str(), &hash.0)
                    .map_err(classify)?;
            }
            txn.commit().map_err(classify)
        })
        .await
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(classify)?;
            let tokens = txn.open_table(TOKENS).map_err(classify)?;
            let found = tokens.get(&hash.0).map_err(classify)?;
            found.map(|v| decode_record(v.value())).transpose()
        })
        .await
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(classify)?;
            let existed = {
                let mut tokens = txn.open_table(TOKENS).map_err(classify)?;
                let removed = tokens.remove(&hash.0).map_err(classify)?;
                // The subject index entry goes too, when the record says whose it was; an
                // undecodable record is still revoked (its index entry is swept by `tokens_of`).
                let subject = removed
                    .as_ref()
                    .and_then(|v| decode_record(v.value()).ok())
                    .map(|r| r.subject);
                let existed = removed.is_some();
                drop(removed);
                if let Some(subject) = subject {
                    let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(classify)?;
                    by_subject
                        .remove(subject.as_str(), &hash.0)
                        .map_err(classify)?;
                }
                existed
            };
            txn.commit().map_err(classify)?;
            Ok(existed)
        })
        .await
    }

    async fn touch(&self, uses: Vec<(TokenHash, u64)>) -> Result<(), StoreError> {
        // One transaction for the batch.
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(classify)?;
            txn.set_durability(Durability::None).map_err(classify)?;
            {
                let mut tokens = txn.open_table(TOKENS).map_err(classify)?;
                for (hash, last_used) in uses {
                    let current = tokens
                        .get(&hash.0)
                        .map_err(classify)?
                        .map(|v| decode_record(v.value()));
                    // An undecodable record is left as it is; the others are still written.
                    if let Some(Ok(mut record)) = current {
                        if last_used > record.last_used {
                            record.last_used = last_used;
                            tokens
                                .insert(&hash.0, encode_record(&record).as_slice())
                                .map_err(classify)?;
                        }
                    }
                }
            }
            txn.commit().map_err(classify)
        })
        .await
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        let subject = subject.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(classify)?;
            let by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(classify)?;
            let tokens = txn.open_table(TOKENS).map_err(classify)?;
            let mut found = Vec::new();
            for hash in by_subject.get(subject.as_str()).map_err(classify)? {
                let hash = *hash.map_err(classify)?.value();
                let Some(v) = tokens.get(&hash).map_err(classify)? else {
                    continue;
                };
                // One record nobody can read must not block its subject's logins and
                // revocations; its own token already fails closed on `get`.
                match decode_record(v.value()) {
                    Ok(record) => found.push((TokenHash(hash), record)),
                    Err(e) => tracing::warn!(token = %TokenHash(hash).short(), error = %e, "token record skipped"),
                }
            }
            Ok(found)
        })
        .await
    }

    async fn live(&self, now: u64) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(classify)?;
            let tokens = txn.open_table(TOKENS).map_err(classify)?;
            let mut live = Vec::new();
            for entry in tokens.iter().map_err(classify)? {
                let (key, value) = entry.map_err(classify)?;
                if let Ok(record) = decode_record(value.value()) {
                    if record.is_live_at(now) {
                        live.push((TokenHash(*key.value()), record));
                    }
                }
            }
            Ok(live)
        })
        .await
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(classify)?;
            txn.set_durability(Durability::None).map_err(classify)?;
            let mut purged = Purged::default();
            {
                let mut tokens = txn.open_table(TOKENS).map_err(classify)?;
                let mut dead = Vec::new();
                for entry in tokens.iter().map_err(classify)? {
                    let (key, value) = entry.map_err(classify)?;
                    match decode_record(value.value()) {
                        Ok(record) if !record.is_live_at(now) => {
                            dead.push((*key.value(), record.subject))
                        }
                        Ok(_) => {}
                        // Kept: a later version may read it. Counted in a metric by the caller.
                        Err(_) => purged.undecodable += 1,
                    }
                }
                let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(classify)?;
                for (hash, subject) in &dead {
                    tokens.remove(hash).map_err(classify)?;
                    by_subject
                        .remove(subject.as_str(), hash)
                        .map_err(classify)?;
                }
                purged.deleted = dead.len();
            }
            txn.commit().map_err(classify)?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(classify)?;
            txn.open_table(TOKENS)
                .map_err(classify)?
                .len()
                .map_err(classify)
        })
        .await
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.recover())
            .await
            .map_err(|_| StoreError::Unavailable("store task cancelled".into()))?
    }

    fn close(&self) -> Result<(), StoreError> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn open(dir: &Path) -> RedbStore {
        RedbStore::open(dir, OnDamage::Refuse).unwrap()
    }

    #[tokio::test]
    async fn redb_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        contract::run_all(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn tokens_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let h = TokenHash::of("t");
        {
            let store = open(dir.path());
            store.insert(h, contract::record("u", 1)).await.unwrap();
            store.close().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.get(h).await.unwrap(), Some(contract::record("u", 1)));
    }

    #[tokio::test]
    async fn an_undecodable_record_is_an_error_for_that_token_and_survives_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (bad, dead) = (TokenHash::of("bad"), TokenHash::of("dead"));
        store.insert(dead, contract::record("u", 1)).await.unwrap();
        store
            .blocking(move |db| {
                let txn = db.begin_write().map_err(classify)?;
                txn.open_table(TOKENS)
                    .map_err(classify)?
                    .insert(&bad.0, &b"{\"v\":9,\"unknown\":true}"[..])
                    .map_err(classify)?;
                txn.commit().map_err(classify)
            })
            .await
            .unwrap();
        assert!(matches!(
            store.get(bad).await,
            Err(StoreError::Undecodable(_))
        ));
        let purged = store.purge_expired(u64::MAX).await.unwrap();
        assert_eq!(
            purged,
            Purged {
                deleted: 1,
                undecodable: 1
            }
        );
        assert_eq!(store.count().await.unwrap(), 1, "the bad record is kept");
        assert!(
            store.recover().await.is_ok(),
            "one bad record is not a failing store"
        );
    }

    #[tokio::test]
    async fn after_close_every_call_is_unavailable_and_nothing_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.close().unwrap();
        assert!(matches!(
            store.count().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(store.recover().await.is_err());
        assert!(store.close().is_ok(), "closing twice is harmless");
    }

    #[test]
    fn a_damaged_file_is_refused_naming_it_or_moved_aside_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let store = open(dir.path());
            store.close().unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let half = bytes.len() / 2;
        bytes.truncate(half);
        std::fs::write(&path, &bytes).unwrap();
        match RedbStore::open(dir.path(), OnDamage::Refuse) {
            Err(OpenError::Damaged { path: named, .. }) => assert_eq!(named, path),
            Err(e) => panic!("expected Damaged, got {e}"),
            Ok(_) => panic!("a half-truncated store opened"),
        }
        let store = RedbStore::open(dir.path(), OnDamage::MoveAside).unwrap();
        drop(store);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("tokens.redb.damaged-")),
            "{names:?}"
        );
    }
}
