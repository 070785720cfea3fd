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

async fn status_at(base: &str, token: &str) -> u16 {
    status_with(&format!("{base}/api/hosts"), token, APP).await
}

/// Log in on the first replica, use the token on the second and third, log out on the third:
/// the token is refused on the third at once and on the others within milliseconds (the
/// revocation is published with the delete, and each replica drops it from its cache).
#[tokio::test]
async fn three_replicas_share_tokens_and_a_logout_holds_on_all_within_a_second() {
    let redis = RedisServer::start();
    let replicas: Vec<Setup> = (0..3).map(|_| setup(&on_redis(&redis))).collect();
    let procs: Vec<Proc> = replicas.iter().map(|r| r.start("warn")).collect();
    for r in &replicas {
        wait_connectable(format!("127.0.0.1:{}", r.port).parse().unwrap());
    }
    let (a, b, c) = (&replicas[0].base, &replicas[1].base, &replicas[2].base);
    let mut unseen = Vec::new();
    for _ in 0..30 {
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
        "logout seen on every replica after: p50 {:?}, slowest of {} {:?}",
        unseen[unseen.len() / 2],
        unseen.len(),
        unseen[unseen.len() - 1]
    );
    drop(procs);
}
