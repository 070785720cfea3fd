//! HTTP at the edge: Host rules, absolute-form, HTTP/1.0, trailers, headers a client must not
//! choose, and request smuggling. Raw bytes in, and what reached a raw recording upstream checked.

mod common;
use authgate::config::Config;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const APP: &str = "hygiene";

fn start(adjust: impl FnOnce(&mut Config)) -> (Gateway, RawUpstream) {
    let upstream = RawUpstream::start();
    let mut config = test_config(upstream.addr);
    config.public_paths = vec![
        "/public".into(),
        "/chunked".into(),
        "/chunked-trailer".into(),
        "/slow-length".into(),
        "/upgrade".into(),
    ];
    adjust(&mut config);
    (Gateway::start(config), upstream)
}

/// Write `bytes`, then read whatever comes back until the server closes or goes quiet.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn http11_needs_exactly_one_host() {
    let (gw, up) = start(|_| {});
    for request in [
        "GET /public/x HTTP/1.1\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = exchange(gw.addr, request.as_bytes());
        assert_eq!(status_of(&answer), Some(400), "{request:?}: {answer}");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn http10_without_host_gets_the_upstream_s_host() {
    let (gw, up) = start(|c| {
        c.upstreams.get_mut("main").unwrap().host = Some("app.internal".into());
    });
    let answer = exchange(gw.addr, b"GET /public/x HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    assert_eq!(up.requests()[0].all("host"), ["app.internal"]);
    // With no host configured, the upstream's address stands in.
    drop(gw);
    let (gw, up) = start(|_| {});
    exchange(gw.addr, b"GET /public/x HTTP/1.0\r\n\r\n");
    assert_eq!(up.requests()[0].all("host"), [up.addr.to_string()]);
    // A client's own Host is kept.
    exchange(gw.addr, b"GET /public/x HTTP/1.0\r\nHost: mine\r\n\r\n");
    assert_eq!(up.requests()[1].all("host"), ["mine"]);
}

#[test]
fn absolute_form_goes_upstream_in_origin_form_with_its_authority_as_host() {
    let (gw, up) = start(|_| {});
    let answer = exchange(
        gw.addr,
        b"GET http://app.internal:8080/public/a/../x?q=1 HTTP/1.1\r\nHost: app.internal:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    let r = &up.requests()[0];
    assert_eq!(r.target, "/public/x?q=1");
    assert_eq!(r.all("host"), ["app.internal:8080"]);
    // A Host that names another authority than the URL leaves two answers to "which host": refused.
    let answer = exchange(
        gw.addr,
        b"GET http://other.internal/public/x HTTP/1.1\r\nHost: app.internal:8080\r\n\r\n",
    );
    assert_eq!(status_of(&answer), Some(400), "{answer}");
    assert_eq!(up.count(), 1);
}

#[test]
fn http10_clients_never_get_chunked_framing() {
    let (gw, _up) = start(|_| {});
    let answer = exchange(gw.addr, b"GET /chunked HTTP/1.0\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(status_of(head), Some(200), "{answer}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "hello world", "close-delimited, unframed");
}

#[test]
fn trailers_are_never_announced_without_being_sent() {
    let (gw, _up) = start(|_| {});
    let answer = exchange(
        gw.addr,
        b"GET /chunked-trailer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(status_of(head), Some(200), "{answer}");
    let head = head.to_ascii_lowercase();
    let announced = head.lines().any(|l| l.starts_with("trailer:"));
    let sent = body.contains("X-Checksum: 42");
    assert_eq!(
        announced, sent,
        "announced {announced}, sent {sent}: {answer}"
    );
    assert!(body.contains("hello ") && body.contains("world"), "{body}");
}

#[tokio::test]
async fn method_and_url_overrides_never_reach_the_upstream() {
    let (gw, up) = start(|c| c.forwarding.strip_headers = vec!["X-Internal-Debug".into()]);
    let t = token(&gw.url(""), "reader", READER_PASSWORD, APP).await;
    let answer = exchange(
        gw.addr,
        format!(
            "GET /api/hosts HTTP/1.1\r\nHost: x\r\nGWOS-API-TOKEN: {t}\r\nGWOS-APP-NAME: {APP}\r\n\
             X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nx_method_override: DELETE\r\n\
             X-Original-URL: /api/admin\r\nX-Rewrite-URL: /api/admin\r\nX-Original-Method: DELETE\r\n\
             X-Internal-Debug: 1\r\nX-Kept: yes\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    let r = &up.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("GET", "/api/hosts")
    );
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x_method_override",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-method",
        "x-internal-debug",
    ] {
        assert_eq!(r.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(r.header("x-kept"), Some("yes"));
}

const SPOOFED: &str = "X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n\
     Forwarded: for=203.0.113.9;proto=https\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n";

#[test]
fn an_untrusted_peer_cannot_choose_its_forwarding_headers() {
    let (gw, up) = start(|_| {});
    let request =
        format!("GET /public/x HTTP/1.1\r\nHost: gw.test\r\n{SPOOFED}Connection: close\r\n\r\n");
    exchange(gw.addr, request.as_bytes());
    let r = &up.requests()[0];
    assert_eq!(r.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(r.all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(r.all("forwarded"), Vec::<&str>::new());
    assert_eq!(r.all("x-forwarded-proto"), ["http"]);
    assert_eq!(r.all("x-forwarded-host"), ["gw.test"]);
}

#[test]
fn a_trusted_proxy_s_chain_is_extended_and_its_client_believed() {
    let (gw, up) = start(|c| c.forwarding.trusted_proxies = vec!["127.0.0.0/8".into()]);
    let request =
        format!("GET /public/x HTTP/1.1\r\nHost: gw.test\r\n{SPOOFED}Connection: close\r\n\r\n");
    exchange(gw.addr, request.as_bytes());
    let r = &up.requests()[0];
    assert_eq!(r.all("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(r.all("x-real-ip"), ["203.0.113.9"]);
    assert_eq!(r.all("forwarded"), ["for=203.0.113.9;proto=https"]);
    assert_eq!(r.all("x-forwarded-proto"), ["https"]);
    assert_eq!(r.all("x-forwarded-host"), ["evil.example"]);
}

/// Each payload is a request to a public path whose framing tries to hide a second request for a
/// protected one. Whatever the gateway answers, that second request must never reach the upstream
/// unchecked, and what does reach it must be framed one way only.
#[test]
fn smuggling_attempts_never_reach_the_upstream() {
    let (gw, up) = start(|_| {});
    let smuggled = "GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked_then_smuggled = format!("0\r\n\r\n{smuggled}");
    let n = chunked_then_smuggled.len();
    let lf = smuggled.replace("\r\n", "\n");
    let payloads: Vec<(&str, String)> = vec![
        ("CL+TE", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_then_smuggled}")),
        ("TE+CL", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunked_then_smuggled}")),
        ("two different CLs", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len())),
        ("two equal CLs", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc{smuggled}")),
        ("CL list", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc{smuggled}")),
        ("TE chunked, identity", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: {n}\r\n\r\n{chunked_then_smuggled}")),
        ("TE xchunked", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: {n}\r\n\r\n{chunked_then_smuggled}")),
        ("TE identity, chunked twice", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n{chunked_then_smuggled}")),
        ("TE obs-fold", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: {n}\r\n\r\n{chunked_then_smuggled}")),
        ("space before colon", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: {n}\r\n\r\n{chunked_then_smuggled}")),
        ("LF-only lines", format!("POST /public/a HTTP/1.1\nHost: x\nContent-Length: {}\n\n{lf}", lf.len())),
        ("bare CR", format!("GET /public/a HTTP/1.1\rHost: x\r\n\r\n{smuggled}")),
        ("tabs in the request line", "GET\t/admin/secret\tHTTP/1.1\r\nHost: x\r\n\r\n".to_string()),
        ("tab inside the target", "GET /public/x\t/../../admin/secret HTTP/1.1\r\nHost: x\r\n\r\n".to_string()),
        ("bad chunk size", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}")),
        ("chunk size overflow", format!("POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n{smuggled}")),
        ("NUL in a header", format!("GET /public/a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n{smuggled}")),
    ];
    let mut wrong = Vec::new();
    for (name, payload) in &payloads {
        let before = up.count();
        let answer = exchange(gw.addr, payload.as_bytes());
        for r in up.since(before) {
            if !r.path().starts_with("/public") {
                wrong.push(format!(
                    "{name}: {} {} reached the upstream",
                    r.method, r.target
                ));
            }
            let lengths = r.all("content-length").len();
            let chunked = r.all("transfer-encoding").len();
            if lengths + chunked > 1 {
                wrong.push(format!("{name}: the upstream got {:?}", r.headers));
            }
        }
        if let Some(status) = status_of(&answer) {
            if status >= 500 {
                wrong.push(format!(
                    "{name}: answered {status}, a client's mistake is 4xx"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// An idle kept-alive connection is closed after `limits.keepalive_idle_seconds` (pingora alone
/// keeps it for ever: 20,000 idle clients exhausted the fds), while one in use stays open.
#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_limit() {
    let (gw, _up) = gateway_with(|c| {
        c.limits.keepalive_idle_seconds = nz(1);
        c.public_paths = vec!["/public".into()];
    });
    let mut conn = RawConn::open(gw.addr);
    for _ in 0..3 {
        conn.send("GET /public/x HTTP/1.1\r\nHost: app\r\n\r\n");
        assert_eq!(conn.read_response().status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    let idle = std::time::Instant::now();
    assert!(conn.is_closed_by_peer(), "closed, not kept");
    let waited = idle.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "closed about a second after the last answer: {waited:?}"
    );
}

/// A Content-Length response arriving slowly reaches the client as it arrives: pingora alone
/// held even the header back until 1460 bytes or the whole body had gathered.
#[test]
fn a_content_length_body_reaches_the_client_as_it_arrives() {
    let (gw, _up) = start(|_| {});
    let mut conn = RawConn::open(gw.addr);
    conn.send("GET /slow-length HTTP/1.1\r\nHost: app\r\n\r\n");
    let sent = std::time::Instant::now();
    let first = conn.read_available(Duration::from_millis(1000));
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    assert!(
        first.ends_with("hello"),
        "the first part came before the second: {first:?}"
    );
    let rest = conn.read_available(Duration::from_secs(5));
    assert_eq!(rest, "world");
    assert!(sent.elapsed() >= Duration::from_millis(1400));
}

/// An upgraded connection (WebSocket) lives by `limits.websocket_idle_timeout_seconds`, not the
/// upstream's read timeout: an idle WebSocket was cut after 30 s with no close frame.
///
/// pingora 0.9 tears a tunnel down at once when it reads the upstream's `101` before the upgrade
/// request's empty body (cloudflare/pingora#946, fix proposed in #947; README, "Decisions worth
/// knowing"). That race is not this test's subject: a tunnel torn down before any traffic is
/// opened again, a few times at most, and the idle limit is checked on one that was not.
#[test]
fn an_idle_websocket_outlives_the_upstream_read_timeout_up_to_its_own() {
    let (gw, up) = start(|c| {
        c.upstreams.get_mut("main").unwrap().read_timeout_ms = nz(300);
        c.limits.websocket_idle_timeout_seconds = nz(2);
    });
    let mut torn_down = 0;
    let mut conn = loop {
        let mut conn = RawConn::open(gw.addr);
        conn.send(
            "GET /upgrade HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        let switched = conn.read_available(Duration::from_secs(2));
        assert!(switched.starts_with("HTTP/1.1 101"), "{switched:?}");
        std::thread::sleep(Duration::from_millis(1000));
        conn.send("ping");
        let echoed = conn.read_available(Duration::from_secs(5));
        if echoed == "ping" {
            break conn;
        }
        // pingora#946's symptom, and only it: closed before any traffic. Open it again.
        let closed = echoed.is_empty() && conn.is_closed_by_peer();
        assert!(closed && torn_down < 4, "after 1 s idle: {echoed:?}");
        torn_down += 1;
    };
    assert_eq!(up.count(), 1 + torn_down);
    let idle = std::time::Instant::now();
    assert!(
        conn.is_closed_by_peer(),
        "an idle WebSocket ends at its own limit"
    );
    let waited = idle.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&waited),
        "closed about 2 s after the last traffic: {waited:?}"
    );
}

/// `Expect: 100-continue` does not cost the connection: pingora answered `Connection: close`.
#[test]
fn expect_100_continue_keeps_the_connection_alive() {
    let (gw, up) = start(|_| {});
    let mut conn = RawConn::open(gw.addr);
    conn.send(
        "POST /public/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    let interim = conn.read_available(Duration::from_secs(2));
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    conn.send("hello");
    let answer = conn.read_response();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    conn.send("GET /public/again HTTP/1.1\r\nHost: app\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    let seen = up.requests();
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(
        seen[0].header("expect"),
        None,
        "answered here, not passed on"
    );
    assert_eq!(seen[1].path(), "/public/again");
}

/// A login body sent only after `100 Continue` (curl does so for larger bodies) is answered at
/// once, not after the client gives up waiting.
#[test]
fn a_login_that_expects_100_continue_gets_it() {
    let (gw, _up) = start(|_| {});
    let body = format!(
        "user={}&password={}&gwos-app-name={APP}",
        urlencode(&b64("admin")),
        urlencode(&b64(ADMIN_PASSWORD))
    );
    let mut conn = RawConn::open(gw.addr);
    conn.send(&format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: app\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    ));
    let interim = conn.read_available(Duration::from_millis(500));
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    conn.send(&body);
    let answer = conn.read_response();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text().len(), 36, "a GWOS token");
}
