//! Several replicas on one Redis: three real gateway processes and a real `redis-server`.

mod common;
use common::*;
use std::time::{Duration, Instant};

const APP: &str = "replicas";

/// The store section of a replica's config (`config_yaml` has just opened `store:`). Cached
/// tokens are trusted for a minute: only the revocation feed can make a logout elsewhere seen
/// sooner.
fn on_redis(redis: &RedisServer) -> String {
    format!(
        "  kind: redis\n  redis:\n    url: {}\n    key_prefix: \"replicas:\"\n    \
         cache_max_ttl_ms: 60000\n",
        redis.url
    )
}

/// `n` real gateway processes with one config, each on its own ports, accepting connections.
fn start_replicas(n: usize, config: &str) -> (Vec<Setup>, Vec<Proc>) {
    let replicas: Vec<Setup> = (0..n).map(|_| setup(config)).collect();
    let procs = replicas.iter().map(|r| r.start("warn")).collect();
    for r in &replicas {
        wait_connectable(format!("127.0.0.1:{}", r.port).parse().unwrap());
    }
    (replicas, procs)
}

async fn status_at(base: &str, token: &str) -> u16 {
    status_with(&format!("{base}/api/hosts"), token, APP).await
}

/// Log in on the first replica, use the token on the second and third, log out on the third:
/// the token is refused on the third at once and on the others within milliseconds (the
/// revocation is published with the delete, and each replica drops it from its cache).
#[tokio::test]
async fn three_replicas_share_tokens_and_a_logout_holds_on_all_within_a_second() {
    let redis = RedisServer::start();
    // Many logins from one address: the login limits stay out of the way.
    let config = format!(
        "{}login_limits:\n  per_client_per_minute: 1000000\n  per_user_per_minute: 1000000\n",
        on_redis(&redis)
    );
    let (replicas, procs) = start_replicas(3, &config);
    let (a, b, c) = (&replicas[0].base, &replicas[1].base, &replicas[2].base);
    let mut unseen = Vec::new();
    // ROUNDS=1000 for the figure (a minute); 30 by default.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    for _ in 0..rounds {
        let t = token(a, "admin", ADMIN_PASSWORD, APP).await;
        for base in [a, b, c] {
            assert_eq!(status_at(base, &t).await, 200, "{base}");
        }
        let body = format!("gwos-api-token={t}&gwos-app-name={APP}");
        let (status, _) = text(post_form(&format!("{c}/api/auth/logout"), &body).await).await;
        assert_eq!(status, 200);
        let logged_out = Instant::now();
        assert_eq!(
            status_at(c, &t).await,
            401,
            "at once where it was logged out"
        );
        for base in [a, b] {
            while status_at(base, &t).await != 401 {
                assert!(
                    logged_out.elapsed() < Duration::from_secs(1),
                    "{base} still accepts a token logged out elsewhere"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        unseen.push(logged_out.elapsed());
    }
    unseen.sort();
    eprintln!(
        "logout seen on every replica after: p50 {:?}, p99 {:?}, slowest {:?} ({} rounds)",
        unseen[unseen.len() / 2],
        unseen[(unseen.len() * 99 / 100).min(unseen.len() - 1)],
        unseen[unseen.len() - 1],
        unseen.len()
    );
    drop(procs);
}

async fn ready(setup: &Setup) -> u16 {
    http()
        .get(setup.admin_url("/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Logins and proxied requests from four clients, until `stop`: every token whose login
/// answered 200, and every status seen (anything but 200 and 503-with-`Retry-After` fails).
async fn burst(
    base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, Vec<u16>) {
    let clients = (0..4).map(|_| {
        let (base, stop) = (base.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut issued, mut seen) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = login(&base, "admin", ADMIN_PASSWORD, APP).await;
                seen.push(status);
                if status == 200 {
                    issued.push(body);
                }
                if let Some(t) = issued.last() {
                    let resp = get_with(&format!("{base}/api/hosts"), t, APP).await;
                    let status = resp.status().as_u16();
                    assert!(
                        status == 200
                            || (status == 503 && resp.headers().contains_key("retry-after")),
                        "{status} mid-burst"
                    );
                    seen.push(status);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (issued, seen)
        })
    });
    let mut all = (Vec::new(), Vec::new());
    for client in futures_util::future::join_all(clients).await {
        let (issued, seen) = client.unwrap();
        all.0.extend(issued);
        all.1.extend(seen);
    }
    all
}

/// Redis killed (`kill -9`) during a burst of logins and proxied requests:
/// - a token this replica validated keeps working past `cache_max_ttl_ms`, for
///   `outage_grace_ms`, then is refused with 503 and `Retry-After`;
/// - a token it has not cached is refused at once (503: closed, not 401), logins answer 503;
/// - `/readyz` says not ready.
///
/// Redis restarted from its append-only file: everything recovers without a restart, and every
/// token whose login answered 200, before or during the outage, still works.
#[tokio::test]
async fn a_redis_outage_fails_closed_and_recovers_without_losing_a_token() {
    let mut redis = RedisServer::start();
    let setup = setup(&format!(
        "  kind: redis\n  redis:\n    url: {}\n    timeout_ms: 300\n    cache_max_ttl_ms: 500\n    \
         outage_grace_ms: 2000\nlogin_limits:\n  per_client_per_minute: 1000000\n  \
         per_user_per_minute: 1000000\n",
        redis.url
    ));
    let _proc = setup.start("warn");
    wait_connectable(format!("127.0.0.1:{}", setup.port).parse().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = tokio::spawn(burst(setup.base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    let confirmed = Instant::now(); // issued and saved: confirmed by Redis
    assert_eq!(status_at(&setup.base, &t).await, 200);
    redis.kill();
    // Cached: served through the grace (cache_max_ttl 0.5 s + grace 2 s after it was
    // confirmed), then refused, closed.
    let mut served_in_grace = false;
    loop {
        let resp = get_with(&format!("{}/api/hosts", setup.base), &t, APP).await;
        let at = confirmed.elapsed();
        match resp.status().as_u16() {
            200 => {
                // Decided by 2.5 s; a request then may wait for Redis's timeout (0.3 s).
                assert!(
                    at < Duration::from_millis(3000),
                    "served past the grace: {at:?}"
                );
                served_in_grace |= at > Duration::from_millis(1000);
            }
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                assert!(at > Duration::from_millis(2000), "refused before the grace");
                break;
            }
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_in_grace, "the grace kept the cached token working");
    let unknown = get_with(
        &format!("{}/api/hosts", setup.base),
        "0f".repeat(18).as_str(),
        APP,
    )
    .await;
    assert_eq!(
        unknown.status(),
        503,
        "a token not cached cannot be checked"
    );
    assert!(unknown.headers().contains_key("retry-after"));
    let (status, _) = login(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status, 503, "no token can be issued without its store");
    assert_eq!(ready(&setup).await, 503);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (issued, seen) = burst.await.unwrap();
    assert!(seen.contains(&503), "the burst ran into the outage");

    redis.restart();
    let restarted = Instant::now();
    while ready(&setup).await != 200 {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "ready again without a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!issued.is_empty());
    for answered in issued.iter().chain([&t]) {
        assert_eq!(
            status_at(&setup.base, answered).await,
            200,
            "a token answered 200 was kept through the crash"
        );
    }
    let again = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status_at(&setup.base, &again).await, 200);
}

/// `authgate migrate-store` copies live tokens from redb to Redis and back: an operator switches
/// `store.kind` without logging every client out.
#[tokio::test]
async fn tokens_move_between_redb_and_redis_without_a_new_login() {
    let redis = RedisServer::start();
    let settings = format!(
        "  redis:\n    url: {}\n    key_prefix: \"moved:\"\n",
        redis.url
    );
    let migrate = |dir: &std::path::Path, to: &str| {
        let out = std::process::Command::new(BIN)
            .args(["migrate-store", "--config"])
            .arg(dir.join("authgate.yaml"))
            .args(["--to", to])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stop = |mut proc: Proc| {
        proc.signal("TERM");
        assert!(proc.wait_exit(Duration::from_secs(10)).is_some());
    };

    // Issued on redb.
    let on_redb = setup(&settings);
    let proc = on_redb.start("warn");
    wait_connectable(format!("127.0.0.1:{}", on_redb.port).parse().unwrap());
    let t = token(&on_redb.base, "admin", ADMIN_PASSWORD, APP).await;
    stop(proc);
    assert!(migrate(on_redb.dir.path(), "redis").contains("copied 1 live tokens"));

    // Used on Redis.
    let on_redis = setup(&format!("  kind: redis\n{settings}"));
    let proc = on_redis.start("warn");
    wait_connectable(format!("127.0.0.1:{}", on_redis.port).parse().unwrap());
    assert_eq!(status_at(&on_redis.base, &t).await, 200);
    stop(proc);

    // And back to a fresh redb directory.
    assert!(migrate(on_redis.dir.path(), "redb").contains("copied 1 live tokens"));
    let back = on_redis.yaml.replace("  kind: redis\n", "");
    let proc = Proc::start(on_redis.dir.path(), &back, "warn");
    wait_connectable(format!("127.0.0.1:{}", on_redis.port).parse().unwrap());
    assert_eq!(status_at(&on_redis.base, &t).await, 200);
    stop(proc);
}

/// Password guessing spread over replicas is counted as one: two wrong passwords on one replica
/// and one on another lock the address out on both (each replica tells the others what it
/// counted, through Redis). Alone, each replica would have seen fewer failures than the limit.
#[tokio::test]
async fn guessing_spread_over_replicas_is_locked_out_on_all() {
    let redis = RedisServer::start();
    let config = format!(
        "{}login_limits:\n  lockout_after_failures: 3\n  lockout_seconds: 60\n  refusal_delay_ms: 0\n",
        on_redis(&redis)
    );
    let (replicas, _procs) = start_replicas(2, &config);
    let (a, b) = (&replicas[0].base, &replicas[1].base);
    // Both replicas are subscribed before the guessing starts: a login round trip through each.
    token(a, "admin", ADMIN_PASSWORD, APP).await;
    token(b, "admin", ADMIN_PASSWORD, APP).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for base in [a, a, b] {
        assert_eq!(login(base, "admin", "guess", APP).await.0, 401);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for base in [a, b] {
        let (status, body) = login(base, "admin", ADMIN_PASSWORD, APP).await;
        assert_eq!(status, 429, "{base}: {body}");
    }
}

/// Two replicas on a Redis Cluster of three masters. Tokens cross replicas; then the store's
/// slot is moved to another master under them (the moved-key case): the next login (a
/// `MULTI`/`EXEC` write), use and logout follow the `MOVED` answers without a restart, the logout
/// is heard by the other replica through the cluster's pub/sub, and the keys are on the new
/// master.
#[tokio::test]
async fn a_redis_cluster_serves_replicas_and_follows_a_moved_slot() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let config = format!(
        "  kind: redis\n  redis:\n    cluster_nodes: [{}]\n    key_prefix: \"clustered:\"\n    \
         cache_max_ttl_ms: 60000\n",
        nodes.join(", ")
    );
    let (replicas, _procs) = start_replicas(2, &config);
    let (a, b) = (&replicas[0].base, &replicas[1].base);
    let t = token(a, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status_at(b, &t).await, 200, "issued on a, known on b");

    let slot = cluster.slot_of("{clustered:}");
    let moved_to = cluster.move_slot(slot);
    assert_eq!(cluster.owner_of(slot).port, moved_to);

    // Written through a connection whose slot map is now wrong.
    let after = token(a, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(
        status_at(b, &after).await,
        200,
        "read through b's stale map"
    );
    let keys = redis_cli(moved_to, &["cluster", "countkeysinslot", &slot.to_string()]);
    assert!(
        keys.parse::<u32>().unwrap() >= 2,
        "the tokens live on the new master: {keys}"
    );
    for t in [&t, &after] {
        let body = format!("gwos-api-token={t}&gwos-app-name={APP}");
        let (status, _) = text(post_form(&format!("{b}/api/auth/logout"), &body).await).await;
        assert_eq!(status, 200);
        let logged_out = Instant::now();
        while status_at(a, t).await != 401 {
            assert!(
                logged_out.elapsed() < Duration::from_secs(1),
                "a logout on b is heard on a"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A Redis that speaks only TLS and wants a password: `rediss://` with the CA from
/// `store.redis.ca_file` and the password from `store.redis.password_file` (a mounted secret,
/// trailing newline and all). Without the CA the certificate is not trusted and the gateway
/// refuses to start, naming the store.
#[tokio::test]
async fn a_tls_redis_with_a_password_from_a_secret_file() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // A name of its own: rcgen gives every certificate the same one by default, and a server
    // certificate named like its issuer reads as self-signed.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "authgate test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let (ca_file, password_file) = (secrets.path().join("ca.pem"), secrets.path().join("pass"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&password_file, "s3cret-Pa55\n").unwrap();
    let redis = RedisServer::start_configured(|port, dir| {
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let at = |file: &str| dir.join(file).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            at("server.pem"),
            "--tls-key-file".into(),
            at("server.key"),
            "--tls-ca-cert-file".into(),
            at("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            "s3cret-Pa55".into(),
        ]
    });
    let store = |ca: &str| {
        format!(
            "  kind: redis\n  redis:\n    url: \"rediss://127.0.0.1:{}\"\n    password_file: \"{}\"\n{ca}",
            redis.port,
            password_file.display()
        )
    };

    let untrusting = setup(&store(""));
    let mut proc = Proc::start(untrusting.dir.path(), &untrusting.yaml, "warn");
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .expect("no start on an untrusted certificate");
    assert!(!status.success());
    let logs = proc.logs();
    assert!(
        logs.contains("store.redis") && logs.contains("UnknownIssuer"),
        "{logs}"
    );

    let trusting = setup(&store(&format!("    ca_file: \"{}\"\n", ca_file.display())));
    let _proc = trusting.start("warn");
    wait_connectable(format!("127.0.0.1:{}", trusting.port).parse().unwrap());
    let t = token(&trusting.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status_at(&trusting.base, &t).await, 200);
    assert_eq!(ready(&trusting).await, 200);
}
