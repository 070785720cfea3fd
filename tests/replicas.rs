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

/// Redis killed (`kill -9`) under a replica: what it had cached keeps working for at most
/// `cache_max_ttl_ms`, then every request that needs Redis fails closed with 503 and
/// `Retry-After` (a login too), and `/readyz` says not ready. Redis restarted from its
/// append-only file: everything recovers without a restart, and a token answered before the kill
/// still works.
#[tokio::test]
async fn a_redis_outage_fails_closed_and_recovers_without_losing_a_token() {
    let mut redis = RedisServer::start();
    let setup = setup(&format!(
        "  kind: redis\n  redis:\n    url: {}\n    timeout_ms: 300\n    cache_max_ttl_ms: 500\n",
        redis.url
    ));
    let _proc = setup.start("warn");
    wait_connectable(format!("127.0.0.1:{}", setup.port).parse().unwrap());
    let t = token(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status_at(&setup.base, &t).await, 200);

    redis.kill();
    let killed = Instant::now();
    // Cached: still served, for the cache's bound at most; then refused, closed.
    loop {
        let resp = get_with(&format!("{}/api/hosts", setup.base), &t, APP).await;
        match resp.status().as_u16() {
            200 => assert!(
                killed.elapsed() < Duration::from_millis(1500),
                "served from the cache past its bound"
            ),
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                break;
            }
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = login(&setup.base, "admin", ADMIN_PASSWORD, APP).await;
    assert_eq!(status, 503, "no token can be issued without its store");
    assert_eq!(ready(&setup).await, 503);

    redis.restart();
    let restarted = Instant::now();
    while ready(&setup).await != 200 {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "ready again without a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_at(&setup.base, &t).await,
        200,
        "kept through the outage"
    );
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
