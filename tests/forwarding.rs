//! What reaches the upstream, and what never does.

mod common;
use common::*;

const APP: &str = "fwd";

#[tokio::test]
async fn forwarded_request_keeps_method_path_query_body_and_gets_identity() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let resp = http()
        .patch(gw.url("/api/hosts/a%20b?x=1&y=two"))
        .header("Gwos-Api-Token", &t)
        .header("gwos-app-name", APP)
        .header("X-Custom", "kept")
        .header("X-Forwarded-For", "10.9.8.7")
        .body("payload-bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(text(resp).await, (200, "upstream ok".into()));
    let r = up.last();
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.uri, "/api/hosts/a%20b?x=1&y=two");
    assert_eq!(r.body, b"payload-bytes");
    assert_eq!(r.header("x-custom"), Some("kept"));
    assert_eq!(r.header("x-authgate-user"), Some("admin"));
    assert_eq!(r.header("x-authgate-role"), Some("admin"));
    assert_eq!(r.header("x-authgate-app"), Some(APP));
    assert_eq!(
        r.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "an untrusted peer's claim is replaced, not appended to"
    );
    assert_eq!(r.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        r.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(
        r.header("gwos-api-token"),
        None,
        "credentials are stripped by default"
    );
    assert_eq!(r.header("gwos-app-name"), None);
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_the_upstream() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "reader", READER_PASSWORD, APP).await;
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "GET /spoof HTTP/1.1\r\nHost: x\r\nGWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\
         X-Authgate-User: admin\r\nx_authgate_user: admin\r\nX_AUTHGATE_ROLE: admin\r\nx-authgate-app: evil\r\n\r\n"
    ));
    assert_eq!(conn.read_response().status, 200);
    let r = up.last();
    let users: Vec<_> = r
        .headers
        .keys()
        .filter(|k| k.as_str().replace('_', "-") == "x-authgate-user")
        .collect();
    assert_eq!(users.len(), 1, "{:?}", r.headers);
    assert_eq!(r.header("x-authgate-user"), Some("reader"));
    assert_eq!(r.header("x-authgate-role"), Some("reader"));
    assert_eq!(r.header("x-authgate-app"), Some(APP));
    assert!(
        r.headers.keys().all(|k| !k.as_str().contains('_')),
        "{:?}",
        r.headers
    );

    // On a public path too, nothing a client claims about identity goes through.
    drop(gw);
    let (gw, up) = gateway_with(|c| c.public_paths = vec!["/open".into()]);
    let resp = http()
        .get(gw.url("/open/x"))
        .header("X-Authgate-User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-authgate-user"), None);
}

#[tokio::test]
async fn identity_header_names_and_credential_keeping_are_configurable() {
    let (gw, up) = gateway_with(|c| {
        c.forwarding.keep_credentials = true;
        c.forwarding.user_header = "X-Remote-User".into();
    });
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(get_with(&gw.url("/k"), &t, APP).await.status(), 200);
    let r = up.last();
    assert_eq!(r.header("gwos-api-token"), Some(t.as_str()));
    assert_eq!(r.header("gwos-app-name"), Some(APP));
    assert_eq!(r.header("x-remote-user"), Some("admin"));
    assert_eq!(r.header("x-authgate-user"), None);
}

