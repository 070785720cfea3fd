//! The path authgate decides on is exactly the path the upstream receives.
//!
//! A table of raw request targets, sent byte for byte over a socket to the real gateway in front of
//! two upstreams that record the request line as it arrived. Each row gives who is asking, the
//! status, and the exact target the upstream received (or that nothing was forwarded). Every
//! forwarded path is then read again the way a servlet container reads it (`;` parameters stripped
//! per segment, then decoded, then dot segments resolved) and the way a WSGI router does (decoded
//! whole): both readings must stay inside what authgate allowed for that caller.

mod common;
use authgate::config::{Config, RouteConfig, UpstreamConfig};
use authgate::target::{has_prefix, EscapedSlashes, PathParameters, PathPolicy, RequestTarget};
use common::*;
use percent_encoding::percent_decode_str;

const APP: &str = "paths";
const PUBLIC: &str = "/public";
const SHARE_PATHS: [&str; 2] = ["/api/files", "/download/272"];
const READER_POST: &str = "/api/biz/getindowntime";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Admin,
    Reader,
    /// An ioGates share token, scoped to `SHARE_PATHS`, read-only.
    Share,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    Main,
    /// The upstream of the `/svc` route.
    Svc,
}

use Up::*;
use Who::*;

/// (method, raw target, who, status, target received upstream or None, which upstream)
type Row = (
    &'static str,
    &'static str,
    Who,
    u16,
    Option<&'static str>,
    Up,
);

struct Setup {
    gw: Gateway,
    main: RawUpstream,
    svc: RawUpstream,
    admin: String,
    reader: String,
    share: String,
}

async fn setup(adjust: impl FnOnce(&mut Config)) -> Setup {
    let (main, svc) = (RawUpstream::start(), RawUpstream::start());
    let mut config = test_config(main.addr);
    config.public_paths = vec![PUBLIC.into()];
    config.upstreams.insert(
        "svc".into(),
        UpstreamConfig {
            addresses: vec![svc.addr.to_string()],
            ..UpstreamConfig::default()
        },
    );
    config.routes = vec![RouteConfig {
        prefix: "/svc".into(),
        upstream: "svc".into(),
    }];
    adjust(&mut config);
    let gw = Gateway::start(config);
    let base = gw.url("");
    let admin = token(&base, "admin", ADMIN_PASSWORD, APP).await;
    let reader = token(&base, "reader", READER_PASSWORD, APP).await;
    let resp = http()
        .post(gw.url("/api/authtoken"))
        .json(&serde_json::json!({ "url": SHARE_URL, "deviceId": "paths" }))
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = resp.json().await.unwrap();
    let share = answer["token"].as_str().unwrap().to_string();
    Setup {
        gw,
        main,
        svc,
        admin,
        reader,
        share,
    }
}

