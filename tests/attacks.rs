//! The connection-level attacks of `benches/load/attacks.sh`, at a small scale: floods of idle
//! connections, slow headers (slowloris), and what a legitimate client from another address sees
//! meanwhile. Each test fails when its limit is missing. Addresses other than 127.0.0.1 are other
//! loopback addresses (127.0.0.2, …): Linux routes all of 127/8 to the gateway.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const APP: &str = "attacks";
const PUBLIC_GET: &[u8] = b"GET /public/x HTTP/1.1\r\nHost: app\r\n\r\n";

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// The first bytes of an answer, or `None` when the connection was closed (or reset) unanswered.
async fn answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(_) => None,
        Err(_) => panic!("neither answered nor closed within {within:?}"),
    }
}

/// A client at another address logs in and makes an authenticated GET: both must work.
async fn legitimate_client_is_served(gw: &Gateway, from: &str) -> Duration {
    let client = reqwest::Client::builder()
        .local_address(Some(from.parse().unwrap()))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let login = client
        .post(gw.url("/api/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user={}&password={}&gwos-app-name={APP}",
            urlencode(&b64("admin")),
            urlencode(&b64(ADMIN_PASSWORD))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.text().await.unwrap();
    let get = client
        .get(gw.url("/api/hosts"))
        .header("GWOS-API-TOKEN", token)
        .header("GWOS-APP-NAME", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    started.elapsed()
}

/// Until the gateway holds no client connection: the start-up probe's (`wait_connectable`) has
/// given its place back, and cannot take one a test counts on.
async fn no_connection_open(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(gw, "authgate_connections_open{}").await > 0.0 {
        assert!(Instant::now() < deadline, "the probe's place is given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(gw: &Gateway, key: &str) -> f64 {
    let samples = scrape_metrics(&format!("http://{}/metrics", gw.admin)).await;
    samples.get(key).copied().unwrap_or(0.0)
}

/// pingora alone accepts every connection (20,000 idle ones exhausted the descriptors and
/// starved everyone). One address gets its share; the rest of its connections are closed at
/// once, while another address is served.
#[tokio::test]
async fn a_connection_flood_from_one_address_is_held_to_its_share() {
    let (gw, _up) = gateway_with(|c| {
        c.limits.max_connections_per_client = nz32(100);
        c.public_paths = vec!["/public".into()];
    });
    no_connection_open(&gw).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut conn = connect_from("127.0.0.1", gw.addr).await;
        // A refused connection is closed unread: the write may fail or the read find it closed.
        let _ = conn.write_all(PUBLIC_GET).await;
        match answer(&mut conn, Duration::from_secs(5)).await {
            Some(text) => {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                held.push(conn);
            }
            None => refused += 1,
        }
    }
    assert_eq!((held.len(), refused), (100, 200));
    legitimate_client_is_served(&gw, "127.0.0.2").await;
    assert_eq!(
        metric(
            &gw,
            "authgate_connections_refused_total{limit=\"per_client\"}"
        )
        .await,
        200.0
    );
    // The kept-alive connections stay usable: the limit disturbs no one already in.
    for conn in held.iter_mut().take(5) {
        conn.write_all(PUBLIC_GET).await.unwrap();
        let text = answer(conn, Duration::from_secs(5)).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&gw, "authgate_connections_open{}").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "closed connections give their places back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With all places taken, a new connection from anyone is closed at once; a place freed is a
/// place taken again.
#[tokio::test]
async fn beyond_the_total_new_connections_are_closed_at_once() {
    let (gw, _up) = gateway_with(|c| {
        c.limits.max_connections = nzu(20);
        // Held places are not shed during this test (that is the next test's subject).
        c.limits.wait_under_pressure_ms = nz(60_000);
        c.public_paths = vec!["/public".into()];
    });
    no_connection_open(&gw).await;
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(connect_from(&format!("127.0.0.{}", 10 + i), gw.addr).await);
    }
    // Generous: the suite's other tests flood their own gateways on the same two cores.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&gw, "authgate_connections_open{}").await < 20.0 {
        assert!(Instant::now() < deadline, "20 connections admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut late = connect_from("127.0.0.50", gw.addr).await;
    let _ = late.write_all(PUBLIC_GET).await;
    let started = Instant::now();
    assert_eq!(answer(&mut late, Duration::from_secs(5)).await, None);
    assert!(started.elapsed() < Duration::from_secs(1), "closed at once");
    assert_eq!(
        metric(&gw, "authgate_connections_refused_total{limit=\"total\"}").await,
        1.0
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = connect_from("127.0.0.51", gw.addr).await;
        let _ = next.write_all(PUBLIC_GET).await;
        if let Some(text) = answer(&mut next, Duration::from_secs(5)).await {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "a freed place is taken again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Slowloris: headers trickled a byte at a time. pingora times each read (60 s), so a client
/// that sends a byte now and then kept its connection for ever; the whole header now has
/// `request_header_timeout_ms`, and other clients are served meanwhile.
#[tokio::test]
async fn trickled_headers_are_cut_off_at_the_header_deadline() {
    let (gw, up) = gateway_with(|c| {
        c.limits.request_header_timeout_ms = nz(1000);
        c.public_paths = vec!["/public".into()];
    });
    let started = Instant::now();
    let mut trickling = Vec::new();
    for i in 0..100 {
        let addr = gw.addr;
        trickling.push(tokio::spawn(async move {
            let mut conn = connect_from(&format!("127.0.1.{}", 1 + i % 50), addr).await;
            let request = b"GET /public/slow HTTP/1.1\r\nHost: app\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            for byte in request {
                if conn.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut buf = [0u8; 64];
            // Closed (0 bytes or a reset), never answered.
            let read = conn.read(&mut buf).await;
            assert!(!matches!(read, Ok(n) if n > 0), "a trickled header was answered");
            Instant::now()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    legitimate_client_is_served(&gw, "127.0.0.2").await;
    for task in trickling {
        let closed_at = task.await.unwrap();
        let after = closed_at - started;
        assert!(
            after < Duration::from_secs(4),
            "closed near the 1 s header deadline, not after the 9 s trickle: {after:?}"
        );
    }
    assert_eq!(
        metric(
            &gw,
            "authgate_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await,
        100.0
    );
    assert!(up.requests().iter().all(|r| r.uri != "/public/slow"));
}

/// The header deadline bounds the header only: a body may arrive more slowly than that (it has
/// its own per-read timeout), and a kept-alive connection's next header is timed from its first
/// byte, not from the end of the previous answer.
#[tokio::test]
async fn the_header_deadline_spares_slow_bodies_and_idle_time() {
    let (gw, up) = gateway_with(|c| {
        c.limits.request_header_timeout_ms = nz(1000);
        c.public_paths = vec!["/public".into()];
    });
    let mut conn = connect_from("127.0.0.1", gw.addr).await;
    conn.write_all(b"POST /public/upload HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\n\r\n")
        .await
        .unwrap();
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(400)).await;
        conn.write_all(&[*byte]).await.unwrap();
    }
    let text = answer(&mut conn, Duration::from_secs(5)).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(up.last().body, b"abcdef");
    // Idle for longer than the header deadline, then a prompt request: served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.write_all(PUBLIC_GET).await.unwrap();
    let text = answer(&mut conn, Duration::from_secs(5)).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

async fn login_from(client: &reqwest::Client, gw: &Gateway, password: &str) -> u16 {
    client
        .post(gw.url("/api/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user={}&password={}&gwos-app-name={APP}",
            urlencode(&b64("admin")),
            urlencode(&b64(password))
        ))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// 100 connections flooding wrong-password logins from one address, with the login rate limits
/// out of the way so that the password queue itself is the subject, while another address logs
/// in now and then: every one of its logins succeeds. With one first-come queue the flood filled
/// it and 0 of 31 legitimate logins succeeded (all 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_from_one_address_does_not_starve_another() {
    let (gw, _up) = gateway_with(|c| {
        c.password_hashing.max_concurrent = nzu(1);
        c.password_hashing.max_waiting_per_client = authgate::Config::default()
            .password_hashing
            .max_waiting_per_client;
    });
    let gw = std::sync::Arc::new(gw);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..100 {
        let (gw, stop) = (gw.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .local_address(Some("127.0.0.1".parse().unwrap()))
                .build()
                .unwrap();
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = login_from(&client, &gw, "guess").await;
                answers.push(status);
                if status == 503 {
                    // Keeps this test's own CPU use from being the attack (both sides share
                    // two cores here); the queue is still overfilled at every moment.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let legit = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let mut legit_answers = Vec::new();
    for _ in 0..10 {
        legit_answers.push(login_from(&legit, &gw, ADMIN_PASSWORD).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flooded = Vec::new();
    for task in flood {
        flooded.extend(task.await.unwrap());
    }
    assert_eq!(legit_answers, vec![200; 10]);
    // The flood was really one: its surplus was refused, not queued.
    assert!(flooded.contains(&503), "the flood overfilled its share");
    assert!(flooded.iter().all(|s| [401, 503].contains(s)));
}

/// Idle connections from many addresses fill every place: near the total, connections waiting
/// for a request are shed after a second instead of their 60 s idle limit, so that a newcomer is
/// soon served instead of being refused for a minute.
#[tokio::test]
async fn near_the_total_idle_connections_make_room() {
    let (gw, _up) = gateway_with(|c| {
        c.limits.max_connections = nzu(20);
        c.public_paths = vec!["/public".into()];
    });
    no_connection_open(&gw).await;
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut conn = connect_from(&format!("127.0.2.{}", 1 + i), gw.addr).await;
        conn.write_all(PUBLIC_GET).await.unwrap();
        let text = answer(&mut conn, Duration::from_secs(5)).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        idle.push(conn);
    }
    let started = Instant::now();
    let served = loop {
        let mut conn = connect_from("127.0.0.2", gw.addr).await;
        let _ = conn.write_all(PUBLIC_GET).await;
        if let Some(text) = answer(&mut conn, Duration::from_secs(5)).await {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still refused: idle connections hold every place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(
        metric(&gw, "authgate_connections_closed_total{reason=\"shed\"}").await >= 1.0,
        "room was made by shedding"
    );
}

/// A forwarded body that stops arriving is cut off after `body_read_timeout_ms` (pingora's own
/// per-read timeout was 60 s), and the upstream never receives it whole.
#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let (gw, up) = gateway_with(|c| {
        c.limits.body_read_timeout_ms = nz(500);
        c.public_paths = vec!["/public".into()];
    });
    let mut conn = connect_from("127.0.0.1", gw.addr).await;
    conn.write_all(b"POST /public/stall HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nhalf.")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        // Whatever comes back (an error answer, or nothing), the connection ends.
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the stalled request was not cut off");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(up
        .requests()
        .iter()
        .all(|r| !(r.uri == "/public/stall" && r.body_len == 10)));
}
