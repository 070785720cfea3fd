//! The redb file itself: what its header says, and the migration of stores written before
//! authgate moved to redb 4.
//!
//! Stores written before authgate moved to redb 4 use redb's file format v2, which redb 3 and
//! later cannot open. redb 2.6 upgrades such a file in place to format v3; the tables and the
//! records in them are unchanged (records without a format number decode as format 0).

use std::path::{Path, PathBuf};

/// What the first bytes of a redb file say (redb's `header.rs`, the same in formats v2 and v3):
/// 9 magic bytes, a flag byte, then two 128-byte commit slots from offset 64, each starting with
/// its format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The newer of the two commit slots' format versions.
    pub format: u8,
    /// The file was not closed cleanly: opening it runs redb's repair.
    pub needs_repair: bool,
}

/// `None` for a missing, empty or foreign file.
pub fn file_header(path: &Path) -> Option<FileHeader> {
    use std::io::Read;
    const MAGIC: &[u8; 9] = b"redb\x1A\x0A\xA9\x0D\x0A";
    const RECOVERY_REQUIRED: u8 = 2;
    let mut header = [0u8; 64 + 2 * 128];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    (&header[..9] == MAGIC).then(|| FileHeader {
        format: header[64].max(header[64 + 128]),
        needs_repair: header[9] & RECOVERY_REQUIRED != 0,
    })
}

fn file_format(path: &Path) -> Option<u8> {
    file_header(path).map(|h| h.format)
}

/// `tokens.redb` → `tokens.redb.v2-backup`.
fn backup_path(path: &Path) -> PathBuf {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".v2-backup");
    PathBuf::from(backup)
}

/// Upgrade a format-v2 store in place, after copying it to `<file>.v2-backup`. Nothing to do for
/// any other file (a damaged one is left for the normal open to report).
pub fn upgrade_if_needed(path: &Path) -> Result<(), String> {
    if file_format(path) != Some(2) {
        return Ok(());
    }
    let backup = backup_path(path);
    std::fs::copy(path, &backup)
        .map_err(|e| format!("cannot copy to {} before upgrading: {e}", backup.display()))?;
    let upgraded = std::panic::catch_unwind(|| -> Result<(), String> {
        let mut db = redb2::Database::open(path).map_err(|e| format!("opening as redb 2: {e}"))?;
        db.upgrade().map_err(|e| format!("upgrading: {e}"))?;
        Ok(())
    })
    .unwrap_or_else(|_| Err("redb 2 panicked while upgrading".into()));
    upgraded.map_err(|e| {
        format!(
            "file format v2 could not be upgraded ({e}); the original is at {}",
            backup.display()
        )
    })?;
    tracing::info!(
        file = %path.display(),
        backup = %backup.display(),
        "token store upgraded from redb file format v2 to v3; the old file is kept as a backup"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OnDamage, RedbStore, TokenStore};
    use crate::token::TokenHash;

    /// A store as authgate wrote it before redb 4: redb 2 (file format v2), unversioned records.
    pub fn write_v2_store(dir: &Path, tokens: &[(&str, &str)]) {
        const TOKENS: redb2::TableDefinition<&[u8; 32], &[u8]> =
            redb2::TableDefinition::new("tokens");
        const BY_SUBJECT: redb2::MultimapTableDefinition<&str, &[u8; 32]> =
            redb2::MultimapTableDefinition::new("by_subject");
        let db = redb2::Database::create(dir.join("tokens.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TOKENS).unwrap();
            let mut index = txn.open_multimap_table(BY_SUBJECT).unwrap();
            for (token, user) in tokens {
                let hash = TokenHash::of(token);
                let legacy = format!(
                    r#"{{"kind":"gwos","subject":"{user}","role":"admin","app_name":"app","device_id":null,"issued_at":1000,"last_used":1000,"idle_timeout_ms":null,"max_expires_at":null}}"#
                );
                table.insert(&hash.0, legacy.as_bytes()).unwrap();
                index.insert(*user, &hash.0).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn a_store_written_by_the_previous_release_opens_with_every_token() {
        let dir = tempfile::tempdir().unwrap();
        write_v2_store(
            dir.path(),
            &[("t1", "alice"), ("t2", "alice"), ("t3", "bob")],
        );
        let file = dir.path().join("tokens.redb");
        assert_eq!(file_format(&file), Some(2));

        let store = RedbStore::open(dir.path(), OnDamage::Refuse).unwrap();
        assert_eq!(file_format(&file), Some(3));
        assert_eq!(file_format(&backup_path(&file)), Some(2), "backup kept");
        assert_eq!(store.count().await.unwrap(), 3);
        let t1 = store.get(TokenHash::of("t1")).await.unwrap().unwrap();
        assert_eq!((t1.subject.as_str(), t1.issued_at), ("alice", 1000));
        assert_eq!(store.tokens_of("alice").await.unwrap().len(), 2);
        // And it is a working store afterwards.
        assert!(store.revoke(TokenHash::of("t3")).await.unwrap());
        store.close().unwrap();
        let store = RedbStore::open(dir.path(), OnDamage::Refuse).unwrap();
        assert_eq!(store.count().await.unwrap(), 2);
    }
}
