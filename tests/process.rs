//! The real binary as an operator runs it: restarts and crashes, signals, config errors, the CLI,
//! the README's demo session, and what its logs must never contain.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = "proc";

#[tokio::test]
async fn tokens_survive_a_crash_and_a_restart() {
    let setup = setup("");
    let base = setup.base.clone();
    let mut first = setup.start("warn");
    let kept = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let revoked = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let body = format!("gwos-api-token={revoked}&gwos-app-name={APP}");
    assert_eq!(
        text(post_form(&format!("{base}/api/auth/logout"), &body).await)
            .await
            .0,
        200
    );
    // A crash: no shutdown, no flush.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = setup.start("warn");
    assert!(
        second.logs().contains("not closed cleanly: repairing"),
        "a crash is seen as one: {}",
        second.logs()
    );
    assert_eq!(
        get_with(&format!("{base}/after"), &kept, APP)
            .await
            .status(),
        200
    );
    assert_eq!(
        setup.upstream.last().header("x-authgate-user"),
        Some("admin")
    );
    assert_eq!(
        get_with(&format!("{base}/after"), &revoked, APP)
            .await
            .status(),
        401
    );
}

/// Peak resident memory of a process, in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

#[tokio::test]
async fn a_100_mb_upload_and_download_pass_in_constant_memory() {
    let setup = setup("");
    let base = setup.base.clone();
    let proc = setup.start("warn");
    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(
        get_with(&format!("{base}/warm"), &t, APP).await.status(),
        200
    );
    let baseline = peak_rss_mib(proc.child.id());
    let chunk = bytes::Bytes::from(vec![1u8; 1024 * 1024]);
    let body =
        futures_util::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = http()
        .put(format!("{base}/upload"))
        .header("GWOS-API-TOKEN", &t)
        .header("GWOS-APP-NAME", APP)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(setup.upstream.last().body_len, 100 * 1024 * 1024);
    let mut resp = get_with(&format!("{base}/stream?mb=100"), &t, APP).await;
    let mut received = 0;
    while let Some(piece) = resp.chunk().await.unwrap() {
        received += piece.len();
    }
    assert_eq!(received, 100 * 1024 * 1024);
    let peak = peak_rss_mib(proc.child.id());
    println!("peak RSS: {baseline:.1} MiB before, {peak:.1} MiB after 200 MB through the gateway");
    // Buffering either body would add 100 MiB.
    assert!(
        peak - baseline < 32.0,
        "the gateway buffered: {baseline:.1} → {peak:.1} MiB"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_well_within_the_grace() {
    let setup = setup("");
    let (base, port) = (setup.base.clone(), setup.port);
    let mut proc = setup.start("info");
    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;

    let slow = tokio::spawn({
        let (base, t) = (base.clone(), t.clone());
        async move { get_with(&format!("{base}/slow"), &t, APP).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    proc.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "no new connections after SIGTERM"
    );
    let resp = slow.await.unwrap();
    assert_eq!(
        text(resp).await,
        (200, "slow ok".into()),
        "the in-flight request completed"
    );
    let status = proc
        .wait_exit(Duration::from_secs(9))
        .expect("exited before the 10 s grace");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}

/// A gateway with a logged-in token, and a 3-second request in flight.
async fn serving_a_slow_request(
    setup: &Setup,
) -> (
    Proc,
    String,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let base = setup.base.clone();
    let proc = setup.start("info");
    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let slow = tokio::spawn({
        let t = t.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/slow"))
                .header("GWOS-API-TOKEN", t)
                .header("GWOS-APP-NAME", APP)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    (proc, t, slow)
}

/// The store was closed: the next start needs no repair, and the token is still there.
async fn restarts_without_repair_keeping(setup: &Setup, t: &str) {
    let next = setup.start("info");
    let resp = get_with(&format!("{}/x", setup.base), t, APP).await;
    assert_eq!(resp.status(), 200);
    assert!(!next.logs().contains("repairing"), "{}", next.logs());
}

#[tokio::test]
async fn sigint_drains_like_sigterm_then_closes_the_store() {
    let setup = setup("");
    let (mut proc, t, slow) = serving_a_slow_request(&setup).await;
    proc.signal("INT");
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(text(resp).await, (200, "slow ok".into()));
    let status = proc.wait_exit(Duration::from_secs(9)).expect("exited");
    assert!(status.success(), "{status:?}");
    let logs = proc.logs();
    assert!(logs.contains("token store closed"), "{logs}");
    restarts_without_repair_keeping(&setup, &t).await;
}

#[tokio::test]
async fn a_second_signal_during_the_drain_exits_at_once_still_closing_the_store() {
    let setup = setup("");
    let (mut proc, t, _slow) = serving_a_slow_request(&setup).await;
    proc.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "still draining the slow request"
    );
    let interrupted = Instant::now();
    proc.signal("INT");
    let status = proc
        .wait_exit(Duration::from_secs(2))
        .expect("exited at the second signal");
    assert!(
        interrupted.elapsed() < Duration::from_secs(1),
        "{:?}",
        interrupted.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
    let logs = proc.logs();
    assert!(logs.contains("second signal while stopping"), "{logs}");
    assert!(logs.contains("token store closed"), "{logs}");
    restarts_without_repair_keeping(&setup, &t).await;
}

/// The issue's shutdown report: SIGINT after serving a request sometimes never exited, spinning on
/// "Accept() failed" lines. 100 cycles, with a client holding its keep-alive connection open,
/// alternating SIGINT and SIGTERM.
#[tokio::test]
async fn a_hundred_start_serve_signal_cycles_all_exit_promptly_and_quietly() {
    const CYCLES: usize = 100;
    let setup = setup("");
    let base = setup.base.clone();
    let mut t = None;
    let mut slowest = Duration::ZERO;
    for cycle in 0..CYCLES {
        let mut proc = setup.start("info");
        let t = match &t {
            Some(t) => t,
            None => t.insert(token(&base, "admin", ADMIN_PASSWORD, APP).await),
        };
        // A fresh client per cycle, kept alive past the signal: its connection stays open.
        let client = reqwest::Client::new();
        let resp = client
            .get(format!("{base}/cycle/{cycle}"))
            .header("GWOS-API-TOKEN", t.as_str())
            .header("GWOS-APP-NAME", APP)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "cycle {cycle}");
        resp.bytes().await.unwrap();
        let signalled = Instant::now();
        proc.signal(if cycle % 2 == 0 { "INT" } else { "TERM" });
        let status = proc
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("cycle {cycle}: no exit within 5 s:\n{}", proc.logs()));
        slowest = slowest.max(signalled.elapsed());
        assert!(status.success(), "cycle {cycle}: {status:?}");
        let logs = proc.logs();
        assert!(
            logs.len() < 64 * 1024,
            "cycle {cycle}: {} bytes of log",
            logs.len()
        );
        assert!(!logs.contains("Accept() failed"), "cycle {cycle}:\n{logs}");
        assert!(
            logs.contains("token store closed"),
            "cycle {cycle}:\n{logs}"
        );
        assert!(!logs.contains("repairing"), "cycle {cycle}:\n{logs}");
        drop(client);
    }
    eprintln!("{CYCLES} cycles; slowest exit after the signal: {slowest:?}");
}

#[test]
fn a_bad_config_stops_start_up_naming_the_key_before_anything_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cases = [
        (
            format!("listen: 127.0.0.1:{port}\ngwos:\n  idle_timeout_sconds: 5\n"),
            "idle_timeout_sconds",
        ),
        (
            format!("listen: 127.0.0.1:{port}\ndefault_upstream: nowhere\n"),
            "default_upstream",
        ),
        (
            format!("listen: 127.0.0.1:{port}\nusers_file: /nonexistent/users.yaml\n"),
            "users_file",
        ),
    ];
    for (yaml, key) in cases {
        let mut proc = Proc::start(dir.path(), &yaml, "warn");
        let status = proc.wait_exit(Duration::from_secs(10)).expect("exits");
        assert_eq!(status.code(), Some(2), "{yaml}");
        assert!(proc.logs().contains(key), "{key}: {}", proc.logs());
        assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
    }
}

#[test]
fn check_config_and_hash_password() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "users_file: {}\npublic_paths: [/api/noma]\nstore:\n  data_dir: {}\n",
            users_file().display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // The file named by AUTHGATE_CONFIG, as the image runs it.
    let out = Command::new(BIN)
        .arg("check-config")
        .env("AUTHGATE_CONFIG", &good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A data directory that cannot be written (under a regular file: even root cannot).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&good)
        .env("AUTHGATE_STORE__DATA_DIR", file.join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.data_dir") && stderr.contains("not writable"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "routes:\n  - prefix: /x\n    upstream: ghost\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].upstream") && stderr.contains("ghost"),
        "{stderr}"
    );
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "users:\n  eve:\n    password_hash: letmein\n    role: admin\n",
    )
    .unwrap();
    std::fs::write(&bad, format!("users_file: {}\n", plain.display())).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("users.eve.password_hash") && !stderr.contains("letmein"),
        "{stderr}"
    );

    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let mut phc = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut phc)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let users = format!("users:\n  u:\n    password_hash: '{phc}'\n    role: admin\n");
    let parsed = authgate::auth::users::UserDirectory::parse(&users).unwrap();
    assert!(parsed.get("u").is_some());
}

