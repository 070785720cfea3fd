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
  - {path: \"/upload/tus/{token}/**\", permission: upload, options: upstream}
  - {path: \"/download-file/*/*/*/*/*/{token}\", permission: download}
  - {path: /handlers/upload.php, query: token, permission: upload}
forwarding:
  trusted_proxies: [127.0.0.1/32]
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

/// The gateway with the transfer shares, in front of `upstream` (else the recording one), at log
/// level `level`; and a token of each share.
async fn started(
    upstream: Option<std::net::SocketAddr>,
    level: &str,
) -> (Setup, Proc, String, String) {
    let mut setup = setup(CONFIG);
    if let Some(addr) = upstream {
        let recording = setup.upstream.addr.to_string();
        setup.yaml = setup.yaml.replace(&recording, &addr.to_string());
    }
    let users = setup.editable_users();
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str(&transfer_shares());
    std::fs::write(&users, text).unwrap();
    let proc = setup.start(level);
    let uploader = share_token(&setup.base, TUS_SHARE, DEVICE).await;
    let downloader = share_token(&setup.base, DOWNLOAD_SHARE, DEVICE).await;
    (setup, proc, uploader, downloader)
}

/// `/metrics` and, after a graceful stop, every log line: neither shows any of `tokens`.
async fn stop_showing_no_token(setup: &Setup, mut proc: Proc, tokens: &[&str]) -> (String, String) {
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
    for token in tokens {
        assert!(!logs.contains(token), "a token in the log");
        assert!(!metrics.contains(token), "a token in the metrics");
    }
    (metrics, logs)
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
    let (setup, proc, uploader, downloader) = started(None, "trace").await;
    let base = setup.base.clone();

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
    let ranged = [("Range", "bytes=100-199"), ("If-Range", "\"v1\"")];
    let resp = call("GET", &file, &ranged, Vec::new()).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 100-199/1024");
    assert_eq!(resp.bytes().await.unwrap().len(), 100);
    let got = setup.upstream.last();
    assert_eq!(got.header("range"), Some("bytes=100-199"));
    assert_eq!(got.header("if-range"), Some("\"v1\""));
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

    // The decision endpoint in Envoy's form carries the token in its own path.
    let verify = format!("{base}/authgate/verify/download-file/77/0/0/1/0/{downloader}");
    let decided = call("GET", &verify, &[], Vec::new()).await;
    assert_eq!(decided.status(), 200);
    assert_eq!(decided.headers()["x-authgate-share"], "s-dl");

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
    let (metrics, logs) = stop_showing_no_token(&setup, proc, &[&uploader, &downloader]).await;
    // Invalid URL tokens are counted as invalid header tokens are: the unknown and the revoked.
    let invalid = metrics
        .lines()
        .find_map(|l| l.strip_prefix("authgate_auth_decisions_total{outcome=\"invalid\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(invalid, Some(2), "{metrics}");
    assert!(
        logs.contains("/upload/tus/{token}/up-1"),
        "the path is logged, its token hidden"
    );
    assert!(logs.contains("/authgate/verify/download-file/77/0/0/1/0/{token}"));
}

/// `len` bytes that do not repeat (a counter through SHA-256), so that a piece out of place or
/// twice shows.
fn file_bytes(len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&Sha256::digest(block.to_le_bytes()));
        block += 1;
    }
    bytes.truncate(len);
    bytes
}

/// The peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The proof: the real tus client (tus-js-client, as ioGates' web uploader) uploads
/// 50 MB through authgate in four parallel parts and the final concatenation, with the token in
/// the URL; four parallel ranged requests download it back; the bytes are identical both ways,
/// the gateway's memory does not follow the file's size, and no token is in a log line or metric.
#[tokio::test]
async fn a_real_tus_client_uploads_and_ranged_requests_download_50_mb_through_url_tokens() {
    const SIZE: usize = 50 * 1024 * 1024;
    let tus = TusServer::start();
    let (setup, proc, uploader, downloader) = started(Some(tus.addr), "debug").await;
    let base = setup.base.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proof.bin");
    let original = file_bytes(SIZE);
    std::fs::write(&file, &original).unwrap();
    let rss_before = peak_rss(proc.child.id());

    // Upload: four partial uploads in parallel (a creation POST and one 12.5 MB PATCH each),
    // then the final POST naming them.
    let endpoint = format!("{base}/upload/tus/{uploader}");
    let run = |endpoint: String| {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            tus_client()
                .arg(&file)
                .arg(endpoint)
                .args(["4", &SIZE.to_string()])
                .output()
                .unwrap()
        })
    };
    let out = run(endpoint.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "tus-js-client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let responses = report["responses"].as_array().unwrap();
    let of = |method: &str, concat: Option<&str>| -> Vec<u64> {
        responses
            .iter()
            .filter(|r| r["method"] == method && r["concat"].as_str() == concat)
            .map(|r| r["status"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(of("POST", Some("partial")), [201; 4], "{responses:?}");
    assert_eq!(of("POST", Some("final")), [201], "the final concat");
    assert_eq!(of("PATCH", Some("partial")), [204; 4], "each part's bytes");
    let url = report["url"].as_str().unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert!(
        url.starts_with(&format!("{endpoint}/")),
        "the upload lives under the token's URL: {url}"
    );
    // Buffering the four parts would add 50 MB; streaming them, a few buffers.
    let rss_growth = || (peak_rss(proc.child.id()).saturating_sub(rss_before) as f64) / 1048576.0;
    let grew = rss_growth();
    println!("peak RSS after the upload: +{grew:.1} MiB");
    assert!(grew < 32.0, "the uploads were buffered: +{grew:.1} MiB");
    let stored = tus.upload(id).expect("the final upload");
    assert_eq!(stored.len(), SIZE);
    assert!(stored == original, "the bytes arrived identical");
    drop(stored);
    // What reached the upstream: every URL as the client sent it, the share named.
    let seen = tus.seen();
    assert_eq!(seen.len(), responses.len(), "every request forwarded once");
    assert!(
        seen.iter()
            .all(|r| r.token == uploader && r.share.as_deref() == Some("s-tus")),
        "{seen:?}"
    );

    // Download: four ranges at once, each 206 with its Content-Range.
    let file_url = format!("{base}/download-file/{id}/0/0/1/0/{downloader}");
    let quarter = SIZE / 4;
    let ranges = (0..4).map(|i| {
        let url = file_url.clone();
        async move {
            let (first, last) = (i * quarter, (i + 1) * quarter - 1);
            let resp = http()
                .get(url)
                .header("Range", format!("bytes={first}-{last}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206);
            assert_eq!(
                resp.headers()["content-range"],
                format!("bytes {first}-{last}/{SIZE}").as_str()
            );
            resp.bytes().await.unwrap()
        }
    });
    let pieces = futures_util::future::join_all(ranges).await;
    let downloaded: Vec<u8> = pieces.concat();
    assert!(downloaded == original, "the download is identical");
    let grew = rss_growth();
    println!("peak RSS after the download too: +{grew:.1} MiB");
    assert!(grew < 32.0, "the downloads were buffered: +{grew:.1} MiB");

    // tus discovery: OPTIONS reaches the tus server once the URL token is decided on; where a
    // route does not say so, authgate's preflight answers.
    let discovery = call("OPTIONS", &endpoint, &[], Vec::new()).await;
    assert_eq!(discovery.status(), 204);
    assert_eq!(
        discovery.headers()["tus-extension"],
        "creation,concatenation"
    );
    let unknown = format!("{base}/upload/tus/{}", "A".repeat(43));
    assert_eq!(
        call("OPTIONS", &unknown, &[], Vec::new()).await.status(),
        401
    );
    let authinfo = format!("{base}/api/authinfo/{uploader}");
    let preflight = call("OPTIONS", &authinfo, &[], Vec::new()).await;
    assert_eq!(preflight.status(), 200);
    assert!(preflight.headers().get("tus-version").is_none());

    // The download-only share may not upload: the real client is refused (403), and nothing
    // of it reaches the upstream.
    let before = tus.seen().len();
    let out = run(format!("{base}/upload/tus/{downloader}"))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tus.seen().len(), before);

    let (_, logs) = stop_showing_no_token(&setup, proc, &[&uploader, &downloader]).await;
    assert!(
        logs.contains("/upload/tus/{token}/"),
        "the paths are logged"
    );
}
