//! Password guessing, bounded, on every credential endpoint. The client addresses come from a
//! trusted proxy's `X-Forwarded-For`, so one test can be several clients.

mod common;
use common::*;
use std::time::Duration;

const APP: &str = "limits";

fn limited(
    adjust: impl FnOnce(&mut authgate::config::Config),
) -> (
    Gateway,
    Upstream,
    std::sync::Arc<authgate::clock::ManualClock>,
) {
    gateway_on_clock(|c| {
        c.forwarding.trusted_proxies = vec!["127.0.0.1".into()];
        adjust(c);
    })
}

/// A GWOS login from `client`.
async fn login_from(gw: &Gateway, client: &str, user: &str, password: &str) -> reqwest::Response {
    http()
        .post(gw.url("/api/auth/login"))
        .header("X-Forwarded-For", client)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user={}&password={}&gwos-app-name={APP}",
            urlencode(&b64(user)),
            urlencode(&b64(password))
        ))
        .send()
        .await
        .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn guessing_a_password_locks_out_that_address_only_and_doubles() {
    let (gw, _up, clock) = limited(|c| {
        c.login_limits.lockout_after_failures = nz32(3);
        c.login_limits.lockout_seconds = nz(60);
    });
    let attacker = "203.0.113.7";
    for _ in 0..3 {
        let resp = login_from(&gw, attacker, "admin", "guess").await;
        assert_eq!(resp.status(), 401);
    }
    // Locked out: even the right password is not checked.
    let resp = login_from(&gw, attacker, "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(retry_after(&resp), 60);
    assert_eq!(text(resp).await.1, "Too many login attempts, retry later");
    // GW8's login is the same guard.
    let resp = http()
        .put(gw.url("/api/users/authenticatePassword"))
        .header("X-Forwarded-For", attacker)
        .header("GWOS-APP-NAME", APP)
        .json(&serde_json::json!({"name": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);

    // The real user, from another address, is not locked out.
    let resp = login_from(&gw, "198.51.100.1", "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 200);

    // After the lockout, one more failure locks the address out twice as long.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        login_from(&gw, attacker, "admin", "guess").await.status(),
        401
    );
    let resp = login_from(&gw, attacker, "admin", "guess").await;
    assert_eq!((resp.status().as_u16(), retry_after(&resp)), (429, 120));

    let metrics = scrape_metrics(&format!("http://{}/metrics", gw.admin)).await;
    assert!(metrics[r#"authgate_login_limited_total{limit="locked_out"}"#] >= 3.0);
    assert!(metrics[r#"authgate_logins_total{outcome="locked_out",protocol="gwos"}"#] >= 2.0);
}

#[tokio::test]
async fn iogates_password_logins_are_guarded_in_their_own_dialect() {
    let (gw, _up, _clock) = limited(|c| c.login_limits.lockout_after_failures = nz32(2));
    let attempt = |password: &'static str| {
        http()
            .post(gw.url("/api/authtoken"))
            .header("X-Forwarded-For", "203.0.113.8")
            .json(&serde_json::json!({"username": "uploadappadmin", "password": password}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(attempt("guess").await.unwrap().status(), 401);
    }
    let resp = attempt(IOGATES_PASSWORD).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(retry_after(&resp), 1);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Too many login attempts, retry later");
}

#[tokio::test]
async fn a_flood_from_one_address_is_rate_limited_while_others_log_in() {
    let (gw, _up, _clock) = limited(|c| c.login_limits.per_client_per_minute = nz32(5));
    let flood = "203.0.113.9";
    // Different names each time: no lockout, only the address's rate.
    for i in 0..5 {
        let resp = login_from(&gw, flood, &format!("nobody{i}"), "guess").await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login_from(&gw, flood, "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 429);
    assert!(retry_after(&resp) >= 1);
    let resp = login_from(&gw, "198.51.100.2", "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 200, "another address is not held back");
    let metrics = scrape_metrics(&format!("http://{}/metrics", gw.admin)).await;
    assert_eq!(
        metrics[r#"authgate_login_limited_total{limit="limited_client"}"#],
        1.0
    );
}

#[tokio::test]
async fn guessing_share_urls_locks_out_that_address_only() {
    let (gw, _up, _clock) = limited(|c| c.login_limits.lockout_after_failures = nz32(3));
    let share_login = |client: &'static str, url: String| {
        http()
            .post(gw.url("/api/authtoken"))
            .header("X-Forwarded-For", client)
            .json(&serde_json::json!({"url": url, "deviceId": 1}))
            .send()
    };
    let guesser = "203.0.113.10";
    for i in 0..3 {
        let guess = format!("http://127.0.0.1/show/16/5989522a1b0a6/{i:032x}/dir/272/272/0/0/0");
        assert_eq!(share_login(guesser, guess).await.unwrap().status(), 401);
    }
    let resp = share_login(guesser, SHARE_URL.into()).await.unwrap();
    assert_eq!(resp.status(), 429, "locked out, even with the right URL");
    assert!(retry_after(&resp) >= 1);
    let resp = share_login("198.51.100.3", SHARE_URL.into()).await.unwrap();
    assert_eq!(resp.status(), 200, "another address logs in with the share");
}

/// A refusal is answered late (`refusal_delay_ms`): a client that retries at once, ignoring
/// Retry-After, gets one refusal per delay on each connection instead of tens of thousands a
/// second (1.8 million in 30 s from 100 connections, before). Other clients are not delayed.
#[tokio::test]
async fn refusals_are_answered_late() {
    let (gw, _up, _clock) = limited(|c| {
        c.login_limits.lockout_after_failures = nz32(1);
        c.login_limits.lockout_seconds = nz(60);
        c.login_limits.refusal_delay_ms = 300;
    });
    let attacker = "203.0.113.9";
    assert_eq!(
        login_from(&gw, attacker, "admin", "guess").await.status(),
        401
    );
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(
            login_from(&gw, attacker, "admin", "guess").await.status(),
            429
        );
    }
    // Each waits from half to one and a half times the delay.
    assert!(started.elapsed() >= Duration::from_millis(450));
    let other = std::time::Instant::now();
    let resp = login_from(&gw, "198.51.100.1", "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 200);
    assert!(other.elapsed() < Duration::from_millis(300), "not delayed");
}