#[tokio::test]
async fn credential_failures_follow_the_contract_and_never_reach_the_upstream() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let url = gw.url("/api/hosts");
    // No credential: 401.
    assert_eq!(text(http().get(&url).send().await.unwrap()).await.0, 401);
    // Token but no app name: 400 (also with an empty GWOS-APP-NAME).
    let resp = http()
        .get(&url)
        .header("GWOS-API-TOKEN", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .get(&url)
        .header("GWOS-API-TOKEN", &t)
        .header("GWOS-APP-NAME", "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Legacy APP-NAME is accepted.
    let resp = http()
        .get(&url)
        .header("GWOS-API-TOKEN", &t)
        .header("APP-NAME", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Other app name, unknown token, absurd token, control characters: 401.
    assert_eq!(get_with(&url, &t, "other").await.status(), 401);
    assert_eq!(
        get_with(&url, "0b6e1d2a-1111-4222-8333-444455556666", APP)
            .await
            .status(),
        401
    );
    assert_eq!(get_with(&url, &"x".repeat(8000), APP).await.status(), 401);
    let mut conn = RawConn::open(gw.addr);
    conn.send_bytes(format!("GET /api/hosts HTTP/1.1\r\nHost: x\r\nGWOS-API-TOKEN: {t}\x01\r\nGWOS-APP-NAME: {APP}\r\n\r\n").as_bytes());
    let status = conn.read_response().status;
    assert!(status == 400 || status == 401, "{status}");
    // JSON error bodies when asked for exactly that.
    let resp = http()
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(resp).await,
        (401, r#"{"error":"Unauthorized","status":401}"#.into())
    );
    let resp = http()
        .get(&url)
        .header("Accept", "application/json")
        .header("GWOS-API-TOKEN", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(resp).await,
        (400, r#"{"error":"Bad Request","status":400}"#.into())
    );
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.uri == "/api/hosts")
            .count(),
        1,
        "only the legacy APP-NAME call"
    );
}

#[tokio::test]
async fn reader_role_gets_read_methods_and_the_post_allow_list_only() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "reader", READER_PASSWORD, APP).await;
    let send = |method: reqwest::Method, path: &str| {
        http()
            .request(method, gw.url(path))
            .header("GWOS-API-TOKEN", &t)
            .header("GWOS-APP-NAME", APP)
            .body("{}")
            .send()
    };
    for (method, path) in [
        (reqwest::Method::GET, "/api/hosts"),
        (reqwest::Method::HEAD, "/api/hosts"),
        (reqwest::Method::POST, "/api/biz/getindowntime"),
    ] {
        let status = send(method.clone(), path).await.unwrap().status();
        assert_eq!(status, 200, "{method} {path}");
    }
    let before = up.count();
    for (method, path) in [
        (reqwest::Method::POST, "/api/hosts"),
        (reqwest::Method::PUT, "/api/hosts"),
        (reqwest::Method::DELETE, "/api/hosts/1"),
        (reqwest::Method::POST, "/api/biz/getindowntime/../../hosts"),
    ] {
        assert_eq!(
            send(method.clone(), path).await.unwrap().status(),
            401,
            "{method} {path}"
        );
    }
    assert_eq!(
        up.count(),
        before,
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn public_paths_match_whole_normalised_prefixes() {
    let (gw, up) =
        gateway_with(|c| c.public_paths = vec!["/api/noma".into(), "/api/autoRegister".into()]);
    for path in [
        "/api/noma",
        "/api/noma/x?y=1",
        "//api//noma/x",
        "/api/autoRegister",
    ] {
        assert_eq!(
            http().get(gw.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let before = up.count();
    // Raw request lines: an HTTP client library would resolve the dots itself.
    for (path, status) in [
        ("/api/nomad", 401),
        ("/api/noma/../hosts", 401),
        ("/api/noma/%2e%2e/hosts", 401),
        ("/api/nom", 401),
        ("/api/noma/..%2fhosts", 400),
        ("/api/noma/..;/hosts", 400),
    ] {
        let mut conn = RawConn::open(gw.addr);
        conn.send(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(conn.read_response().status, status, "{path}");
    }
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn cors_preflight_answered_locally_and_origin_reflected_when_allowed() {
    let (gw, up) = gateway_with(|c| c.cors.allowed_origins = vec!["https://ui.example".into()]);
    let resp = http()
        .request(reqwest::Method::OPTIONS, gw.url("/api/hosts"))
        .header("Origin", "https://ui.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://ui.example");
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type,X-Requested-With,Access,GWOS-API-TOKEN,GWOS-APP-NAME,APP-NAME,token,Authorization"
    );
    assert_eq!(h["vary"], "Origin");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET,PUT,POST,DELETE,OPTIONS"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    let resp = http()
        .request(reqwest::Method::OPTIONS, gw.url("/api/hosts"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        resp.headers()["vary"],
        "Origin",
        "a cache must not serve this answer to an allowed origin"
    );
    assert_eq!(up.count(), 0, "preflights are never forwarded");
    // Actual cross-origin calls carry the header too, forwarded or refused.
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let resp = http()
        .get(gw.url("/x"))
        .header("Origin", "https://ui.example")
        .header("GWOS-API-TOKEN", &t)
        .header("GWOS-APP-NAME", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    assert_eq!(resp.headers()["vary"], "Origin");
    // Without an Origin, the forwarded answer still says that it varies with one.
    let resp = get_with(&gw.url("/x"), &t, APP).await;
    assert_eq!(resp.headers()["vary"], "Origin");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let refused = http().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["vary"], "Origin");
}

#[tokio::test]
async fn keep_alive_survives_a_401_and_connection_close_is_honoured() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let mut conn = RawConn::open(gw.addr);
    conn.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.status, 401);
    assert!(r.header("content-length").is_some());
    assert_ne!(r.header("connection"), Some("close"));
    conn.send(&format!(
        "GET /b HTTP/1.1\r\nHost: x\r\nGWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\r\n"
    ));
    assert_eq!(
        conn.read_response().status,
        200,
        "same connection after the 401"
    );
    assert_eq!(up.last().uri, "/b");
    // Go SDK style: Connection: close on the request → the response says so and the socket closes.
    for request in [
        format!("GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\nGWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\r\n"),
        "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "POST /api/auth/validatetoken HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nx=1&y".to_string(),
    ] {
        let mut conn = RawConn::open(gw.addr);
        conn.send(&request);
        let r = conn.read_response();
        assert_eq!(r.header("connection"), Some("close"), "{request}");
        assert!(conn.is_closed_by_peer(), "{request}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_stop_at_the_gateway() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "GET /hop HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: v\r\n\
         Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\nX-End-To-End: kept\r\n\
         GWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\r\n"
    ));
    assert_eq!(conn.read_response().status, 200);
    let r = up.last();
    for gone in ["x-secret-hop", "keep-alive", "proxy-authorization", "te"] {
        assert_eq!(r.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn upstream_down_is_502_and_too_slow_is_504() {
    let (gw, _up) = gateway_with(|c| route_to_dead_upstream_and_short_timeout(c, "/dead"));
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let started = std::time::Instant::now();
    let (status, body) = text(get_with(&gw.url("/dead/x"), &t, APP).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.is_empty());
    let (status, _) = text(get_with(&gw.url("/slow"), &t, APP).await).await;
    assert_eq!(status, 504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "no hang: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn most_specific_route_prefix_wins() {
    let other = Upstream::start();
    let third = Upstream::start();
    let (gw, main) = gateway_with(|c| {
        for (name, up) in [("other", &other), ("third", &third)] {
            c.upstreams.insert(
                name.into(),
                authgate::config::UpstreamConfig {
                    addresses: vec![up.addr.to_string()],
                    ..Default::default()
                },
            );
        }
        c.routes = vec![
            authgate::config::RouteConfig {
                prefix: "/api".into(),
                upstream: "other".into(),
            },
            authgate::config::RouteConfig {
                prefix: "/api/files/".into(),
                upstream: "third".into(),
            },
        ];
    });
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    for path in ["/api/x", "/api/files/1", "/apix", "/"] {
        assert_eq!(get_with(&gw.url(path), &t, APP).await.status(), 200);
    }
    assert_eq!(
        other
            .requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
        ["/api/x"]
    );
    assert_eq!(
        third
            .requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
        ["/api/files/1"]
    );
    assert_eq!(
        main.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
        ["/apix", "/"]
    );
}

#[tokio::test]
async fn large_uploads_and_streamed_downloads_pass_through() {
    use sha2::{Digest, Sha256};
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    // 100 MB upload, sent as a stream of 1 MiB chunks (never whole in the client either).
    let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
    let mut expected = Sha256::new();
    for _ in 0..100 {
        expected.update(&chunk);
    }
    let stream =
        futures_util::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = http()
        .post(gw.url("/upload"))
        .header("GWOS-API-TOKEN", &t)
        .header("GWOS-APP-NAME", APP)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = up.last();
    assert_eq!(r.body_len, 100 * 1024 * 1024);
    assert_eq!(r.body_sha256, hex::encode(expected.finalize()));
    // A 32 MiB chunked response streams back intact.
    let resp = get_with(&gw.url("/stream?mb=32"), &t, APP).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 32 * 1024 * 1024);
    assert!(body.iter().all(|&b| b == b'x'));
    // Range requests and 206 answers pass untouched.
    let resp = http()
        .get(gw.url("/file"))
        .header("GWOS-API-TOKEN", &t)
        .header("GWOS-APP-NAME", APP)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 10-19/1024");
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        (10..20u8).collect::<Vec<_>>()
    );
    assert_eq!(up.last().header("range"), Some("bytes=10-19"));
}

#[tokio::test]
async fn a_pool_balances_over_its_backends_and_leaves_out_a_dead_one() {
    let mut second = Upstream::start();
    let (gw, first) = gateway_with(|c| {
        let pool = c.upstreams.get_mut("main").expect("the test config's pool");
        pool.addresses.push(second.addr.to_string());
        pool.health_check_interval_ms = nz(100);
    });
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    for _ in 0..6 {
        assert_eq!(get_with(&gw.url("/api/x"), &t, APP).await.status(), 200);
    }
    assert_eq!((first.count(), second.count()), (3, 3), "round robin");

    second.stop();
    // Once the health check has seen it down (two failed probes), every request goes to the other.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = first.count();
    for _ in 0..6 {
        assert_eq!(get_with(&gw.url("/api/x"), &t, APP).await.status(), 200);
    }
    assert_eq!(first.count() - before, 6);
}
