//! The token store under faults, with the real binary:
//! - a full disk: the data directory is a 1 MiB tmpfs in the gateway's own mount namespace
//!   (`unshare`, no privilege needed), filled and freed from outside through `/proc/<pid>/root`;
//! - a damaged file, at start-up;
//! - a store written by the previous release (redb 2, unversioned records).

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const APP: &str = "faults";
const NOT_SAVED: &str = "Token revoked on this gateway, but not yet saved: token store unavailable";

/// Write zeros to `path` until the filesystem is full.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    written
}

async fn get(url: &str) -> (u16, String) {
    text(http().get(url).send().await.unwrap()).await
}

/// The metrics, once `key` has reached `at_least` (the background tasks run on real timers).
async fn metrics_once(setup: &Setup, key: &str, at_least: f64) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape_metrics(&setup.admin_url("/metrics")).await;
        if metrics.get(key).copied().unwrap_or(0.0) >= at_least {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{key} never reached {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn form(token: &str) -> String {
    format!("gwos-api-token={token}&gwos-app-name={APP}")
}

#[tokio::test]
async fn a_full_disk_fails_closed_holds_revocations_and_recovers_without_a_restart() {
    let setup = setup("");
    let base = setup.base.clone();
    let mut proc = setup.start_on_small_disk("info", 1 << 20);
    let kept = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let logged_out = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(get(&setup.admin_url("/readyz")).await.0, 200);

    let filler = proc.view(&setup.data_dir()).join("filler");
    assert!(fill(&filler) > 0, "the small disk is now full");

    // A login cannot be saved: a clear 503 the client may retry, no token handed out.
    let resp = post_form(
        &format!("{base}/api/auth/login"),
        &format!(
            "user={}&password={}&gwos-app-name={APP}",
            urlencode("admin"),
            urlencode(&b64(ADMIN_PASSWORD))
        ),
    )
    .await;
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    assert_eq!(text(resp).await, (503, "Token store unavailable".into()));
    let (status, why) = get(&setup.admin_url("/readyz")).await;
    assert_eq!(status, 503, "not ready while writes fail: {why}");
    assert!(why.contains("token store cannot be written"), "{why}");

    // A logout that cannot be saved says so, and the token stops working at once, everywhere.
    let resp = post_form(&format!("{base}/api/auth/logout"), &form(&logged_out)).await;
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    assert_eq!(text(resp).await, (503, NOT_SAVED.into()));
    let proxied = get_with(&format!("{base}/during"), &logged_out, APP).await;
    assert_eq!(proxied.status(), 401);
    let validated = post_form(
        &format!("{base}/api/auth/validatetoken"),
        &form(&logged_out),
    )
    .await;
    assert_eq!(text(validated).await, (200, "false".into()));
    // Other tokens keep working from the cache.
    let other = get_with(&format!("{base}/during"), &kept, APP).await;
    assert_eq!(other.status(), 200);
    assert_eq!(
        setup.upstream.requests().len(),
        1,
        "only the kept token got through"
    );

    let metrics = scrape_metrics(&setup.admin_url("/metrics")).await;
    assert_eq!(metrics["authgate_store_writable{}"], 0.0);
    assert_eq!(metrics["authgate_revocations_unsaved{}"], 1.0);
    assert!(
        metrics[r#"authgate_store_errors_total{class="unavailable",operation="insert"}"#] >= 1.0
    );

    // Retries while the disk stays full change nothing: still not ready, still held, still refused.
    let retries = r#"authgate_store_operation_seconds_count{operation="recover"}"#;
    let metrics = metrics_once(&setup, retries, 2.0).await;
    assert_eq!(get(&setup.admin_url("/readyz")).await.0, 503);
    assert_eq!(metrics["authgate_revocations_unsaved{}"], 1.0);
    let proxied = get_with(&format!("{base}/during"), &logged_out, APP).await;
    assert_eq!(proxied.status(), 401);

    // Room again: the store recovers by itself and saves the held revocation.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    while get(&setup.admin_url("/readyz")).await.0 != 200 {
        assert!(freed.elapsed() < Duration::from_secs(10), "never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovery = freed.elapsed();
    eprintln!("ready again {recovery:?} after the disk was freed");
    let metrics = scrape_metrics(&setup.admin_url("/metrics")).await;
    assert_eq!(metrics["authgate_store_writable{}"], 1.0);
    assert_eq!(metrics["authgate_revocations_unsaved{}"], 0.0);
    let after = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    until_logged(&proc, "revocation_saved", 1);

    // What the file now holds, read by a fresh gateway on a copy: nothing lost, nothing revived.
    let copy = tempfile::tempdir().unwrap();
    let data = proc.view(&setup.data_dir()).join("tokens.redb");
    std::fs::copy(&data, copy.path().join("tokens.redb")).unwrap();
    proc.signal("TERM");
    assert!(proc.wait_exit(Duration::from_secs(5)).is_some());
    let setup2 = setup_with_data(copy.path());
    let _second = setup2.start("info");
    for (t, expected) in [(&kept, 200), (&after, 200), (&logged_out, 401)] {
        let resp = get_with(&format!("{}/after", setup2.base), t, APP).await;
        assert_eq!(resp.status(), expected);
    }
}

/// A gateway on an existing data directory.
fn setup_with_data(data: &Path) -> Setup {
    let s = setup("");
    let data_dir = s.data_dir();
    std::fs::create_dir_all(&data_dir).unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data_dir.join(entry.file_name())).unwrap();
    }
    s
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Start `authgate run` on the setup's config without waiting for it to listen.
fn launch(setup: &Setup, args: &[&str]) -> Proc {
    Proc::start_in(setup.dir.path(), &setup.yaml, "info", None, args)
}

#[tokio::test]
async fn a_damaged_store_stops_start_up_with_advice_and_the_flag_moves_it_aside() {
    let setup = setup("");
    let mut first = setup.start("info");
    let t = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let file = setup.data_dir().join("tokens.redb");
    let intact = std::fs::read(&file).unwrap();

    let half = intact[..intact.len() / 2].to_vec();
    let mut scribbled = intact.clone();
    let middle = intact.len() / 2;
    scribbled[middle..middle + 512].fill(0xA5);
    for (damage, bytes) in [("cut in half", half), ("512 bytes overwritten", scribbled)] {
        std::fs::write(&file, &bytes).unwrap();
        let mut proc = launch(&setup, &[]);
        let status = proc
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{damage}: started on a damaged store"));
        let logs = proc.logs();
        assert_eq!(status.code(), Some(2), "{damage}: {status:?}\n{logs}");
        assert!(!logs.contains("panicked"), "{damage}: {logs}");
        assert!(
            logs.contains(&file.display().to_string()),
            "{damage}: {logs}"
        );
        assert!(logs.contains("damaged"), "{damage}: {logs}");
        assert!(logs.contains("--move-damaged-store"), "{damage}: {logs}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{damage}: left as it was"
        );
    }

    let proc = Proc::start_in(
        setup.dir.path(),
        &setup.yaml,
        "info",
        None,
        &["--move-damaged-store"],
    );
    wait_connectable(format!("127.0.0.1:{}", setup.port).parse().unwrap());
    assert!(proc.logs().contains("moved aside"), "{}", proc.logs());
    let moved: Vec<String> = std::fs::read_dir(setup.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tokens.redb.damaged-"))
        .collect();
    assert_eq!(moved.len(), 1, "the damaged file is kept aside");
    // An empty store: the old token is gone, a new login works.
    let old = get_with(&format!("{}/x", setup.base), &t, APP).await;
    assert_eq!(old.status(), 401);
    token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
}

/// A store as the previous release wrote it: redb 2 (file format v2), records without a format
/// number. One token's record is damaged, another was written by a newer release.
fn write_previous_release_store(data: &Path, records: &[(&str, String)]) {
    const TOKENS: redb2::TableDefinition<&[u8; 32], &[u8]> = redb2::TableDefinition::new("tokens");
    const BY_SUBJECT: redb2::MultimapTableDefinition<&str, &[u8; 32]> =
        redb2::MultimapTableDefinition::new("by_subject");
    std::fs::create_dir_all(data).unwrap();
    let db = redb2::Database::create(data.join("tokens.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut tokens = txn.open_table(TOKENS).unwrap();
        let mut by_subject = txn.open_multimap_table(BY_SUBJECT).unwrap();
        for (token, record) in records {
            let hash: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(token.as_bytes()).into()
            };
            tokens.insert(&hash, record.as_bytes()).unwrap();
            by_subject.insert("admin", &hash).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_store_of_the_previous_release_is_migrated_and_no_record_is_lost() {
    let setup = setup("  purge_interval_seconds: 1\ngwos:\n  max_tokens_per_user: 10\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let legacy = format!(
        r#"{{"kind":"gwos","subject":"admin","role":"admin","app_name":"{APP}","device_id":null,"issued_at":{now},"last_used":{now},"idle_timeout_ms":3600000,"max_expires_at":null}}"#
    );
    let newer = format!(
        r#"{{"v":9,"kind":"gwos","subject":"admin","role":"admin","app_name":"{APP}","issued_at":{now},"last_used":{now},"idle_timeout_ms":3600000,"bound_to":{{"mtls":"x"}}}}"#
    );
    let damaged = r#"{"kind":"gwos","subj"#.to_string();
    write_previous_release_store(
        &setup.data_dir(),
        &[
            ("legacy-token", legacy),
            ("newer-token", newer),
            ("damaged-token", damaged),
        ],
    );

    let proc = setup.start("info");
    assert!(
        proc.logs().contains("upgraded from redb file format v2"),
        "{}",
        proc.logs()
    );
    assert!(setup.data_dir().join("tokens.redb.v2-backup").exists());
    for t in ["legacy-token", "newer-token"] {
        let resp = get_with(&format!("{}/{t}", setup.base), t, APP).await;
        assert_eq!(resp.status(), 200, "{t}");
        assert_eq!(
            setup.upstream.last().header("x-authgate-user"),
            Some("admin")
        );
    }
    // The undecodable record fails closed for its own token, and nothing else: its user still
    // logs in (the per-user cap reads all of that user's records).
    let resp = get_with(&format!("{}/x", setup.base), "damaged-token", APP).await;
    assert_eq!(resp.status(), 503);
    token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;

    // Purges run every second: the record they cannot decode is counted, and kept.
    let purges = r#"authgate_store_operation_seconds_count{operation="purge"}"#;
    let metrics = metrics_once(&setup, purges, 2.0).await;
    assert_eq!(metrics["authgate_store_undecodable_records{}"], 1.0);
    assert_eq!(metrics["authgate_tokens_live{}"], 4.0, "no record deleted");
    assert!(!proc.logs().contains("panicked"));
}
