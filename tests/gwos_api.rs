//! The GWOS auth endpoints, row by row of `../shared/spec/gwos.md` §1 and §5, over real sockets.

mod common;
use common::*;

const APP: &str = "monitor app";

fn is_lower_uuid(t: &str) -> bool {
    let re_parts: Vec<&str> = t.split('-').collect();
    re_parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && t.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[tokio::test]
async fn login_success_returns_a_bare_lowercase_uuid_as_text() {
    let (gw, _up) = gateway();
    let resp = post_form(
        &gw.url("/api/auth/login"),
        &format!(
            "user={}&password={}&gwos-app-name=x",
            urlencode(&b64("admin")),
            urlencode(&b64(ADMIN_PASSWORD))
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let token = resp.text().await.unwrap();
    assert!(is_lower_uuid(&token), "{token:?}");
    assert_eq!(&token[14..15], "4", "UUID version 4");
    // Every login issues a new token.
    assert_ne!(
        common::token(&gw.url(""), "admin", ADMIN_PASSWORD, "x").await,
        token
    );
}

#[tokio::test]
async fn login_bad_requests_are_400_with_the_exact_body() {
    let (gw, _up) = gateway();
    let url = gw.url("/api/auth/login");
    let (u, p) = (urlencode(&b64("admin")), urlencode(&b64(ADMIN_PASSWORD)));
    for body in [
        format!("password={p}&gwos-app-name=a"),
        format!("user={u}&gwos-app-name=a"),
        format!("user={u}&password={p}"),
        format!("user={u}&password=&gwos-app-name=a"),
        format!("user=&password={p}&gwos-app-name=a"),
        format!("user={u}&user={u}&password={p}&gwos-app-name=a"),
        format!("user={u}&password={p}&gwos-app-name=%FF%FE"),
        String::new(),
    ] {
        let (status, text) = text(post_form(&url, &body).await).await;
        assert_eq!(
            (status, text.as_str()),
            (400, "Invalid username or password or gwos-app-name"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn login_failures_are_401_and_say_password() {
    let (gw, _up) = gateway();
    let base = gw.url("");
    for (user, password) in [
        ("nobody", "whatever"),
        ("admin", "wrong-password"),
        ("blocked", BLOCKED_PASSWORD),
        ("ADMIN", ADMIN_PASSWORD),
    ] {
        assert_eq!(
            login(&base, user, password, APP).await,
            (401, "Invalid username or password".to_string()),
            "{user}"
        );
    }
    // A password that is not Base64 at all is a failed login too.
    let body = format!("user={}&password=%21%21%21&gwos-app-name=a", b64("admin"));
    assert_eq!(
        text(post_form(&gw.url("/api/auth/login"), &body).await)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn failed_login_status_404_setting_matches_groundwork_7() {
    let (gw, _up) = gateway_with(|c| {
        c.gwos.failed_login_status = authgate::config::FailedLoginStatus::NotFound
    });
    let (status, body) = login(&gw.url(""), "admin", "nope", APP).await;
    assert_eq!(status, 404);
    assert!(body.contains("password"));
}

#[tokio::test]
async fn user_may_be_raw_base64_url_safe_unpadded_or_with_lost_plus() {
    let (gw, _up) = gateway();
    let url = gw.url("/api/auth/login");
    let p = urlencode(&b64(ADMIN_PASSWORD));
    // "admin" in Base64 is YWRtaW4= ; unpadded YWRtaW4 ; raw admin (GW8 clients).
    for user in ["YWRtaW4%3D", "YWRtaW4", "admin"] {
        let (status, _) =
            text(post_form(&url, &format!("user={user}&password={p}&gwos-app-name=a")).await).await;
        assert_eq!(status, 200, "{user}");
    }
    // bcrypt ($2y$) users from htpasswd files log in too.
    token(&gw.url(""), "htuser", BCRYPT_PASSWORD, "a").await;
}

#[tokio::test]
async fn unescaped_plus_in_base64_password_arrives_as_space_and_still_works() {
    let (gw, _up) = gateway();
    // A password whose Base64 holds a plus: "??>" is "Pz8+".
    let users = format!(
        "users:\n  plus:\n    password_hash: \"{}\"\n    role: admin\n",
        authgate::auth::password::hash_password("??>")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("u.yaml"), users).unwrap();
    drop(gw);
    let (gw, _up) = gateway_with(|c| c.users_file = Some(dir.path().join("u.yaml")));
    let encoded = b64("??>");
    assert!(encoded.contains('+'), "{encoded}");
    // GW::RAPID-style: the Base64 put in the form unescaped, so '+' decodes to ' '.
    let body = format!("user={}&password={}&gwos-app-name=a", b64("plus"), encoded);
    assert_eq!(
        text(post_form(&gw.url("/api/auth/login"), &body).await)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn parameters_may_come_from_the_query_and_underscore_spelling_is_accepted() {
    let (gw, _up) = gateway();
    let q = format!(
        "/api/auth/login?user={}&password={}&gwos_app_name=a",
        urlencode(&b64("admin")),
        urlencode(&b64(ADMIN_PASSWORD))
    );
    let (status, token) = text(post_form(&gw.url(&q), "").await).await;
    assert_eq!(status, 200);
    let validate = format!("gwos_api_token={token}&gwos_app_name=a");
    assert_eq!(
        text(post_form(&gw.url("/api/auth/validatetoken"), &validate).await).await,
        (200, "true".into())
    );
    // The body wins over the query.
    let url = gw.url("/api/auth/validatetoken?gwos-app-name=a");
    let body = format!("gwos-api-token={token}&gwos-app-name=other");
    assert_eq!(
        text(post_form(&url, &body).await).await,
        (200, "false".into())
    );
}

#[tokio::test]
async fn validatetoken_table() {
    let (gw, _up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let url = gw.url("/api/auth/validatetoken");
    let app = urlencode(APP);
    let cases = [
        (
            format!("gwos-app-name={app}"),
            400,
            "Invalid gwos-app-name or gwos-api-token",
        ),
        (
            format!("gwos-api-token={t}"),
            400,
            "Invalid gwos-app-name or gwos-api-token",
        ),
        (
            format!("gwos-api-token={t}&gwos-app-name={app}"),
            200,
            "true",
        ),
        (
            format!("gwos-api-token={t}&gwos-app-name=Monitor%20app"),
            200,
            "false",
        ),
        (
            format!("gwos-api-token=0b6e1d2a-1111-4222-8333-444455556666&gwos-app-name={app}"),
            200,
            "false",
        ),
        (
            format!("gwos-api-token={}&gwos-app-name={app}", "a".repeat(5000)),
            200,
            "false",
        ),
    ];
    for (body, status, expected) in cases {
        assert_eq!(
            text(post_form(&url, &body).await).await,
            (status, expected.to_string()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn logout_table_and_a_foreign_app_cannot_revoke() {
    let (gw, _up) = gateway();
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let url = gw.url("/api/auth/logout");
    let app = urlencode(APP);
    let missing = "Invalid gwos-app-name or gwos-api-token";
    assert_eq!(
        text(post_form(&url, &format!("gwos-api-token={t}")).await).await,
        (400, missing.into())
    );
    assert_eq!(
        text(post_form(&url, &format!("gwos-app-name={app}")).await).await,
        (400, missing.into())
    );
    // Another app name: 404 and the token is NOT revoked.
    assert_eq!(
        text(post_form(&url, &format!("gwos-api-token={t}&gwos-app-name=other")).await).await,
        (404, "Invalid gwos-api-token".into())
    );
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 200);
    // Success: `true`, and the token is dead on the very next request.
    let resp = http()
        .post(&url)
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("gwos-api-token={t}&gwos-app-name={app}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; charset=utf-8",
        "never 406, always text"
    );
    assert_eq!(text(resp).await, (200, "true".into()));
    assert_eq!(get_with(&gw.url("/x"), &t, APP).await.status(), 401);
    // Unknown now.
    assert_eq!(
        text(post_form(&url, &format!("gwos-api-token={t}&gwos-app-name={app}")).await).await,
        (404, "Invalid gwos-api-token".into())
    );
}

/// GW8's login as the Go SDK sends it: JSON, the app name in a header.
async fn gw8_login(base: &str, name: &str, password: &str) -> reqwest::Response {
    http()
        .put(format!("{base}/api/users/authenticatePassword"))
        .header("GWOS-APP-NAME", "tcg")
        .json(&serde_json::json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn gw8_authenticate_password_json_login() {
    let (gw, up) = gateway();
    let url = gw.url("/api/users/authenticatePassword");
    // The Go SDK and telegraf send the password as configured, not Base64 (spec §5).
    let body = serde_json::json!({ "name": "admin", "password": ADMIN_PASSWORD }).to_string();
    let resp = http()
        .put(&url)
        .header("GWOS-APP-NAME", "tcg")
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.unwrap();
    assert!(
        raw.starts_with(r#"{"name":"admin","accessToken":""#),
        "{raw}"
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let t = v["accessToken"].as_str().unwrap();
    assert!(is_lower_uuid(t));
    assert_eq!(get_with(&gw.url("/hosts"), t, "tcg").await.status(), 200);
    assert_eq!(up.last().header("x-authgate-app"), Some("tcg"));

    // A wrong password, the right one in Base64 (no second guess), a Base64 user name: 401.
    for (name, password) in [
        ("admin", "wrong".to_string()),
        ("admin", b64(ADMIN_PASSWORD)),
        (&b64("admin"), ADMIN_PASSWORD.to_string()),
    ] {
        let resp = gw8_login(&gw.url(""), name, &password).await;
        let (status, text) = text(resp).await;
        assert_eq!(status, 401, "{name} {password}");
        assert!(text.contains("password"));
    }
    for (app, body) in [
        (None, body.as_str()),
        (Some("tcg"), "{not json"),
        (Some("tcg"), r#"{"name":"admin"}"#),
    ] {
        let mut req = http().put(&url).body(body.to_string());
        if let Some(app) = app {
            req = req.header("GWOS-APP-NAME", app);
        }
        assert_eq!(req.send().await.unwrap().status(), 400, "{app:?} {body}");
    }
}

#[tokio::test]
async fn wrong_methods_and_oversized_bodies() {
    let (gw, up) = gateway();
    let resp = http().get(gw.url("/api/auth/login")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let big = format!("user=x&password={}&gwos-app-name=a", "A".repeat(64 * 1024));
    let (status, _) = text(post_form(&gw.url("/api/auth/login"), &big).await).await;
    assert_eq!(status, 413);
    assert_eq!(up.count(), 0, "auth endpoints never reach the upstream");
}

#[tokio::test]
async fn jasypt_mode_end_to_end() {
    // The key as an operator pastes it from foundation.properties, in a file (no environment
    // variable: tests run in parallel threads).
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jasypt-mainkey");
    std::fs::write(&key, "3PHpHhaYzuc=R3IwdW5kVzByazEyMw==\n").unwrap();
    let (gw, _up) = gateway_with(|c| {
        c.gwos.encryption.enabled = true;
        c.gwos.encryption.main_key_file = Some(key.clone());
    });
    let url = gw.url("/api/auth/login");
    let ok = format!(
        "user={}&password=7UZZVvnLbuRNk12Yk5H33zeYdWQpnA7j9shir7QfJgwh&gwos-app-name=a",
        b64("RESTAPIACCESS")
    );
    let (status, t) = text(post_form(&url, &ok).await).await;
    assert_eq!(status, 200, "{t}");
    assert!(is_lower_uuid(&t));
    // GW8 sends the ciphertext as its password too, and only that.
    let base = gw.url("");
    let ciphertext = "7UZZVvnLbuRNk12Yk5H33zeYdWQpnA7j9shir7QfJgwh";
    let resp = gw8_login(&base, "RESTAPIACCESS", ciphertext).await;
    assert_eq!(resp.status(), 200);
    let resp = gw8_login(&base, "RESTAPIACCESS", RESTAPI_PASSWORD).await;
    assert_eq!(resp.status(), 401, "encrypted mode takes only ciphertexts");
    // The reader vector decrypts to another password; garbage does not decrypt: both 401.
    for pw in [
        "5CFothtTmW6VX3L85iXDC8b8UhFNFn6W7XMkDtaMZhFmP7tNg3HFR9t",
        "not-a-ciphertext",
        &b64(RESTAPI_PASSWORD),
    ] {
        let body = format!(
            "user={}&password={pw}&gwos-app-name=a",
            b64("RESTAPIACCESS")
        );
        assert_eq!(
            text(post_form(&url, &body).await).await,
            (401, "Invalid username or password".into()),
            "{pw}"
        );
    }
}

/// One verdict per token: once its user is no longer Active, validatetoken says `false`, as
/// every proxied request says 401.
#[tokio::test]
async fn validatetoken_and_the_proxy_agree_on_a_deactivated_user() {
    let (gw, _up, _dir, file) = gateway_with_editable_users();
    let t = token(&gw.url(""), "reader", READER_PASSWORD, "a").await;
    let validate = format!("gwos-api-token={t}&gwos-app-name=a");
    let url = gw.url("/api/auth/validatetoken");
    assert_eq!(
        text(post_form(&url, &validate).await).await,
        (200, "true".into())
    );
    let deactivated = users_yaml().replace(
        "    role: reader\n",
        "    role: reader\n    status: Inactive\n",
    );
    assert_ne!(deactivated, users_yaml());
    std::fs::write(&file, deactivated).unwrap();
    let hosts = gw.url("/api/hosts");
    until_refused("the reload never came", || status_with(&hosts, &t, "a")).await;
    assert_eq!(
        text(post_form(&url, &validate).await).await,
        (200, "false".into())
    );
}

/// A new password (the usual reason: the old one leaked) ends the sessions the old one opened;
/// other users keep theirs.
#[tokio::test]
async fn a_password_change_revokes_that_user_s_tokens() {
    let (gw, _up, _dir, file) = gateway_with_editable_users();
    let base = gw.url("");
    let reader = token(&base, "reader", READER_PASSWORD, "a").await;
    let admin = token(&base, "admin", ADMIN_PASSWORD, "a").await;
    let yaml = users_yaml();
    let field = "  reader:\n    password_hash: \"";
    let start = yaml.find(field).unwrap() + field.len();
    let end = start + yaml[start..].find('"').unwrap();
    let new_password = "a-new-reader-pw";
    let changed = format!(
        "{}{}{}",
        &yaml[..start],
        authgate::auth::password::hash_password(new_password),
        &yaml[end..]
    );
    std::fs::write(&file, changed).unwrap();
    let hosts = gw.url("/api/hosts");
    until_refused("the old session still works", || {
        status_with(&hosts, &reader, "a")
    })
    .await;
    assert_eq!(
        get_with(&gw.url("/api/hosts"), &admin, "a").await.status(),
        200
    );
    token(&base, "reader", new_password, "a").await;
    assert_eq!(login(&base, "reader", READER_PASSWORD, "a").await.0, 401);
}