/// The README's session, on the embedded defaults (ports 8080/9091/8081, demo users), in a network
/// namespace of its own: those fixed ports are the subject, and nothing else on the machine can
/// hold them there.
#[test]
fn readme_demo_session_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let proc = Proc::start_isolated(dir.path());
    let pid = proc.child.id();
    let session = std::thread::spawn(move || {
        enter_net_namespace_of(pid);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(readme_session(&proc, dir.path()));
    });
    if let Err(panic) = session.join() {
        std::panic::resume_unwind(panic);
    }
}

async fn readme_session(proc: &Proc, dir: &Path) {
    let base = "http://127.0.0.1:8080";
    wait_connectable("127.0.0.1:8080".parse().unwrap());
    wait_connectable("127.0.0.1:8081".parse().unwrap());
    let t = token(base, "admin", "admin-demo", "demo").await;
    let resp = get_with(&format!("{base}/api/hello"), &t, "demo").await;
    assert_eq!(resp.status(), 200, "{}", proc.logs());
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["user"], "admin");
    assert_eq!(echo["path"], "/api/hello");
    let reader = token(base, "reader", "reader-demo", "demo").await;
    assert_eq!(
        http()
            .post(format!("{base}/api/hello"))
            .header("GWOS-API-TOKEN", &reader)
            .header("GWOS-APP-NAME", "demo")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let body = format!("gwos-api-token={t}&gwos-app-name=demo");
    assert_eq!(
        text(post_form(&format!("{base}/api/auth/validatetoken"), &body).await).await,
        (200, "true".into())
    );
    assert_eq!(
        text(post_form(&format!("{base}/api/auth/logout"), &body).await).await,
        (200, "true".into())
    );
    assert_eq!(
        get_with(&format!("{base}/api/hello"), &t, "demo")
            .await
            .status(),
        401
    );
    assert!(
        dir.join("authgate-data/tokens.redb").exists(),
        "the default store is durable, in ./authgate-data"
    );
}

