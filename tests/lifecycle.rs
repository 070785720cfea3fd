//! Token lifetime across time, restarts, caps and load; and the real clients' exact request shapes.

mod common;
use common::*;
use std::time::Duration;

const APP: &str = "life";

#[tokio::test]
async fn idle_timeout_is_sliding_and_strict() {
    let (gw, _up, clock) = gateway_on_clock(|c| c.gwos.idle_timeout_seconds = nz(60));
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    // Each use within the minute extends the token's life: 4 uses over 4 minutes.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(59));
        assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 200);
    }
    // Idle to the millisecond of its timeout: dead, for proxying and for validatetoken alike.
    clock.advance(Duration::from_secs(60));
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 401);
    let body = format!("gwos-api-token={t}&gwos-app-name={APP}");
    assert_eq!(
        text(post_form(&gw.url("/api/auth/validatetoken"), &body).await).await,
        (200, "false".into())
    );
}

#[tokio::test]
async fn absolute_lifetime_ends_a_token_in_use() {
    let (gw, _up, clock) = gateway_on_clock(|c| c.gwos.max_lifetime_seconds = Some(nz(3600)));
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    // Used every 30 minutes, so never idle; still dead at the hour.
    clock.advance(Duration::from_secs(1800));
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 200);
    clock.advance(Duration::from_secs(1799));
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 200);
    clock.advance(Duration::from_secs(1));
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 401);
}

#[tokio::test]
async fn per_user_cap_evicts_the_oldest_tokens_of_that_user_only() {
    let (gw, _up) = gateway_with(|c| c.gwos.max_tokens_per_user = Some(nzu(2)));
    let base = gw.url("");
    let reader = token(&base, "reader", READER_PASSWORD, APP).await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(token(&base, "admin", ADMIN_PASSWORD, APP).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut statuses = Vec::new();
    for t in &tokens {
        statuses.push(get_with(&gw.url("/x"), t, APP).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 200, 200]);
    assert_eq!(get_with(&gw.url("/x"), &reader, APP).await.status(), 200);
}

#[tokio::test]
async fn fifty_concurrent_logins_and_5000_requests_over_100_connections() {
    let (gw, up) = gateway_with(|c| c.password_hashing.max_waiting = 100);
    let base = gw.url("");
    let logins = (0..50).map(|i| {
        let base = base.clone();
        tokio::spawn(async move {
            (
                i,
                token(&base, "admin", ADMIN_PASSWORD, &format!("app-{i}")).await,
            )
        })
    });
    let tokens: Vec<(usize, String)> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let distinct: std::collections::HashSet<_> = tokens.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(distinct.len(), 50);

    // 100 clients, each its own keep-alive connection, 50 requests each, tokens interleaved.
    let tasks = (0..100).map(|c| {
        let base = base.clone();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            for n in 0..50 {
                let (i, t) = &tokens[(c + n) % tokens.len()];
                let resp = client
                    .get(format!("{base}/load/{c}/{n}"))
                    .header("GWOS-API-TOKEN", t)
                    .header("GWOS-APP-NAME", format!("app-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
    let received = up.requests();
    let load: Vec<_> = received
        .iter()
        .filter(|r| r.uri.starts_with("/load/"))
        .collect();
    assert_eq!(load.len(), 5000, "nothing lost");
    // Nothing mixed up: each request carries the identity of the token it was sent with.
    for r in load {
        let parts: Vec<usize> = r
            .uri
            .split('/')
            .skip(2)
            .map(|p| p.parse().unwrap())
            .collect();
        let (i, _) = &tokens[(parts[0] + parts[1]) % tokens.len()];
        assert_eq!(
            r.header("x-authgate-app"),
            Some(format!("app-{i}").as_str()),
            "{}",
            r.uri
        );
    }
}

/// The Go TCG SDK (gwos/tcg `sdk/clients/gwClient.go`): raw user name, `Accept: text/plain`,
/// `Connection: close` on every request, Go's canonical `Gwos-Api-Token` header spelling.
#[tokio::test]
async fn go_sdk_request_shapes() {
    let (gw, up) = gateway();
    let login_body = format!(
        "gwos-app-name=tcg&password={}&user=admin",
        urlencode(&b64(ADMIN_PASSWORD))
    );
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\n\
         Accept: text/plain\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Accept-Encoding: gzip\r\n\r\n{login_body}",
        gw.addr,
        login_body.len()
    ));
    let r = conn.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let t = r.text();
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "GET /api/hostgroups?depth=shallow HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Accept: application/json\r\nConnection: close\r\nGwos-Api-Token: {t}\r\nGwos-App-Name: tcg\r\n\
         Accept-Encoding: gzip\r\n\r\n",
        gw.addr
    ));
    let r = conn.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "upstream ok");
    assert_eq!(up.last().header("x-authgate-app"), Some("tcg"));
    // A stale token: 401 (the SDK then logs in again and retries once).
    let mut conn = RawConn::open(gw.addr);
    conn.send(
        "GET /api/hostgroups HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Gwos-Api-Token: 00000000-0000-4000-8000-000000000000\r\nGwos-App-Name: tcg\r\n\r\n",
    );
    assert_eq!(conn.read_response().status, 401);
}

/// Perl GW::RAPID: Base64 user put in the form without escaping, `GWOS-API-Token` casing, an app
/// name with a space, and a token it checks against a lowercase-UUID pattern.
#[tokio::test]
async fn gw_rapid_request_shapes() {
    let (gw, up) = gateway();
    let app = "GW RAPID";
    let body = format!(
        "user={}&password={}&gwos-app-name=GW+RAPID",
        b64("admin"),
        b64(ADMIN_PASSWORD)
    );
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nUser-Agent: libwww-perl/6.67\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let r = conn.read_response();
    assert_eq!(r.status, 200);
    let t = r.text();
    assert!(
        t.len() == 36
            && t.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    conn.send(&format!(
        "GET /api/devices HTTP/1.1\r\nHost: x\r\nGWOS-API-Token: {t}\r\nGWOS-APP-NAME: {app}\r\nAccept: application/json\r\n\r\n"
    ));
    assert_eq!(conn.read_response().status, 200);
    assert_eq!(up.last().header("x-authgate-app"), Some(app));
    let body = format!("gwos-api-token={t}&gwos-app-name=GW%20RAPID");
    conn.send(&format!(
        "POST /api/auth/logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let r = conn.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "true"));
}

#[tokio::test]
async fn a_login_flood_past_the_queue_gets_503_not_a_hang() {
    let (gw, _up) = gateway_with(|c| {
        c.password_hashing.max_concurrent = nzu(1);
        c.password_hashing.max_waiting = 1;
    });
    let base = gw.url("");
    let logins = (0..20).map(|_| {
        let base = base.clone();
        tokio::spawn(async move { login(&base, "admin", ADMIN_PASSWORD, APP).await.0 })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}
