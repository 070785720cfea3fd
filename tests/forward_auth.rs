//! The forward-auth decision endpoint (`/authgate/verify`): asked directly in each proxy's form,
//! and behind a real nginx (`auth_request`) and a real Caddy (`forward_auth`) in front of a
//! recording upstream.

mod common;
use common::*;

const APP: &str = "fwd";

/// A gateway whose decision endpoint answers 127.0.0.1 (the proxies' address here).
fn trusting_gateway() -> (Gateway, Upstream) {
    gateway_with(|c| {
        c.forwarding.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.public_paths = vec!["/public".into()];
    })
}

/// One request sent raw to `addr` (the path exactly as written), and its response.
fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut conn = RawConn::open(addr);
    conn.send(&request);
    conn.read_response()
}

/// Ask the decision endpoint at `path` with these headers.
async fn ask(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    raw(gw.addr, method, path, headers)
}

#[tokio::test]
async fn each_proxy_form_gets_the_decision_forwarding_would_make() {
    let (gw, upstream) = trusting_gateway();
    let admin = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let reader = token(&gw.url(""), "reader", READER_PASSWORD, APP).await;
    let as_admin = [("GWOS-API-TOKEN", admin.as_str()), ("GWOS-APP-NAME", APP)];
    let as_reader = [("GWOS-API-TOKEN", reader.as_str()), ("GWOS-APP-NAME", APP)];
    let forms: [&[(&str, &str)]; 4] = [
        &[
            ("X-Original-URI", "/api/hosts?depth=1"),
            ("X-Original-Method", "DELETE"),
        ],
        &[
            ("X-Original-URL", "https://gw.example/api/hosts?depth=1"),
            ("X-Original-Method", "DELETE"),
        ],
        &[
            ("X-Forwarded-Uri", "/api/hosts?depth=1"),
            ("X-Forwarded-Method", "DELETE"),
            ("X-Forwarded-Host", "gw.example"),
        ],
        &[],
    ];
    for form in forms {
        // Envoy's form: the original path after the prefix, the method kept.
        let (method, path) = if form.is_empty() {
            ("DELETE", "/authgate/verify/api/hosts?depth=1")
        } else {
            ("GET", "/authgate/verify")
        };
        let as_admin: Vec<(&str, &str)> = form.iter().chain(&as_admin).copied().collect();
        let as_reader: Vec<(&str, &str)> = form.iter().chain(&as_reader).copied().collect();
        let allowed = ask(&gw, method, path, &as_admin).await;
        assert_eq!(allowed.status, 200, "{form:?}: {}", allowed.text());
        assert_eq!(allowed.header("x-authgate-user"), Some("admin"));
        assert_eq!(allowed.header("x-authgate-role"), Some("admin"));
        assert_eq!(allowed.header("x-authgate-app"), Some(APP));
        assert_eq!(allowed.header("cache-control"), Some("no-store"));
        let missing = ask(&gw, method, path, form).await;
        assert_eq!(missing.status, 401, "{form:?}");
        assert!(missing.header("www-authenticate").is_some());
        assert_eq!(missing.header("x-authgate-user"), None);
        assert_eq!(
            allowed.header("x-authgate-share"),
            Some(""),
            "every one, empty if not"
        );
        // A reader may read, not delete: the original method decides, not the endpoint's own.
        let reader_delete = ask(&gw, method, path, &as_reader).await;
        assert_eq!(reader_delete.status, 403, "{form:?}");
    }
    let public = ask(
        &gw,
        "GET",
        "/authgate/verify",
        &[
            ("X-Original-URI", "/public/page"),
            ("X-Original-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(public.status, 200);
    assert_eq!(
        public.header("x-authgate-user"),
        Some(""),
        "public: no identity"
    );
    assert_eq!(upstream.count(), 0, "a decision forwards nothing");
}

/// ioGates transfers behind an ingress: the token in the original URL (path or query) decides,
/// with the route's permission, in the nginx and the Envoy forms alike.
#[tokio::test]
async fn url_tokens_decide_in_the_original_url() {
    let (gw, upstream) = gateway_with(|c| {
        c.forwarding.trusted_proxies = vec!["127.0.0.1/32".into()];
        let route = |path: &str, query: Option<&str>, permission: &str| {
            serde_norway::from_str(&format!(
                "{{path: \"{path}\", query: {}, permission: {permission}}}",
                query.unwrap_or("null")
            ))
            .unwrap()
        };
        c.url_tokens = vec![
            route("/upload/17/plupload.php", Some("token"), "upload"),
            route("/upload/17/{token}/**", None, "upload"),
            route("/download/272/{token}", None, "download"),
        ];
    });
    let base = gw.url("");
    let downloader = share_token(&base, SHARE_URL, DEVICE).await;
    let uploader = share_token(&base, "https://share.example.com/show/17/upload", DEVICE).await;
    let nginx = |method: &'static str, uri: String| {
        move |extra: &[(&str, &str)]| {
            let mut headers = vec![("X-Original-Method", method), ("X-Original-URI", &uri)];
            headers.extend_from_slice(extra);
            raw(gw.addr, "GET", "/authgate/verify", &headers)
        }
    };
    // The download share downloads: 200 with its identity, in both forms.
    let allowed = nginx("GET", format!("/download/272/{downloader}"))(&[]);
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.header("x-authgate-share"), Some("s272"));
    let envoy = raw(
        gw.addr,
        "GET",
        &format!("/authgate/verify/download/272/{downloader}"),
        &[],
    );
    assert_eq!(envoy.status, 200, "{}", envoy.text());
    assert_eq!(envoy.header("x-authgate-share"), Some("s272"));
    // The upload share: a tus HEAD needs upload (not a download permission), and so does
    // plupload's query form; it may not download.
    let head = nginx("HEAD", format!("/upload/17/{uploader}/abc"))(&[]);
    assert_eq!(head.status, 200, "{}", head.text());
    assert_eq!(head.header("x-authgate-share"), Some("s-upload"));
    let plupload = nginx(
        "POST",
        format!("/upload/17/plupload.php?name=a&token={uploader}"),
    )(&[]);
    assert_eq!(plupload.status, 200, "{}", plupload.text());
    // An empty query token is none: a header token decides, with the route's permission.
    let empty = nginx("POST", "/upload/17/plupload.php?token=".into())(&[("token", &uploader)]);
    assert_eq!(empty.status, 200, "{}", empty.text());
    let wrong = nginx("GET", format!("/download/272/{uploader}"))(&[]);
    assert_eq!(wrong.status, 403);
    let no_upload = nginx("PATCH", format!("/upload/17/{downloader}/abc"))(&[]);
    assert_eq!(no_upload.status, 403);
    // Refusals: unknown 401, a differing header token 400, a repeated query token 400.
    let unknown = nginx("GET", format!("/download/272/{}", "A".repeat(43)))(&[]);
    assert_eq!(unknown.status, 401);
    let differs = nginx("GET", format!("/download/272/{downloader}"))(&[("token", &uploader)]);
    assert_eq!(differs.status, 400, "{}", differs.text());
    assert!(differs.text().contains("differ"));
    let repeated = nginx(
        "POST",
        format!("/upload/17/plupload.php?token={uploader}&token={uploader}"),
    )(&[]);
    assert_eq!(repeated.status, 400);
    assert_eq!(upstream.count(), 0, "a decision forwards nothing");
}

#[tokio::test]
async fn what_cannot_be_read_one_way_is_400_and_untrusted_peers_get_no_decision() {
    let (gw, upstream) = trusting_gateway();
    let admin = token(&gw.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let creds = [("GWOS-API-TOKEN", admin.as_str()), ("GWOS-APP-NAME", APP)];
    let cases: [(&str, &[(&str, &str)]); 6] = [
        ("/authgate/verify", &[("X-Original-Method", "GET")]),
        ("/authgate/verify", &[("X-Original-URI", "/api/hosts")]),
        // nginx forwards the original as sent: decided as /admin, read upstream as another path.
        (
            "/authgate/verify",
            &[
                ("X-Original-URI", "/public/../admin"),
                ("X-Original-Method", "GET"),
            ],
        ),
        (
            "/authgate/verify",
            &[
                ("X-Original-URI", "/public/x"),
                ("X-Forwarded-Uri", "/api/hosts"),
                ("X-Original-Method", "GET"),
            ],
        ),
        (
            "/authgate/verify",
            &[
                ("X-Original-URI", "/public/x"),
                ("X-Original-URI", "/api/hosts"),
                ("X-Original-Method", "GET"),
            ],
        ),
        ("/authgate/verify/public/%2e%2e/api/hosts", &[]),
    ];
    for (path, form) in cases {
        let headers: Vec<(&str, &str)> = form.iter().chain(creds.iter()).copied().collect();
        let r = ask(&gw, "GET", path, &headers).await;
        assert_eq!(r.status, 400, "{path} {form:?}: {}", r.text());
        assert!(r.text().starts_with("Bad Request: "), "{}", r.text());
    }

    // The default: no trusted proxy, so nobody gets a decision.
    let (untrusting, _) = gateway_with(|_| {});
    let t = token(&untrusting.url(""), "admin", ADMIN_PASSWORD, APP).await;
    let r = ask(
        &untrusting,
        "GET",
        "/authgate/verify",
        &[
            ("X-Original-URI", "/api/hosts"),
            ("X-Original-Method", "GET"),
            ("GWOS-API-TOKEN", &t),
            ("GWOS-APP-NAME", APP),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-authgate-user"), None);
    // Switched off, the path is an ordinary one: forwarded if allowed.
    let (off, off_upstream) = gateway_with(|c| c.forward_auth.enabled = false);
    let t = token(&off.url(""), "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(
        status_with(&off.url("/authgate/verify"), &t, APP).await,
        200
    );
    assert_eq!(off_upstream.last().uri, "/authgate/verify");
    assert_eq!(upstream.count(), 0);
}

/// One client request through a proxy, raw.
fn through(
    proxy: &IngressProxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    raw(proxy.addr, method, path, headers)
}

/// What a user of an ingress relies on, through a real one: no token → 401, a valid token → 200
/// with its identity at the upstream (and a client's forged identity never), a reader's POST →
/// 403, a share token outside its scope → 403, an ambiguous path → refused with nothing
/// forwarded (nginx answers 500 for any denial but 401 and 403; Caddy passes authgate's 400 on).
async fn a_real_ingress_enforces_the_decisions(
    proxy: &IngressProxy,
    upstream: &Upstream,
    gw: &Gateway,
    ambiguous_status: u16,
) {
    let base = gw.url("");
    let admin = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let reader = token(&base, "reader", READER_PASSWORD, APP).await;
    let share = share_token(&base, SHARE_URL, DEVICE).await;
    let forged = ("X-Authgate-User", "root");

    let r = through(proxy, "GET", "/api/hosts", &[forged]);
    assert_eq!(
        r.status,
        401,
        "{} {:?} {}",
        r.text(),
        r.headers,
        proxy.log()
    );
    assert_eq!(upstream.count(), 0);

    let r = through(
        proxy,
        "GET",
        "/api/hosts?depth=1",
        &[("GWOS-API-TOKEN", &admin), ("GWOS-APP-NAME", APP), forged],
    );
    assert_eq!(r.status, 200, "{}", proxy.log());
    let seen = upstream.last();
    assert_eq!(seen.uri, "/api/hosts?depth=1");
    assert_eq!(seen.header("x-authgate-user"), Some("admin"));
    assert_eq!(seen.header("x-authgate-role"), Some("admin"));
    assert_eq!(seen.header("x-authgate-share").unwrap_or_default(), "");

    let r = through(proxy, "GET", "/public/page", &[forged]);
    assert_eq!(r.status, 200);
    assert_eq!(upstream.last().uri, "/public/page");
    // nginx does not send a header set empty; Caddy sends it empty.
    assert_eq!(
        upstream
            .last()
            .header("x-authgate-user")
            .unwrap_or_default(),
        "",
        "a forged identity never reaches the upstream"
    );

    let before = upstream.count();
    let r = through(
        proxy,
        "POST",
        "/api/hosts",
        &[("GWOS-API-TOKEN", &reader), ("GWOS-APP-NAME", APP)],
    );
    assert_eq!(r.status, 403);
    let r = through(proxy, "GET", "/api/settings", &[("token", &share)]);
    assert_eq!(r.status, 403, "a share outside its scope");
    let r = through(proxy, "GET", "/api/files/1", &[("token", &share)]);
    assert_eq!(r.status, 200, "the same share inside it");
    assert_eq!(upstream.last().header("x-authgate-share"), Some("s272"));
    let before_ambiguous = upstream.count();
    assert_eq!(before_ambiguous, before + 1);

    let r = through(
        proxy,
        "GET",
        "/public/%2e%2e/api/hosts",
        &[("GWOS-API-TOKEN", &reader), ("GWOS-APP-NAME", APP)],
    );
    assert_eq!(r.status, ambiguous_status, "{}", proxy.log());
    assert_eq!(upstream.count(), before_ambiguous, "nothing forwarded");
}

#[tokio::test]
async fn nginx_auth_request_enforces_the_decisions() {
    let (gw, upstream) = trusting_gateway();
    let nginx = IngressProxy::nginx(gw.addr, upstream.addr);
    a_real_ingress_enforces_the_decisions(&nginx, &upstream, &gw, 500).await;
}

#[tokio::test]
async fn caddy_forward_auth_enforces_the_decisions() {
    let (gw, upstream) = trusting_gateway();
    let caddy = IngressProxy::caddy(gw.addr, upstream.addr);
    a_real_ingress_enforces_the_decisions(&caddy, &upstream, &gw, 400).await;
}