/// Trace-level logs of a whole session hold no token and no password, in any encoding.
#[tokio::test]
async fn no_secret_in_any_log_line_at_trace_level() {
    let setup = setup("log:\n  format: json\n");
    let base = setup.base.clone();
    let proc = setup.start("trace");

    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let _ = login(&base, "admin", "wrong-but-secret-pw", APP).await;
    let _ = login(&base, "nosuchuser", "another-secret-pw", APP).await;
    // A password typed into the user field.
    let _ = login(&base, "typed-in-the-user-field-pw", "x", APP).await;
    let _ = http()
        .post(format!("{base}/api/authtoken"))
        .json(&serde_json::json!({"username": "iogates-typed-user-pw", "password": "x"}))
        .send()
        .await;
    assert_eq!(
        get_with(&format!("{base}/a?q=1"), &t, APP).await.status(),
        200
    );
    let _ = get_with(&format!("{base}/a"), &t, "wrong-app").await;
    // Credentials in query strings: the GWOS auth endpoints accept their parameters there (the
    // spec: the body wins); a forwarded request's token is read from headers only.
    let query_login = http()
        .post(format!(
            "{base}/api/auth/login?user={}&password={}&gwos-app-name={APP}",
            urlencode(&b64("admin")),
            urlencode(&b64("query-secret-pw"))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(query_login.status(), 401, "read from the query, and wrong");
    let in_query = http()
        .get(format!(
            "{base}/a?gwos-api-token={t}&gwos-app-name={APP}&token={t}&password=query-pw-2"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        in_query.status(),
        401,
        "a token in the query is no credential"
    );
    let _ = get_with(
        &format!("{base}/a"),
        "ffffffff-ffff-4fff-8fff-ffffffffffff",
        APP,
    )
    .await;
    let body = format!("gwos-api-token={t}&gwos-app-name={APP}");
    let _ = post_form(&format!("{base}/api/auth/validatetoken"), &body).await;
    let _ = post_form(&format!("{base}/api/auth/logout"), &body).await;
    let _ = get_with(&format!("{base}/a"), &t, APP).await;
    // ioGates: a password login, a share login, and their tokens in `token` and Bearer headers.
    let iogates = |body: serde_json::Value| {
        http()
            .post(format!("{base}/api/authtoken"))
            .header("token", "")
            .json(&body)
            .send()
    };
    let v: serde_json::Value =
        iogates(serde_json::json!({"username": "uploadappadmin", "password": IOGATES_PASSWORD}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let user_token = v["token"].as_str().unwrap().to_string();
    let v: serde_json::Value = iogates(serde_json::json!({"url": SHARE_URL, "deviceId": 7}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let share_token = v["token"].as_str().unwrap().to_string();
    let _ =
        iogates(serde_json::json!({"username": "uploadappadmin", "password": "iogates-wrong-pw"}))
            .await;
    let _ = http()
        .get(format!("{base}/api/files"))
        .header("token", &share_token)
        .send()
        .await;
    let _ = http()
        .get(format!("{base}/api/files"))
        .bearer_auth(&user_token)
        .send()
        .await;
    let _ = http()
        .delete(format!("{base}/api/authtoken"))
        .bearer_auth(&user_token)
        .send()
        .await;
    // The last request's access line is written once its answer has gone.
    until_logged(&proc, r#""method":"DELETE""#, 1);

    let logs = proc.logs();
    assert!(
        logs.contains("authgate::access"),
        "logs were captured: {}",
        &logs[..logs.len().min(500)]
    );
    assert!(logs.contains("authgate::audit"), "audit events were logged");
    assert!(
        logs.contains(r#""user":"unknown-"#),
        "an unknown user field is named by its label"
    );
    let secrets = [
        t.clone(),
        ADMIN_PASSWORD.to_string(),
        b64(ADMIN_PASSWORD),
        "wrong-but-secret-pw".into(),
        b64("wrong-but-secret-pw"),
        "another-secret-pw".into(),
        b64("another-secret-pw"),
        "ffffffff-ffff-4fff-8fff-ffffffffffff".into(),
        IOGATES_PASSWORD.into(),
        "iogates-wrong-pw".into(),
        user_token,
        share_token,
        "5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b".into(),
        "typed-in-the-user-field-pw".into(),
        b64("typed-in-the-user-field-pw"),
        "iogates-typed-user-pw".into(),
        "nosuchuser".into(),
        "query-secret-pw".into(),
        b64("query-secret-pw"),
        "query-pw-2".into(),
    ];
    for secret in secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(&secret)) {
            panic!("secret {secret:?} found in logs: {line}");
        }
    }
    // Every line is one JSON object, and none names a path of the machine that built the binary
    // (pingora's lines used to carry `log.file`, a cargo registry path).
    let build_paths = [
        env!("CARGO_MANIFEST_DIR"),
        "/.cargo/",
        "/registry/src/",
        "/rustc/",
    ];
    for line in logs.lines() {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(
            object.keys().all(|k| !k.starts_with("log.")),
            "bridge metadata in: {line}"
        );
        for path in build_paths {
            assert!(!line.contains(path), "{path} in: {line}");
        }
    }
}

/// Deleting the users file (a botched secret update) is an ERROR, said once, and changes nothing:
/// the users loaded before stay in force.
#[tokio::test]
async fn a_missing_users_file_is_an_error_said_once_and_the_users_stay() {
    let mut s = setup("users_reload_interval_seconds: 1\n");
    let users = s.editable_users();
    let proc = s.start("info");
    token(&s.base, "admin", ADMIN_PASSWORD, APP).await;
    std::fs::remove_file(&users).unwrap();
    let said = |p: &Proc| p.logs().matches("users file cannot be read").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while said(&proc) == 0 {
        assert!(Instant::now() < deadline, "nothing logged: {}", proc.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(proc.logs().contains("ERROR"), "{}", proc.logs());
    token(&s.base, "admin", ADMIN_PASSWORD, APP).await;
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(said(&proc), 1, "once, not every tick");
}

#[tokio::test]
async fn a_users_file_caught_mid_write_is_refused_and_the_users_stay() {
    let mut s = setup("users_reload_interval_seconds: 1\n");
    let users = s.editable_users();
    let proc = s.start("info");
    let full = users_yaml();
    let mut held = Vec::new();
    for (user, password) in [
        ("admin", ADMIN_PASSWORD),
        ("reader", READER_PASSWORD),
        ("htuser", BCRYPT_PASSWORD),
        ("RESTAPIACCESS", RESTAPI_PASSWORD),
    ] {
        held.push((user, token(&s.base, user, password, APP).await));
    }
    let works = |t: String| {
        let url = format!("{}/still", s.base);
        async move { status_with(&url, &t, APP).await }
    };

    // Cut at a user boundary, as an editor saving in place can leave it: it parses, but 3 of the 4
    // users holding tokens are gone.
    let cut = &full[..full.find("\n  reader:").unwrap() + 1];
    std::fs::write(&users, cut).unwrap();
    until_logged(&proc, "leaves out too many users holding live tokens", 1);
    // No user at all.
    std::fs::write(&users, "users: {}\n").unwrap();
    until_logged(&proc, "users file has no user", 1);
    for (user, t) in &held {
        assert_eq!(works(t.clone()).await, 200, "{user} keeps working");
    }

    // The file as meant, one user removed on purpose: applied, and that user's token ends.
    let start = full.find("  reader:").unwrap();
    let end = full.find("  blocked:").unwrap();
    std::fs::write(&users, format!("{}{}", &full[..start], &full[end..])).unwrap();
    let reader = held[1].1.clone();
    until_refused("the reader's token ends", || works(reader.clone())).await;
    assert_eq!(works(held[0].1.clone()).await, 200);
    until_logged(&proc, "config_reload", 1);
}

/// A port another process holds stops start-up after `bind_timeout_ms`, naming the key: pingora
/// alone would retry the bind for ever while `/healthz` answered, and whatever held the port got
/// the traffic. A port let go of within that time (a previous instance exiting) is taken.
#[test]
fn a_taken_port_stops_start_up_naming_the_key_after_a_short_retry() {
    let s = setup("bind_timeout_ms: 1500\n");
    let holder = std::net::TcpListener::bind(("127.0.0.1", s.admin_port)).unwrap();
    let started = Instant::now();
    let mut proc = Proc::start(s.dir.path(), &s.yaml, "info");
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .expect("exited instead of waiting for the port");
    assert_eq!(status.code(), Some(2));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "retried first"
    );
    let logs = proc.logs();
    let expected = format!("admin.listen: cannot listen on 127.0.0.1:{}", s.admin_port);
    assert!(logs.contains(&expected), "{logs}");
    assert!(logs.contains("bind_timeout_ms"), "{logs}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err(),
        "nothing listens"
    );

    // Let go of half a second after the start: taken, and ready.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(holder);
    });
    let _proc = s.start("info");
    releaser.join().unwrap();
    let mut conn = RawConn::open(format!("127.0.0.1:{}", s.admin_port).parse().unwrap());
    conn.send("GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
}

/// SIGTERM with `shutdown.delay_seconds`: `/readyz` fails at once while requests are still
/// served (a Kubernetes Service stops sending before the listeners close), then the drain and a
/// clean exit.
#[tokio::test]
async fn sigterm_fails_readiness_first_and_keeps_serving_for_the_delay() {
    let setup = setup("shutdown:\n  delay_seconds: 2\n");
    let mut proc = setup.start("info");
    let t = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    let ready =
        || async { text(http().get(setup.admin_url("/readyz")).send().await.unwrap()).await };
    assert_eq!(ready().await.0, 200);
    let signalled = Instant::now();
    proc.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ready().await, (503, "not ready: shutting down".into()));
    while signalled.elapsed() < Duration::from_millis(1700) {
        assert_eq!(
            status_with(&format!("{}/api/hosts", setup.base), &t, APP).await,
            200,
            "still served during the delay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = proc
        .wait_exit(Duration::from_secs(8))
        .expect("exited after the delay");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2));
}

/// A users file mounted from a Kubernetes Secret: the file is a symlink into `..data`, itself a
/// symlink to a timestamped directory, and an update swaps `..data` in one rename. The new
/// content is read, exactly as the kubelet does it.
#[tokio::test]
async fn a_secret_style_symlink_swap_reloads_the_users() {
    let mut s = setup("users_reload_interval_seconds: 1\n");
    let plain = s.editable_users();
    let mount = s.dir.path().join("secret");
    let first = mount.join("..2026_12_02_10_00_00.000000001");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::rename(&plain, first.join("users.yaml")).unwrap();
    std::os::unix::fs::symlink("..2026_12_02_10_00_00.000000001", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/users.yaml", mount.join("users.yaml")).unwrap();
    s.yaml = s.yaml.replace(
        &plain.display().to_string(),
        &mount.join("users.yaml").display().to_string(),
    );
    let _proc = s.start("info");
    // Two users hold tokens: dropping one of them is within the reload's guard against a file
    // read half-written (users_reload_max_removed_share).
    for (user, password) in [("reader", READER_PASSWORD), ("admin", ADMIN_PASSWORD)] {
        assert_eq!(login(&s.base, user, password, APP).await.0, 200);
    }

    // The update: a new directory without the reader, `..data_tmp` pointing at it, renamed over
    // `..data`; the old directory removed.
    let full = users_yaml();
    let (start, end) = (
        full.find("  reader:").unwrap(),
        full.find("  blocked:").unwrap(),
    );
    let second = mount.join("..2026_12_02_10_05_00.000000002");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(
        second.join("users.yaml"),
        format!("{}{}", &full[..start], &full[end..]),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_12_02_10_05_00.000000002", mount.join("..data_tmp"))
        .unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    until_refused("the reader is gone after the swap", || async {
        login(&s.base, "reader", READER_PASSWORD, APP).await.0
    })
    .await;
    let (status, _) = login(&s.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status, 200, "the others stay");
}

/// A client that resets its connection mid-request is an everyday event, not an error: nothing
/// at ERROR, and no query string (which may carry a token or a password) in any line.
#[tokio::test]
async fn client_resets_are_quiet_and_never_log_the_query() {
    use std::os::fd::AsRawFd;
    let setup = setup("log:\n  format: json\n");
    let proc = setup.start("info");
    let t = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    let reset = |stream: std::net::TcpStream| {
        // SO_LINGER 0: close sends RST.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on an open socket with a correctly sized value.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(stream);
    };
    let addr = format!("127.0.0.1:{}", setup.port);
    // Reset while the upstream takes its time.
    let mut waiting = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        waiting,
        "GET /slow?token=SECRET-QUERY-TOKEN&password=SECRET-QUERY-PW HTTP/1.1\r\nHost: x\r\n\
         GWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    reset(waiting);
    // Reset halfway through the request headers.
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /x?gwos-api-token=SECRET-HALF HTTP/1.1\r\nHo")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    reset(half);
    // Both are logged once their connection is done with: the access line of the first.
    until_logged(&proc, r#""path":"/slow""#, 1);
    std::thread::sleep(Duration::from_millis(100));
    let logs = proc.logs();
    for line in logs.lines() {
        assert!(
            !line.contains("SECRET-"),
            "a query string was logged: {line}"
        );
        assert!(!line.contains(r#""level":"ERROR""#), "{line}");
    }
}

/// A flood is said in one summary line, not one line per event: connections refused beyond the
/// per-address limit and headers cut off at their deadline are counted in a WARN line of
/// `authgate::flood`, and nothing else is written for them at INFO or above.
#[tokio::test]
async fn a_flood_is_summed_up_in_one_line() {
    let setup = setup(
        "log:\n  format: json\n  flood_report_seconds: 1\n\
         limits:\n  max_connections_per_client: 10\n  request_header_timeout_ms: 300\n",
    );
    let proc = setup.start("info");
    let addr = format!("127.0.0.1:{}", setup.port);
    wait_connectable(addr.parse().unwrap());
    // 10 connections that never send a header, then 40 more that are refused, from an address
    // of their own (the readiness probe's connection above may not be closed yet).
    let mut held = Vec::new();
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        held.push(socket.connect(addr.parse().unwrap()).await.unwrap());
    }
    until_logged(&proc, "authgate::flood", 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drop(held);
    let logs = proc.logs();
    let floods: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("authgate::flood"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sum = |field: &str| -> u64 { floods.iter().map(|f| f[field].as_u64().unwrap_or(0)).sum() };
    assert_eq!(sum("connections_refused_per_client_limit"), 40, "{logs}");
    assert_eq!(sum("header_timeouts"), 10, "{logs}");
    assert!(floods.len() <= 3, "one line a second at most: {logs}");
    let others = logs
        .lines()
        .filter(|l| !l.contains("authgate::flood") && !l.contains(r#""level":"INFO""#))
        .count();
    assert_eq!(others, 0, "no line per event: {logs}");
}

/// Eight keep-alive clients, `each` valid-token requests apiece, as fast as they go; every one
/// answered 200.
async fn keep_alive_load(base: &str, t: &str, each: usize) {
    let clients = (0..8).map(|client| async move {
        for i in 0..each {
            let url = format!("{base}/load/{client}/{i}");
            assert_eq!(get_with(&url, t, APP).await.status(), 200);
        }
    });
    futures_util::future::join_all(clients).await;
}

/// The log is written by a thread of its own, batched: a quiet gateway's line still shows within
/// a second, every line of a burst is written by the time SIGTERM's exit comes, and a file gets
/// no colour codes.
#[tokio::test]
async fn log_lines_show_within_a_second_none_are_lost_on_sigterm_and_files_get_no_colour() {
    let setup = setup("");
    let base = setup.base.clone();
    let mut proc = setup.start("info");
    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let access_lines = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("authgate::access"))
            .count()
    };
    assert_eq!(
        get_with(&format!("{base}/one"), &t, APP).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        access_lines(&proc.logs()),
        2,
        "the login and the request, written already"
    );

    keep_alive_load(&base, &t, 50).await;
    proc.signal("TERM");
    assert!(proc.wait_exit(Duration::from_secs(10)).is_some());
    let logs = proc.logs();
    assert_eq!(
        access_lines(&logs),
        402,
        "every request's line, none lost at the exit"
    );
    assert!(logs.contains("stopping"), "and the shutdown's own lines");
    assert!(
        logs.contains("token store closed"),
        "to the last, just before the exit"
    );
    assert!(!logs.contains('\x1b'), "colour codes in a file");
}

/// pingora's pool race (`telemetry::POOL_RACE`): under keep-alive load on two threads, an idle
/// upstream connection is now and then not handed out and a new one is opened. No request fails,
/// each is counted, and none is an ERROR line.
#[tokio::test]
async fn pool_races_under_load_fail_no_request_and_are_counted_not_logged_as_errors() {
    let setup = setup("");
    let base = setup.base.clone();
    let mut proc = setup.start("info");
    let t = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    keep_alive_load(&base, &t, 250).await;
    let metrics = scrape_metrics(&setup.admin_url("/metrics")).await;
    let races = metrics["authgate_upstream_pool_races_total{}"];
    println!("pool races in 2000 requests: {races}");
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(10));
    let logs = proc.logs();
    assert!(
        !logs.contains("failed to acquire reusable stream"),
        "{logs}"
    );
    assert!(!logs.contains("ERROR"), "{logs}");
}
