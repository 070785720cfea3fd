//! What an operator sees from outside: Prometheus metrics (parsed with a real exposition parser),
//! probes, request ids.

mod common;
use common::*;
use std::time::Duration;

/// Scrape the gateway's `/metrics`.
async fn scrape(gw: &Gateway) -> Samples {
    scrape_metrics(&format!("http://{}/metrics", gw.admin)).await
}

/// Scrape until `key` has grown by `by` since `before` (or 5 s have gone).
async fn scrape_until(gw: &Gateway, before: &Samples, key: &str, by: f64) -> Samples {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = scrape(gw).await;
        if delta(before, &now, key) >= by || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn delta(before: &Samples, after: &Samples, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_exactly_as_the_script_says() {
    let (gw, _up) = gateway();
    let base = gw.url("");
    let before = scrape(&gw).await;

    let admin = token(&base, "admin", ADMIN_PASSWORD, "obs").await; // issued 1, login success
    let reader = token(&base, "reader", READER_PASSWORD, "obs").await; // issued 2, login success
    assert_eq!(login(&base, "admin", "wrong-password", "obs").await.0, 401); // wrong_password
    assert_eq!(login(&base, "ghost", "whatever", "obs").await.0, 401); // unknown_user
    for _ in 0..3 {
        assert_eq!(get_with(&gw.url("/a"), &admin, "obs").await.status(), 200); // allowed, cache hit
    }
    assert_eq!(http().get(gw.url("/a")).send().await.unwrap().status(), 401); // missing
    assert_eq!(get_with(&gw.url("/a"), &admin, "other").await.status(), 401); // app_mismatch (hit)
    let junk = "00000000-0000-4000-8000-000000000000";
    assert_eq!(get_with(&gw.url("/a"), junk, "obs").await.status(), 401); // invalid (miss)
    assert_eq!(get_with(&gw.url("/a"), junk, "obs").await.status(), 401); // invalid (negative hit)
    let resp = http()
        .post(gw.url("/a"))
        .header("GWOS-API-TOKEN", &reader)
        .header("GWOS-APP-NAME", "obs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401); // forbidden (hit)
    let body = format!("gwos-api-token={admin}&gwos-app-name=obs");
    assert_eq!(
        text(post_form(&gw.url("/api/auth/logout"), &body).await)
            .await
            .0,
        200
    ); // revoked: logout (hit)
    assert_eq!(get_with(&gw.url("/a"), &admin, "obs").await.status(), 401); // invalid (negative hit)

    // The last request is counted in pingora's logging phase, just after its answer has gone.
    let last = r#"authgate_requests_total{route="forward",status_class="4xx"}"#;
    let after = scrape_until(&gw, &before, last, 6.0).await;
    // Each series' change over the scripted session above.
    for (series, want) in [
        (
            r#"authgate_logins_total{outcome="success",protocol="gwos"}"#,
            2.0,
        ),
        (
            r#"authgate_logins_total{outcome="wrong_password",protocol="gwos"}"#,
            1.0,
        ),
        (
            r#"authgate_logins_total{outcome="unknown_user",protocol="gwos"}"#,
            1.0,
        ),
        (r#"authgate_tokens_issued_total{kind="gwos"}"#, 2.0),
        (r#"authgate_tokens_revoked_total{reason="logout"}"#, 1.0),
        (r#"authgate_auth_decisions_total{outcome="allowed"}"#, 3.0),
        (r#"authgate_auth_decisions_total{outcome="missing"}"#, 1.0),
        (
            r#"authgate_auth_decisions_total{outcome="app_mismatch"}"#,
            1.0,
        ),
        (r#"authgate_auth_decisions_total{outcome="invalid"}"#, 3.0),
        (r#"authgate_auth_decisions_total{outcome="forbidden"}"#, 1.0),
        (r#"authgate_token_cache_lookups_total{result="hit"}"#, 6.0),
        (r#"authgate_token_cache_lookups_total{result="miss"}"#, 1.0),
        (
            r#"authgate_token_cache_lookups_total{result="negative_hit"}"#,
            2.0,
        ),
        (
            r#"authgate_requests_total{route="forward",status_class="2xx"}"#,
            3.0,
        ),
        (
            r#"authgate_requests_total{route="forward",status_class="4xx"}"#,
            6.0,
        ),
        (
            r#"authgate_requests_total{route="login",status_class="2xx"}"#,
            2.0,
        ),
        (
            r#"authgate_requests_total{route="login",status_class="4xx"}"#,
            2.0,
        ),
        (
            r#"authgate_requests_total{route="logout",status_class="2xx"}"#,
            1.0,
        ),
        (
            r#"authgate_upstream_response_seconds_count{upstream="main"}"#,
            3.0,
        ),
        (
            r#"authgate_store_operation_seconds_count{operation="insert"}"#,
            2.0,
        ),
        (
            r#"authgate_store_operation_seconds_count{operation="revoke"}"#,
            1.0,
        ),
        (
            r#"authgate_store_operation_seconds_count{operation="get"}"#,
            1.0,
        ),
    ] {
        assert_eq!(delta(&before, &after, series), want, "{series}");
    }
    assert_eq!(
        after[r#"authgate_tokens_live{}"#], 1.0,
        "two issued, one revoked"
    );
    assert_eq!(
        after[r#"authgate_password_verifications_rejected_total{}"#],
        0.0
    );
    assert_eq!(after[r#"authgate_password_verifications_waiting{}"#], 0.0);
    assert_eq!(after[r#"authgate_password_verifications_running{}"#], 0.0);
    assert_eq!(
        after[&format!(
            "authgate_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    // Low cardinality: no label value is a user, token, app name or path.
    for key in after.keys() {
        for secret in ["admin\"", "reader\"", &admin, &reader, "obs\"", "/a\""] {
            assert!(!key.contains(secret), "{key} carries {secret}");
        }
    }
}

/// What dashboards and alerts need from the first scrape: every error and outcome series at zero
/// (a rate over a series that does not exist yet is no rate), the process_* metrics, and the
/// gauges read at scrape time.
#[tokio::test]
async fn error_series_exist_at_zero_from_start_with_process_metrics_and_gauges() {
    let (gw, _up) = gateway_with(|c| route_to_dead_upstream_and_short_timeout(c, "/dead"));
    let first = scrape(&gw).await;
    for series in [
        r#"authgate_upstream_errors_total{kind="connect",upstream="dead"}"#,
        r#"authgate_upstream_errors_total{kind="5xx",upstream="main"}"#,
        r#"authgate_auth_decisions_total{outcome="invalid"}"#,
        r#"authgate_auth_decisions_total{outcome="unavailable"}"#,
        r#"authgate_store_errors_total{class="unavailable",operation="insert"}"#,
        r#"authgate_connections_refused_total{limit="per_client"}"#,
        r#"authgate_users_reloads_total{result="refused"}"#,
        r#"authgate_login_limited_total{limit="locked_out"}"#,
        r#"authgate_logins_total{outcome="wrong_password",protocol="iogates"}"#,
        r#"authgate_logins_total{outcome="store_error",protocol="gw8"}"#,
        r#"authgate_token_cache_lookups_total{result="stale_hit"}"#,
        r#"authgate_requests_in_flight{}"#,
        r#"authgate_token_cache_entries{}"#,
    ] {
        assert_eq!(first.get(series), Some(&0.0), "{series}");
    }
    let users = authgate::auth::users::UserDirectory::parse(&users_yaml()).unwrap();
    assert_eq!(first[r#"authgate_users{}"#], users.len() as f64);
    for process in ["process_resident_memory_bytes{}", "process_open_fds{}"] {
        assert!(first.get(process).is_some_and(|v| *v > 0.0), "{process}");
    }
    // In whole seconds (the prometheus crate counts it as an integer): there, if still 0.
    assert!(first.contains_key("process_cpu_seconds_total{}"));
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, "obs").await;
    assert_eq!(get_with(&gw.url("/a"), &t, "obs").await.status(), 200);
    let later = scrape(&gw).await;
    assert_eq!(later[r#"authgate_token_cache_entries{}"#], 1.0);
}

#[tokio::test]
async fn upstream_errors_are_counted_by_kind() {
    let (gw, _up) = gateway_with(|c| route_to_dead_upstream_and_short_timeout(c, "/dead"));
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, "obs").await;
    let before = scrape(&gw).await;
    assert_eq!(get_with(&gw.url("/dead"), &t, "obs").await.status(), 502);
    assert_eq!(get_with(&gw.url("/slow"), &t, "obs").await.status(), 504);
    // Requests are counted in pingora's logging phase, just after the answer has gone.
    let answered = r#"authgate_requests_total{route="forward",status_class="5xx"}"#;
    let after = scrape_until(&gw, &before, answered, 2.0).await;
    assert_eq!(
        delta(
            &before,
            &after,
            r#"authgate_upstream_errors_total{kind="connect",upstream="dead"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"authgate_upstream_errors_total{kind="timeout",upstream="main"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"authgate_requests_total{route="forward",status_class="5xx"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn readiness_follows_the_upstream_and_other_admin_paths_are_404() {
    let mut upstream = Upstream::start();
    let port = upstream.addr;
    let mut config = test_config(upstream.addr);
    config
        .upstreams
        .get_mut("main")
        .unwrap()
        .health_check_interval_ms = nz(100);
    let gw = Gateway::start(config);
    let admin = |path: &'static str| {
        let url = format!("http://{}{path}", gw.admin);
        async move { text(http().get(url).send().await.unwrap()).await }
    };
    assert_eq!(admin("/healthz").await, (200, "ok".into()));
    assert_eq!(admin("/readyz").await.0, 200);
    assert_eq!(admin("/").await.0, 404);
    assert_eq!(admin("/api/auth/login").await.0, 404);

    upstream.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin("/readyz").await;
        if status == 503 {
            assert!(
                body.starts_with("not ready: ") && !body.contains('\n'),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readiness never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admin("/healthz").await.0, 200, "alive while not ready");

    let _back = Upstream::start_on(std::net::TcpListener::bind(port).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admin("/readyz").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_travel_both_ways() {
    let (gw, up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, "obs").await;
    let send = |id: Option<&'static str>| {
        let mut req = http()
            .get(gw.url("/r"))
            .header("GWOS-API-TOKEN", &t)
            .header("GWOS-APP-NAME", "obs");
        if let Some(id) = id {
            req = req.header("X-Request-Id", id);
        }
        req.send()
    };
    let resp = send(Some("abc-123.def:9")).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123.def:9");
    assert_eq!(up.last().header("x-request-id"), Some("abc-123.def:9"));
    for bad in [
        None,
        Some("has spaces in it"),
        Some("<script>"),
        Some(&*"x".repeat(200).leak()),
    ] {
        let resp = send(bad).await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{bad:?} → {id}"
        );
        assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));
    }
    // Local answers carry it too.
    let resp = http()
        .get(gw.url("/r"))
        .header("X-Request-Id", "local-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "local-1");
}
