//! The ioGates auth-token protocol (`../shared/spec/iogates.md`) and share-scoped forwarding.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

async fn call(method: &str, url: &str, token: &str) -> reqwest::Response {
    http()
        .request(method.parse().unwrap(), url)
        .header("token", token)
        .body("data")
        .send()
        .await
        .unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test]
async fn real_client_share_login_then_files_listing() {
    let (gw, up) = gateway();
    let resp = share_login(&gw.url(""), SHARE_URL, Value::from(DEVICE)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let raw = resp.text().await.unwrap();
    assert!(raw.starts_with(r#"{"token":""#), "{raw}");
    let v: Value = serde_json::from_str(&raw).unwrap();
    // Parsed, not string-matched: exact field names, order and JSON types.
    let mut top = keys(&v);
    top.sort();
    assert_eq!(
        top,
        ["available_storage", "max_file_size", "profile", "token"]
    );
    let profile = &v["profile"];
    let mut names = keys(profile);
    names.sort();
    assert_eq!(
        names,
        [
            "accountname",
            "address",
            "email",
            "expires",
            "id",
            "logo",
            "mobile",
            "realname",
            "status",
            "username"
        ]
    );
    assert_eq!(profile["id"], "s272");
    assert_eq!(profile["username"], "uploadappadmin");
    assert_eq!(profile["realname"], "Upload App");
    assert_eq!(profile["accountname"], "Upload App Account");
    assert_eq!(profile["email"], "");
    assert!(
        profile["address"].is_null() && profile["mobile"].is_null() && profile["expires"].is_null()
    );
    assert_eq!(profile["status"], "Active");
    assert_eq!(profile["logo"], "");
    assert!(v["max_file_size"].is_u64() && v["max_file_size"] == 0);
    assert!(v["available_storage"].is_u64() && v["available_storage"] == 29_301_996_265u64);
    let token = v["token"].as_str().unwrap();
    assert!(
        token.len() >= 22
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );

    let resp = call("GET", &gw.url("/api/files"), token).await;
    assert_eq!(text(resp).await, (200, "upstream ok".into()));
    let r = up.last();
    assert_eq!(r.header("x-authgate-user"), Some("uploadappadmin"));
    assert_eq!(r.header("x-authgate-role"), Some("share"));
    assert_eq!(r.header("x-authgate-share"), Some("s272"));
    assert_eq!(r.header("token"), None, "the credential is not forwarded");
}

#[tokio::test]
async fn numeric_device_form_body_and_password_logins() {
    let (gw, up) = gateway();
    let base = gw.url("");
    let resp = share_login(&base, SHARE_URL, Value::from(1_700_000_000_123u64)).await;
    assert_eq!(resp.status(), 200);
    // The number is the device id: the same number again retires that device's first token.
    let first: Value = resp.json().await.unwrap();
    let resp = share_login(&base, SHARE_URL, Value::from(1_700_000_000_123u64)).await;
    let second: Value = resp.json().await.unwrap();
    let first_token = first["token"].as_str().unwrap();
    assert_eq!(
        call("GET", &gw.url("/api/files"), first_token)
            .await
            .status(),
        401
    );
    assert_eq!(
        call(
            "GET",
            &gw.url("/api/files"),
            second["token"].as_str().unwrap()
        )
        .await
        .status(),
        200
    );
    let form = format!("url={}&deviceId=42", urlencode("HTTPS://Other.Host/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0/"));
    let resp = post_form(&gw.url("/api/authtoken"), &form).await;
    assert_eq!(
        resp.status(),
        200,
        "form body, other scheme/host/case/trailing slash"
    );
    let body = serde_json::json!({ "username": "uploadappadmin", "password": IOGATES_PASSWORD, "url": null, "deviceId": DEVICE });
    let resp = http()
        .post(gw.url("/api/authtoken"))
        .header("token", "")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["profile"]["id"], "uploadappadmin");
    let t = v["token"].as_str().unwrap();
    // A user/password token has the account's access, whatever header carries it.
    let resp = http()
        .delete(gw.url("/anything/at/all"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-authgate-role"), Some("admin"));
    assert_eq!(up.last().header("authorization"), None);
    let resp = get_with(&gw.url("/x"), t, "").await; // GWOS-API-TOKEN header, no app name needed
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn authtoken_errors_are_json_messages_with_the_spec_statuses() {
    let (gw, up) = gateway();
    let url = gw.url("/api/authtoken");
    let post = |body: String| {
        http()
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        ("{\"url\":", 400),
        ("{}", 400),
        (r#"{"username":"uploadappadmin"}"#, 400),
        (
            r#"{"username":"uploadappadmin","password":"x","url":"http://h/show/1"}"#,
            400,
        ),
        (r#"{"url":"https://share.example.com/show/19/old"}"#, 401),
        (
            r#"{"url":"https://share.example.com/show/20/inactive"}"#,
            401,
        ),
        (r#"{"url":"https://share.example.com/show/nope"}"#, 401),
        (r#"{"username":"uploadappadmin","password":"wrong"}"#, 401),
        (r#"{"username":"gone","password":"iogates-secret-pw"}"#, 401),
        (r#"{"username":"nobody","password":"x"}"#, 401),
    ];
    for (body, status) in cases {
        let resp = post(body.to_string()).await.unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["message"].is_string(), "{body}: {v}");
        assert_eq!(keys(&v), ["message"]);
    }
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn reauthentication_retires_the_device_s_previous_token() {
    let (gw, _up) = gateway();
    let base = gw.url("");
    let first = share_token(&base, SHARE_URL, DEVICE).await;
    let second = share_token(&base, SHARE_URL, DEVICE).await;
    let other_device = share_token(&base, SHARE_URL, "another-device").await;
    assert_ne!(first, second);
    assert_eq!(
        call("GET", &gw.url("/api/files"), &first).await.status(),
        401
    );
    assert_eq!(
        call("GET", &gw.url("/api/files"), &second).await.status(),
        200
    );
    assert_eq!(
        call("GET", &gw.url("/api/files"), &other_device)
            .await
            .status(),
        200
    );
    // Two holders of the share whose clients send no deviceId are two clients: neither token
    // retires the other.
    let mut anonymous = Vec::new();
    for _ in 0..2 {
        let resp = share_login(&base, SHARE_URL, Value::Null).await;
        let v: Value = resp.json().await.unwrap();
        anonymous.push(v["token"].as_str().unwrap().to_string());
    }
    for t in &anonymous {
        assert_eq!(call("GET", &gw.url("/api/files"), t).await.status(), 200);
    }
    assert_eq!(
        call("GET", &gw.url("/api/files"), &second).await.status(),
        200
    );
}

#[tokio::test]
async fn share_scope_cannot_be_escaped_by_path_tricks() {
    let (gw, up) = gateway();
    let t = share_token(&gw.url(""), SHARE_URL, DEVICE).await;
    for path in [
        "/api/files",
        "/api/files/272/a.mov",
        "//api//files/x",
        "/download/272/f?x=1",
    ] {
        assert_eq!(call("GET", &gw.url(path), &t).await.status(), 200, "{path}");
    }
    let before = up.count();
    for path in [
        "/api/filesx",
        "/api/files/../admin",
        "/api/files/%2e%2e/%2e%2e/admin",
        "/api/files\\..\\admin",
        "/API/files",
        "/download/273",
        "/",
    ] {
        let resp = call("GET", &gw.url(path), &t).await;
        assert_eq!(resp.status(), 403, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["message"].is_string());
    }
    // An encoded slash is ambiguous before it is out of scope (tests/path_integrity.rs has more).
    let resp = call("GET", &gw.url("/api/files/..%2fadmin"), &t).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        up.count(),
        before,
        "nothing out of scope reached the upstream"
    );
}

#[tokio::test]
async fn share_permissions_decide_the_methods() {
    let (gw, up) = gateway();
    let base = gw.url("");
    let download = share_token(&base, SHARE_URL, DEVICE).await;
    let upload = share_token(&base, "https://share.example.com/show/17/upload", DEVICE).await;
    let both = share_token(&base, "https://share.example.com/show/18/rw", DEVICE).await;
    let matrix = [
        (
            &download,
            "/api/files/1",
            [
                ("GET", 200),
                ("HEAD", 200),
                ("POST", 403),
                ("PUT", 403),
                ("PATCH", 403),
                ("DELETE", 403),
            ],
        ),
        (
            &upload,
            "/upload/17/f",
            [
                ("GET", 403),
                ("HEAD", 403),
                ("POST", 200),
                ("PUT", 200),
                ("PATCH", 200),
                ("DELETE", 403),
            ],
        ),
        (
            &both,
            "/api/files/1",
            [
                ("GET", 200),
                ("HEAD", 200),
                ("POST", 200),
                ("PUT", 200),
                ("PATCH", 200),
                ("DELETE", 403),
            ],
        ),
    ];
    for (token, path, rows) in matrix {
        for (method, status) in rows {
            let before = up.count();
            assert_eq!(
                call(method, &gw.url(path), token).await.status(),
                status,
                "{method} {path}"
            );
            assert_eq!(
                up.count() - before,
                usize::from(status == 200),
                "{method} {path}"
            );
        }
    }
    // Range requests and 206 pass through untouched for a share that may download.
    let resp = http()
        .get(gw.url("/api/files/f"))
        .header("token", &download)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn missing_and_invalid_iogates_tokens_get_401_with_www_authenticate() {
    let (gw, _up) = gateway();
    for resp in [
        http()
            .get(gw.url("/api/files"))
            .header("token", "")
            .send()
            .await
            .unwrap(),
        http()
            .get(gw.url("/api/files"))
            .header("token", "nope")
            .send()
            .await
            .unwrap(),
        http()
            .get(gw.url("/api/files"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let v: Value = resp.json().await.unwrap();
        assert!(v["message"].is_string());
    }
    // A GWOS token keeps its app-name rule whatever header carries it.
    let t = token(&gw.url(""), "admin", ADMIN_PASSWORD, "app").await;
    assert_eq!(
        http()
            .get(gw.url("/x"))
            .header("token", &t)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let resp = http()
        .get(gw.url("/x"))
        .bearer_auth(&t)
        .header("GWOS-APP-NAME", "app")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http()
        .get(gw.url("/x"))
        .bearer_auth(&t)
        .header("GWOS-APP-NAME", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn revocation_of_one_token_and_of_a_whole_share() {
    let (gw, _up) = gateway();
    let base = gw.url("");
    let a = share_token(&base, SHARE_URL, "device-a").await;
    let b = share_token(&base, SHARE_URL, "device-b").await;
    let other = share_token(&base, "https://share.example.com/show/18/rw", "device-a").await;
    // The holder retires its own token.
    let resp = http()
        .delete(gw.url("/api/authtoken"))
        .header("token", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(call("GET", &gw.url("/api/files"), &a).await.status(), 401);
    assert_eq!(call("GET", &gw.url("/api/files"), &b).await.status(), 200);
    // An admin retires every token of a share; a reader may not.
    let reader = token(&base, "reader", READER_PASSWORD, "ops").await;
    let revoke = |t: String, app: &'static str| {
        http()
            .post(gw.url("/api/authgate/revoke"))
            .header("GWOS-API-TOKEN", t)
            .header("GWOS-APP-NAME", app)
            .json(&serde_json::json!({ "share": SHARE_URL }))
            .send()
    };
    assert_eq!(revoke(reader, "ops").await.unwrap().status(), 403);
    let admin = token(&base, "admin", ADMIN_PASSWORD, "ops").await;
    let resp = revoke(admin, "ops").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(call("GET", &gw.url("/api/files"), &b).await.status(), 401);
    assert_eq!(
        call("GET", &gw.url("/api/files"), &other).await.status(),
        200,
        "other shares untouched"
    );
}

#[tokio::test]
async fn removing_a_share_from_the_users_file_revokes_its_tokens() {
    let (gw, _up, _dir, file) = gateway_with_editable_users();
    let base = gw.url("");
    let t = share_token(&base, SHARE_URL, DEVICE).await;
    let rw = share_token(&base, "https://share.example.com/show/18/rw", DEVICE).await;
    assert_eq!(call("GET", &gw.url("/api/files"), &t).await.status(), 200);
    let without = users_yaml()
        .replace("  - id: s272\n", "  - id: s272-renamed\n")
        .replace(
            "show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0",
            "show/99/replaced",
        );
    std::fs::write(&file, without).unwrap();
    until_refused("the removed share's token still works", || async {
        call("GET", &gw.url("/api/files"), &t)
            .await
            .status()
            .as_u16()
    })
    .await;
    assert_eq!(call("GET", &gw.url("/api/files"), &rw).await.status(), 200);
    assert_eq!(
        share_login(&base, SHARE_URL, Value::from(DEVICE))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_share_that_expires_ends_its_tokens_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.yaml");
    let soon =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600));
    let yaml = format!(
        "{}  - id: s-soon\n    url: https://share.example.com/show/21/soon\n    owner: uploadappadmin\n    expires: \"{soon}\"\n    permissions: {{master: true}}\n    paths: [/api/files]\n",
        users_yaml()
    );
    std::fs::write(&file, yaml).unwrap();
    let (gw, _up, clock) = gateway_on_clock(|c| c.users_file = Some(file.clone()));
    let t = share_token(
        &gw.url(""),
        "https://share.example.com/show/21/soon",
        DEVICE,
    )
    .await;
    assert_eq!(call("GET", &gw.url("/api/files"), &t).await.status(), 200);
    clock.advance(Duration::from_secs(3601));
    assert_eq!(call("GET", &gw.url("/api/files"), &t).await.status(), 401);
}

#[tokio::test]
async fn iogates_tokens_end_at_their_maximum_lifetime() {
    let (gw, _up, clock) = gateway_on_clock(|c| c.iogates.max_lifetime_seconds = Some(nz(3600)));
    let t = share_token(&gw.url(""), SHARE_URL, DEVICE).await;
    clock.advance(Duration::from_secs(3599));
    assert_eq!(call("GET", &gw.url("/api/files"), &t).await.status(), 200);
    clock.advance(Duration::from_secs(1));
    assert_eq!(call("GET", &gw.url("/api/files"), &t).await.status(), 401);
}