impl Setup {
    fn send(&self, method: &str, target: &str, who: Who) -> RawResponse {
        let credentials = match who {
            Nobody => String::new(),
            Admin => format!("GWOS-API-TOKEN: {}\r\nGWOS-APP-NAME: {APP}\r\n", self.admin),
            Reader => format!(
                "GWOS-API-TOKEN: {}\r\nGWOS-APP-NAME: {APP}\r\n",
                self.reader
            ),
            Share => format!("token: {}\r\n", self.share),
        };
        // An absolute-form target names its host; pingora refuses a Host that differs from it.
        let host = target.split_once("://").map_or("gw.test", |(_, rest)| {
            rest.split(['/', '?']).next().unwrap()
        });
        let mut conn = RawConn::open(self.gw.addr);
        conn.send_bytes(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{credentials}\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        conn.read_response()
    }

    /// Run the rows; every way a row went wrong, as one list.
    fn check(&self, rows: &[Row]) -> Vec<String> {
        let mut wrong = Vec::new();
        for &(method, target, who, status, forwarded, up) in rows {
            let (main_before, svc_before) = (self.main.count(), self.svc.count());
            let got = self.send(method, target, who).status;
            let (at_main, at_svc) = (self.main.since(main_before), self.svc.since(svc_before));
            let row = format!("{method} {target} as {who:?}");
            if got != status {
                wrong.push(format!("{row}: status {got}, want {status}"));
            }
            let received: Vec<&RawRequest> = at_main.iter().chain(&at_svc).collect();
            match forwarded {
                None if !received.is_empty() => {
                    wrong.push(format!("{row}: forwarded {:?}", received[0].target))
                }
                None => {}
                Some(want) => {
                    let (here, there) = match up {
                        Main => (&at_main, &at_svc),
                        Svc => (&at_svc, &at_main),
                    };
                    match (here.as_slice(), there.is_empty()) {
                        ([one], true) if one.target == want => {
                            wrong.extend(readings_outside(&row, who, method, one.path(), up));
                        }
                        _ => wrong.push(format!(
                            "{row}: upstream {up:?} got {:?}, want exactly {want:?}",
                            received.iter().map(|r| &r.target).collect::<Vec<_>>()
                        )),
                    }
                }
            }
        }
        wrong
    }
}

fn decode(path: &str) -> String {
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// Dot segments resolved and empty ones dropped, `\` taken as `/` (as the most lenient servers
/// do); climbing above the root stays at the root.
fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// How a servlet container reads a path: `;parameters` off each segment, then decode, then resolve.
fn servlet_reading(path: &str) -> String {
    let stripped: Vec<&str> = path
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect();
    resolve(&decode(&stripped.join("/")))
}

/// How a WSGI router reads it: decoded whole (PATH_INFO), and resolved by whatever serves files.
fn wsgi_reading(path: &str) -> String {
    resolve(&decode(path))
}

/// Whether `who` may reach `path` with `method`, as the gateway is configured here.
fn allowed(who: Who, method: &str, path: &str) -> bool {
    match who {
        Nobody => has_prefix(path, PUBLIC),
        Share => SHARE_PATHS.iter().any(|p| has_prefix(path, p)),
        Reader => method == "GET" || path == READER_POST,
        Admin => true,
    }
}

/// Both readings of a forwarded path must be inside what the caller may reach, and at the
/// upstream its route names.
fn readings_outside(row: &str, who: Who, method: &str, path: &str, up: Up) -> Vec<String> {
    let mut wrong = Vec::new();
    for (reader, reading) in [
        ("servlet", servlet_reading(path)),
        ("wsgi", wsgi_reading(path)),
    ] {
        if !allowed(who, method, &reading) {
            wrong.push(format!("{row}: a {reader} upstream reads {reading:?}"));
        }
        if has_prefix(&reading, "/svc") != (up == Svc) {
            wrong.push(format!(
                "{row}: a {reader} upstream reads {reading:?} at {up:?}"
            ));
        }
    }
    wrong
}

#[rustfmt::skip]
const DEFAULT_POLICY_ROWS: &[Row] = &[
    // Public prefix, no token.
    ("GET", "/public/x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public", Nobody, 200, Some("/public"), Main),
    ("GET", "//public//x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/./x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/a/../x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/%70ublic/x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/caf%c3%a9", Nobody, 200, Some("/public/caf%C3%A9"), Main),
    ("GET", "/public/x%20y", Nobody, 200, Some("/public/x%20y"), Main),
    ("GET", "/public/%23/x", Nobody, 200, Some("/public/%23/x"), Main),
    ("GET", "/public/{x}", Nobody, 200, Some("/public/%7Bx%7D"), Main),
    ("GET", "/public/x?next=/../admin&p=%2f;x", Nobody, 200, Some("/public/x?next=/../admin&p=%2f;x"), Main),
    ("GET", "/public/x#frag", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/%252e%252e/admin", Nobody, 200, Some("/public/%252e%252e/admin"), Main),
    ("GET", "/public/%2e%2e/admin", Nobody, 401, None, Main),
    ("GET", "/public/.%2e/admin", Nobody, 401, None, Main),
    ("GET", "/public/..", Nobody, 401, None, Main),
    ("GET", "/publicity", Nobody, 401, None, Main),
    ("GET", "/PUBLIC/x", Nobody, 401, None, Main),
    ("GET", "/public/..%2fadmin", Nobody, 400, None, Main),
    ("GET", "/public/..%2Fadmin", Nobody, 400, None, Main),
    ("GET", "/public%2f..%2fadmin", Nobody, 400, None, Main),
    ("GET", "/public/..%5cadmin", Nobody, 400, None, Main),
    ("GET", "/public/..\\admin", Nobody, 400, None, Main),
    ("GET", "/public/..;/admin", Nobody, 400, None, Main),
    ("GET", "/public;x/../admin", Nobody, 400, None, Main),
    ("GET", "/public/%2e%2e;/admin", Nobody, 400, None, Main),
    ("GET", "/public/..%3B/admin", Nobody, 400, None, Main),
    ("GET", "/public/%00/x", Nobody, 400, None, Main),
    ("GET", "/public/%0d%0aX-Injected:%201", Nobody, 400, None, Main),
    ("GET", "/public/%ff", Nobody, 400, None, Main),
    ("GET", "/public/%c0%ae%c0%ae/admin", Nobody, 400, None, Main),
    ("GET", "/public/%u002e%u002e/admin", Nobody, 400, None, Main),
    ("GET", "/public/%2", Nobody, 400, None, Main),
    ("GET", "/../public/x", Nobody, 400, None, Main),
    ("GET", "/public/../../admin", Nobody, 400, None, Main),
    // Absolute-form and asterisk-form.
    ("GET", "http://other.host/public/x?q=1", Nobody, 200, Some("/public/x?q=1"), Main),
    ("GET", "HTTP://other.host/public/./y", Nobody, 200, Some("/public/y"), Main),
    ("GET", "http://other.host/admin", Nobody, 401, None, Main),
    ("GET", "http://other.host/public/../admin", Nobody, 401, None, Main),
    ("GET", "http://user@other.host/public/x", Nobody, 400, None, Main),
    ("GET", "*", Nobody, 400, None, Main),
    ("OPTIONS", "*", Nobody, 200, None, Main),
    // A share token: GET under its paths only.
    ("GET", "/api/files/1", Share, 200, Some("/api/files/1"), Main),
    ("GET", "/api//files/1", Share, 200, Some("/api/files/1"), Main),
    ("GET", "/api/fil%65s/1", Share, 200, Some("/api/files/1"), Main),
    ("GET", "/download/272/a.mov", Share, 200, Some("/download/272/a.mov"), Main),
    ("GET", "/api/files/%252e%252e/users", Share, 200, Some("/api/files/%252e%252e/users"), Main),
    ("GET", "/api/files/../users", Share, 403, None, Main),
    ("GET", "/api/files/%2e%2e/users", Share, 403, None, Main),
    ("GET", "/download/272/../273/a.mov", Share, 403, None, Main),
    ("GET", "/download/2720", Share, 403, None, Main),
    ("GET", "http://h/api/files/../users", Share, 403, None, Main),
    ("POST", "/api/files/1", Share, 403, None, Main),
    ("GET", "/api/files/..;/users", Share, 400, None, Main),
    ("GET", "/api/files;/../users", Share, 400, None, Main),
    ("GET", "/api/files/..%2fusers", Share, 400, None, Main),
    ("GET", "/api/files%2f..%2fusers", Share, 400, None, Main),
    // A reader: reads, and POST to the allow-list only.
    ("GET", "/api/hosts", Reader, 200, Some("/api/hosts"), Main),
    ("POST", "/api/biz/getindowntime", Reader, 200, Some("/api/biz/getindowntime"), Main),
    ("POST", "/api/biz/./getindowntime", Reader, 200, Some("/api/biz/getindowntime"), Main),
    ("POST", "/api//biz/getindowntime", Reader, 200, Some("/api/biz/getindowntime"), Main),
    ("POST", "/api/biz/%67etindowntime", Reader, 200, Some("/api/biz/getindowntime"), Main),
    ("POST", "/api/biz/getindowntime/../../hosts", Reader, 401, None, Main),
    ("POST", "/api/biz/getindowntime/", Reader, 401, None, Main),
    ("POST", "/api/biz/getindowntime;/../../hosts", Reader, 400, None, Main),
    ("POST", "/api/biz/getindowntime/..%2f..%2fhosts", Reader, 400, None, Main),
    // authgate's own endpoints are recognised on the canonical path too.
    ("GET", "/api/auth/%6cogin", Nobody, 405, None, Main),
    ("GET", "/api/auth/./login", Nobody, 405, None, Main),
    // Routes: the upstream is chosen on the canonical path.
    ("GET", "/svc/x", Admin, 200, Some("/svc/x"), Svc),
    ("GET", "/sv%63/x", Admin, 200, Some("/svc/x"), Svc),
    ("GET", "/api/../svc/x", Admin, 200, Some("/svc/x"), Svc),
    ("GET", "/svc/../api/x", Admin, 200, Some("/api/x"), Main),
    ("GET", "/svc%2f../api", Admin, 400, None, Main),
    ("GET", "/api/x;jsessionid=1", Admin, 400, None, Main),
];

#[tokio::test]
async fn every_target_is_refused_or_forwarded_exactly_as_decided() {
    assert!(DEFAULT_POLICY_ROWS.len() >= 60);
    let setup = setup(|_| {}).await;
    let wrong = setup.check(DEFAULT_POLICY_ROWS);
    assert!(
        wrong.is_empty(),
        "{} rows wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[rustfmt::skip]
const LENIENT_POLICY_ROWS: &[Row] = &[
    // Encoded slashes decoded: the decoded path is decided on and forwarded.
    ("GET", "/public%2fx", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/..%2fadmin", Nobody, 401, None, Main),
    ("GET", "/public/a%5C..%5Cx", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/..\\admin", Nobody, 400, None, Main),
    // Path parameters stripped, as a servlet container would, before dot segments.
    ("GET", "/public;jsessionid=1/x", Nobody, 200, Some("/public/x"), Main),
    ("GET", "/public/..;/admin", Nobody, 401, None, Main),
    ("GET", "/api/files/..;/users", Share, 403, None, Main),
    ("GET", "/api/files;v=2/1", Share, 200, Some("/api/files/1"), Main),
    ("GET", "/public/..%3b/admin", Nobody, 400, None, Main),
    // Slashes kept: a prefix matches only the single-slash spelling.
    ("GET", "/public//x", Nobody, 200, Some("/public//x"), Main),
    ("GET", "//public/x", Nobody, 401, None, Main),
    ("GET", "/public//../admin", Nobody, 400, None, Main),
];

#[tokio::test]
async fn the_lenient_settings_forward_what_they_decide_on() {
    let setup = setup(|c| {
        c.request_path = PathPolicy {
            escaped_slashes: EscapedSlashes::Decode,
            path_parameters: PathParameters::Strip,
            merge_slashes: false,
        }
    })
    .await;
    let wrong = setup.check(LENIENT_POLICY_ROWS);
    assert!(
        wrong.is_empty(),
        "{} rows wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Random targets built from the pieces attacks are made of, sent without a token: each is refused,
/// or forwarded as exactly the path decided on, which every reading keeps inside the public prefix.
#[tokio::test]
async fn random_targets_are_refused_or_forwarded_as_decided() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
    const PIECES: &[&str] = &[
        "public", "x", ".", "..", "%2e", "%2E%2e", "%2f", "%5c", "\\", ";", ";x=1", "%3b", "%25",
        "%252e", "%00", "%c3%a9", "%ff", "", "a%20b", "%7e", "%70ublic", "?q=..%2f", "#f",
    ];
    let setup = setup(|_| {}).await;
    let policy = PathPolicy::default();
    let strategy = (
        any::<bool>(),
        proptest::collection::vec(proptest::sample::select(PIECES), 0..7),
    );
    let mut runner = TestRunner::new(RunnerConfig::with_cases(96));
    let result = runner.run(&strategy, |(under_public, pieces)| {
        let raw = format!(
            "{}{}",
            if under_public { "/public/" } else { "/" },
            pieces.join("/")
        );
        let before = setup.main.count();
        let status = setup.send("GET", &raw, Nobody).status;
        let received = setup.main.since(before);
        // The fragment never reaches the gateway's parser (nor the upstream).
        let sent = raw.split('#').next().unwrap();
        match RequestTarget::parse(sent.as_bytes(), &policy) {
            Err(_) => {
                prop_assert_eq!(status, 400, "{}", raw);
                prop_assert!(received.is_empty(), "{}", raw);
            }
            Ok(target) if has_prefix(target.path(), PUBLIC) => {
                prop_assert_eq!(status, 200, "{}", raw);
                prop_assert_eq!(received.len(), 1, "{}", raw);
                let path = received[0].path();
                prop_assert_eq!(path, target.path(), "{}", raw);
                if !readings_outside(&raw, Nobody, "GET", path, Main).is_empty() {
                    return Err(TestCaseError::fail(format!("{raw}: read outside {PUBLIC}")));
                }
            }
            Ok(_) => {
                prop_assert_eq!(status, 401, "{}", raw);
                prop_assert!(received.is_empty(), "{}", raw);
            }
        }
        Ok(())
    });
    result.unwrap();
}
