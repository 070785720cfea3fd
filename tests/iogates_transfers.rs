//! ioGates transfers through the real binary: tokens in URL paths and query strings
//! (`url_tokens`), decided like header tokens, forwarded unchanged, and never in a log line or a
//! metric.

mod common;
use common::*;
use std::time::Duration;

const TUS_SHARE: &str = "https://share.example.com/show/30/tus";
const DOWNLOAD_SHARE: &str = "https://share.example.com/show/31/dl";

/// The ioGates block of `conf/authgate.yaml`, enabled; traces on, so that every line pingora and
/// authgate can write is written.
const CONFIG: &str = "url_tokens:
  - {path: \"/api/authinfo/{token}\", permission: upload}
  - {path: \"/upload/tus/{token}/**\", permission: upload}
  - {path: \"/download-file/*/*/*/*/*/{token}\", permission: download}
  - {path: /handlers/upload.php, query: token, permission: upload}
log:
  format: json
";

/// Two shares of the ioGates account: one that may only upload, one that may only download.
fn transfer_shares() -> String {
    format!(
        "  - id: s-tus
    url: {TUS_SHARE}
    owner: uploadappadmin
    permissions: {{upload: true}}
    paths: [/upload/tus, /api/authinfo, /handlers/upload.php]
  - id: s-dl
    url: {DOWNLOAD_SHARE}
    owner: uploadappadmin
    permissions: {{master: true}}
    paths: [/download-file, /upload/tus]
"
    )
}

async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = http().request(method.parse().unwrap(), url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn url_tokens_are_decided_like_header_tokens_forwarded_unchanged_and_never_logged() {
    let mut setup = setup(CONFIG);
    let users = setup.editable_users();
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str(&transfer_shares());
    std::fs::write(&users, text).unwrap();
    let mut proc = setup.start("trace");
    let base = setup.base.clone();
    let uploader = share_token(&base, TUS_SHARE, DEVICE).await;
    let downloader = share_token(&base, DOWNLOAD_SHARE, DEVICE).await;

    // A tus chunk: the upload share may PATCH, the URL reaches the upstream as it was, the tus
    // headers and the body pass untouched.
    let chunk: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let url = format!("{base}/upload/tus/{uploader}/up-1");
    let tus = [
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Offset", "0"),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    let resp = call("PATCH", &url, &tus, chunk.clone()).await;
    assert_eq!(resp.status(), 200);
    let patch = setup.upstream.last();
    assert_eq!(
        patch.uri,
        format!("/upload/tus/{uploader}/up-1"),
        "unchanged"
    );
    assert_eq!(patch.header("upload-offset"), Some("0"));
    assert_eq!(patch.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(patch.header("x-authgate-share"), Some("s-tus"));
    assert_eq!(patch.body_len, chunk.len());
    // Asking for the offset (HEAD) is part of uploading: the upload share may, though it may not
    // download.
    let resp = call("HEAD", &url, &[("Tus-Resumable", "1.0.0")], Vec::new()).await;
    assert_eq!(resp.status(), 200);
    // plupload's query form, and authinfo.
    let resp = call(
        "POST",
        &format!("{base}/handlers/upload.php?name=a.bin&token={uploader}"),
        &[],
        b"data".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        setup.upstream.last().uri,
        format!("/handlers/upload.php?name=a.bin&token={uploader}")
    );
    let resp = call(
        "GET",
        &format!("{base}/api/authinfo/{uploader}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(resp.status(), 200);

    // The download share: a ranged download passes through as 206; it may not upload.
    let file = format!("{base}/download-file/77/0/0/1/0/{downloader}");
    let resp = call("GET", &file, &[("Range", "bytes=100-199")], Vec::new()).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().len(), 100);
    let before = setup.upstream.count();
    let denied = call(
        "PATCH",
        &format!("{base}/upload/tus/{downloader}/up-2"),
        &tus,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(denied.status(), 403);
    assert!(denied.text().await.unwrap().contains("\"message\""));
    let wrong_place = call(
        "GET",
        &format!("{base}/download-file/77/0/0/1/0/{uploader}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(
        wrong_place.status(),
        403,
        "the upload share may not download"
    );

    // A header token and a URL token must be the same.
    let both = call("HEAD", &url, &[("token", downloader.as_str())], Vec::new()).await;
    assert_eq!(both.status(), 400);
    let same = call("HEAD", &url, &[("token", uploader.as_str())], Vec::new()).await;
    assert_eq!(same.status(), 200);
    // A repeated query token names no single token.
    let repeated = call(
        "POST",
        &format!("{base}/handlers/upload.php?token={uploader}&token={uploader}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(repeated.status(), 400);
    // Unknown, then revoked: 401 on the very next request.
    let unknown = call(
        "GET",
        &format!("{base}/api/authinfo/{}", "A".repeat(43)),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(unknown.status(), 401);
    let revoke = call(
        "DELETE",
        &format!("{base}/api/authtoken"),
        &[("token", uploader.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(revoke.status(), 200);
    let after = call("HEAD", &url, &[], Vec::new()).await;
    assert_eq!(after.status(), 401);
    assert_eq!(
        setup.upstream.count(),
        before + 1,
        "only the allowed request after the refusals"
    );

    // No token in any log line (traces included) or metric.
    let metrics = reqwest::get(setup.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(10));
    let logs = proc.logs();
    assert!(
        logs.contains("/upload/tus/{token}/up-1"),
        "the path is logged, its token hidden"
    );
    for token in [&uploader, &downloader] {
        assert!(!logs.contains(token.as_str()), "a token in the log");
        assert!(!metrics.contains(token.as_str()), "a token in the metrics");
    }
}
