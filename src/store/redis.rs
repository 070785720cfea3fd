//! Tokens in Redis (or a protocol-compatible server such as Valkey), shared by every replica.
//!
//! Keys, all under the configured prefix, in one hash tag (`{<prefix>}`, unless the prefix holds
//! a tag of its own): on a Redis Cluster every key then lives in one slot, so that the
//! multi-key transactions below (revocation by user, the per-user cap) stay atomic there too.
//! A cluster gives failover and replication to this store, not sharding; the token set of one
//! deployment fits one node with room to spare.
//! - `t:<hash>`: one token's versioned record (the same format as redb's), keyed by the hex of the
//!   token's SHA-256, never the token. Its Redis TTL is the token's remaining idle time or
//!   lifetime when written, plus a margin: a backstop that frees memory, while the gateway's own
//!   clock decides liveness (as with every store).
//! - `s:<subject>`: a set of the subject's token hashes (revocation by user or share, the
//!   per-user cap). Entries whose token has gone are dropped when the set is next read.
//! - `deadlines`: a sorted set of token hashes by deadline (`+inf` for none), for the purge and
//!   the count.
//!
//! Writes that touch several keys go in one `MULTI`/`EXEC`. The connection is redis-rs's
//! `ConnectionManager` (reconnects by itself) or its cluster connection (follows `MOVED` and
//! `ASK`, refreshes the slot map), driven by a runtime of its own so that it does not depend on
//! which of pingora's runtimes used it first.
//!
//! A revocation is published on `<prefix>revoked` in the same transaction as the delete. Every
//! replica's store is subscribed and hands each one on as an [`Announcement`], so that caches
//! drop a token revoked elsewhere within milliseconds; after a lost subscription it says
//! `Interrupted`, and the cache drops everything. (A cluster carries classic pub/sub to every
//! node, so one subscription to any node hears every replica.)

use super::record::{decode_record, encode_record};
use super::{Announcement, Purged, StoreError, TokenRecord, TokenStore};
use crate::token::TokenHash;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo, RedisFuture};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the store is, and what to reach it with. Built from `store.redis` by the server, which
/// reads the secrets.
#[derive(Clone, Default)]
pub struct Endpoint {
    /// One server's URL (`redis://` or `rediss://`), or a cluster's seed nodes.
    pub urls: Vec<String>,
    /// Whether `urls` are the seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// Replaces any password in the URLs (read from a secret file).
    pub password: Option<String>,
    /// PEM certificates to trust for `rediss://`, instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl Endpoint {
    /// One server at `url`, nothing else set.
    pub fn single(url: &str) -> Endpoint {
        Endpoint {
            urls: vec![url.to_string()],
            ..Endpoint::default()
        }
    }

    fn connection_info(&self, url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
        let mut info = url.into_connection_info()?;
        if let Some(password) = &self.password {
            info.redis.password = Some(password.clone());
        }
        Ok(info)
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }

    /// A client of one server (a cluster's node, for the subscription).
    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        let info = self.connection_info(url)?;
        match self.certificates() {
            Some(certificates) if matches!(info.addr, ConnectionAddr::TcpTls { .. }) => {
                redis::Client::build_with_tls(info, certificates)
            }
            _ => redis::Client::open(info),
        }
    }
}

/// One multiplexed connection, to a single server or to a cluster: the commands are the same.
/// Every command fails after `timeout`, whatever the client is doing meanwhile: while it
/// reconnects (retrying with backoff), a command would otherwise wait for all its attempts.
#[derive(Clone)]
struct Connection {
    server: Server,
    timeout: Duration,
}

#[derive(Clone)]
enum Server {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn no_answer(timeout: Duration) -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {timeout:?}"),
    )
    .into()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        let timeout = self.timeout;
        let answer = match &mut self.server {
            Server::Single(c) => c.req_packed_command(cmd),
            Server::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(async move {
            tokio::time::timeout(timeout, answer)
                .await
                .unwrap_or_else(|_| Err(no_answer(timeout)))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        let timeout = self.timeout;
        let answers = match &mut self.server {
            Server::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Server::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        };
        Box::pin(async move {
            tokio::time::timeout(timeout, answers)
                .await
                .unwrap_or_else(|_| Err(no_answer(timeout)))
        })
    }

    fn get_db(&self) -> i64 {
        match &self.server {
            Server::Single(c) => c.get_db(),
            Server::Cluster(c) => c.get_db(),
        }
    }
}

/// Connect to `endpoint`, failing after `timeout`. Reconnection after a lost connection: a few
/// quick attempts (100 ms, doubling, at most a second apart); the store's recovery task keeps
/// asking after that.
async fn connect(endpoint: &Endpoint, timeout: Duration) -> redis::RedisResult<Connection> {
    if endpoint.cluster {
        let mut builder = redis::cluster::ClusterClientBuilder::new(
            endpoint
                .urls
                .iter()
                .map(|url| endpoint.connection_info(url))
                .collect::<redis::RedisResult<Vec<_>>>()?,
        )
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(100)
        .max_retry_wait(1000);
        if let Some(certificates) = endpoint.certificates() {
            builder = builder.certs(certificates);
        }
        let client = builder.build()?;
        let server = Server::Cluster(client.get_async_connection().await?);
        return Ok(Connection { server, timeout });
    }
    let url = endpoint
        .urls
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_factor(100)
        .set_exponent_base(2)
        .set_max_delay(1000)
        .set_number_of_retries(3);
    let manager = ConnectionManager::new_with_config(endpoint.client(url)?, config).await?;
    Ok(Connection {
        server: Server::Single(manager),
        timeout,
    })
}

/// The prefix every key starts with: the configured one inside a hash tag, unless it holds one.
fn tagged(prefix: &str) -> String {
    match prefix.find('{') {
        Some(open) if prefix[open..].find('}').is_some_and(|close| close > 1) => prefix.into(),
        _ => format!("{{{prefix}}}"),
    }
}

/// Kept past a token's deadline before Redis drops it by itself: the gateway's clock decides, and
/// a little drift between replicas and Redis must not end a live token early.
const TTL_MARGIN_MS: u64 = 60_000;
/// Deadlines read per purge round trip.
const PURGE_BATCH: isize = 1000;

pub struct RedisStore {
    conn: Connection,
    /// The configured prefix in its hash tag (`tagged`).
    prefix: String,
    /// Marks this replica's own messages, which its subscription skips.
    replica: String,
    announcements: Mutex<Option<mpsc::UnboundedReceiver<Announcement>>>,
    /// Drives the connection and the subscription; lives as long as the store.
    _runtime: tokio::runtime::Runtime,
}

/// Members with their hash and record, as `RedisStore::records_of` reads them.
type RecordsOf<'m> = Vec<(
    &'m String,
    Option<TokenHash>,
    Option<Result<TokenRecord, StoreError>>,
)>;

/// Where revocations are published.
fn revoked_channel(prefix: &str) -> String {
    format!("{prefix}revoked")
}

/// Where replicas tell each other what else they counted (`tell_replicas`).
fn replicas_channel(prefix: &str) -> String {
    format!("{prefix}replicas")
}

/// Subscribe to the revocation and replica channels and hand each message on, for as long as
/// anyone listens; resubscribe after a loss (100 ms, doubling, at most 2 s apart; the next seed
/// node of a cluster each time) and say `Interrupted` then.
async fn follow_revocations(
    endpoint: Endpoint,
    prefix: String,
    replica: String,
    feed: mpsc::UnboundedSender<Announcement>,
) {
    let (revoked, replicas) = (revoked_channel(&prefix), replicas_channel(&prefix));
    let own = format!("{replica}:");
    let (mut wait, mut subscribed_before) = (Duration::from_millis(100), false);
    let mut nodes = endpoint.urls.iter().cycle();
    while !feed.is_closed() {
        let client = nodes.next().map(|url| endpoint.client(url));
        let Some(Ok(client)) = client else {
            return; // no URL, or one that does not parse: `connect` has said so already
        };
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&[&revoked, &replicas]).await.is_ok() {
                if subscribed_before {
                    let _ = feed.send(Announcement::Interrupted);
                }
                subscribed_before = true;
                wait = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload = message.get_payload_bytes();
                    let announcement = if message.get_channel_name() == replicas {
                        from_replica(payload, &own)
                    } else {
                        let mut hash = [0u8; 32];
                        hex::decode_to_slice(payload, &mut hash)
                            .ok()
                            .map(|()| Announcement::Revoked(TokenHash(hash)))
                    };
                    if let Some(announcement) = announcement {
                        if feed.send(announcement).is_err() {
                            return;
                        }
                    }
                }
                tracing::warn!("redis revocation feed lost; resubscribing");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// A replica's message (`<its mark>:<message>`), unless it is this replica's own.
fn from_replica(payload: &[u8], own: &str) -> Option<Announcement> {
    if payload.starts_with(own.as_bytes()) {
        return None;
    }
    let colon = payload.iter().position(|b| *b == b':')?;
    Some(Announcement::FromReplica(payload[colon + 1..].to_vec()))
}

fn unavailable(error: redis::RedisError) -> StoreError {
    match error.code() {
        // Someone else's key of another type under our prefix: not a passing outage.
        Some("WRONGTYPE") => StoreError::Damaged(format!("redis: {error}")),
        _ => StoreError::Unavailable(format!("redis: {error}")),
    }
}

/// The Redis TTL of a record written now: its remaining time plus the margin; none without a
/// deadline.
fn ttl_ms(record: &TokenRecord) -> Option<u64> {
    record.expires_at().map(|deadline| {
        deadline
            .saturating_sub(record.last_used)
            .saturating_add(TTL_MARGIN_MS)
    })
}

fn deadline_score(record: &TokenRecord) -> f64 {
    record.expires_at().map_or(f64::INFINITY, |d| d as f64)
}

impl RedisStore {
    /// Connect to `endpoint`. Every command fails after `timeout` rather than wait for a server
    /// that does not answer.
    pub fn connect(
        endpoint: &Endpoint,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("authgate-redis")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("redis runtime: {e}")))?;
        // On a thread of its own: the caller may itself be inside a runtime (the test harness).
        let conn = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // The client tries four times, each bounded by `timeout`, and then says why
                    // it failed; this bound only stops a hang. (The timer is made inside: it
                    // needs the runtime.)
                    let bound = timeout * 4 + Duration::from_secs(2);
                    runtime.block_on(async {
                        tokio::time::timeout(bound, connect(endpoint, timeout)).await
                    })
                })
                .join()
        })
        .map_err(|_| StoreError::Unavailable("redis: connecting panicked".into()))?
        .map_err(|_| StoreError::Unavailable("redis: no connection, nor an error".into()))?
        .map_err(unavailable)?;
        let prefix = tagged(prefix);
        let (feed, announcements) = mpsc::unbounded_channel();
        let replica = hex::encode(rand::random::<u64>().to_be_bytes());
        runtime.spawn(follow_revocations(
            endpoint.clone(),
            prefix.clone(),
            replica.clone(),
            feed,
        ));
        Ok(RedisStore {
            conn,
            prefix,
            replica,
            announcements: Mutex::new(Some(announcements)),
            _runtime: runtime,
        })
    }

    fn token_key(&self, hash: &TokenHash) -> String {
        format!("{}t:{}", self.prefix, hex::encode(hash.0))
    }

    fn subject_key(&self, subject: &str) -> String {
        format!("{}s:{subject}", self.prefix)
    }

    fn deadlines_key(&self) -> String {
        format!("{}deadlines", self.prefix)
    }

    fn conn(&self) -> Connection {
        // A handle onto the one multiplexed connection: cloning is cheap.
        self.conn.clone()
    }

    async fn record_at(&self, key: &str) -> Result<Option<TokenRecord>, StoreError> {
        let bytes: Option<Vec<u8>> = self.conn().get(key).await.map_err(unavailable)?;
        bytes.map(|b| decode_record(&b)).transpose()
    }

    /// Write `record` (and its deadline) for `hash`; `only_if_present` never brings back a token
    /// revoked meanwhile.
    async fn write(
        &self,
        hash: &TokenHash,
        record: &TokenRecord,
        only_if_present: bool,
    ) -> Result<(), StoreError> {
        let member = hex::encode(hash.0);
        let mut set = redis::cmd("SET");
        set.arg(self.token_key(hash)).arg(encode_record(record));
        if let Some(ttl) = ttl_ms(record) {
            set.arg("PX").arg(ttl);
        }
        let mut deadline = redis::cmd("ZADD");
        deadline.arg(self.deadlines_key());
        if only_if_present {
            set.arg("XX");
            deadline.arg("XX");
        }
        deadline.arg(deadline_score(record)).arg(&member);
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(set).ignore();
        if !only_if_present {
            pipe.sadd(self.subject_key(&record.subject), &member)
                .ignore();
        }
        pipe.add_command(deadline).ignore();
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    /// The records of these members (hex hashes), in one round trip: each member with its hash
    /// (if it is one) and its record (absent, decoded, or not decodable).
    async fn records_of<'m>(&self, members: &'m [String]) -> Result<RecordsOf<'m>, StoreError> {
        let keys: Vec<String> = members
            .iter()
            .map(|m| format!("{}t:{m}", self.prefix))
            .collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .zip(values)
            .map(|(member, value)| {
                let mut hash = [0u8; 32];
                let hash = hex::decode_to_slice(member, &mut hash)
                    .ok()
                    .map(|()| TokenHash(hash));
                (member, hash, value.map(|bytes| decode_record(&bytes)))
            })
            .collect())
    }

    /// Remove a token's key and index entries, and tell every replica when `announce`; whether
    /// its key was there.
    async fn remove(
        &self,
        member: &str,
        subject: Option<&str>,
        announce: bool,
    ) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(format!("{}t:{member}", self.prefix))
            .zrem(self.deadlines_key(), member)
            .ignore();
        if let Some(subject) = subject {
            pipe.srem(self.subject_key(subject), member).ignore();
        }
        if announce {
            pipe.publish(revoked_channel(&self.prefix), member).ignore();
        }
        let (deleted,): (u64,) = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn insert(&self, hash: TokenHash, record: TokenRecord) -> Result<(), StoreError> {
        self.write(&hash, &record, false).await
    }

    async fn get(&self, hash: TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.record_at(&self.token_key(&hash)).await
    }

    async fn revoke(&self, hash: TokenHash) -> Result<bool, StoreError> {
        let subject = match self.record_at(&self.token_key(&hash)).await {
            Ok(record) => record.map(|r| r.subject),
            // An unreadable record is still removed; its subject's set drops it when next read.
            Err(StoreError::Undecodable(_)) => None,
            Err(e) => return Err(e),
        };
        self.remove(&hex::encode(hash.0), subject.as_deref(), true)
            .await
    }

    async fn touch(&self, uses: Vec<(TokenHash, u64)>) -> Result<(), StoreError> {
        // A read and a write each: a batch is a write-back of the cache, off the request path.
        for (hash, last_used) in uses {
            let Some(mut record) = self.record_at(&self.token_key(&hash)).await? else {
                continue;
            };
            if last_used > record.last_used {
                record.last_used = last_used;
                self.write(&hash, &record, true).await?;
            }
        }
        Ok(())
    }

    async fn tokens_of(&self, subject: &str) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        let set = self.subject_key(subject);
        let members: Vec<String> = self.conn().smembers(&set).await.map_err(unavailable)?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let (mut found, mut gone) = (Vec::new(), Vec::new());
        for (member, hash, record) in self.records_of(&members).await? {
            match (hash, record) {
                (Some(hash), Some(Ok(record))) if record.subject == subject => {
                    found.push((hash, record))
                }
                (_, Some(Err(_))) => {} // kept: an unreadable record is never deleted here
                _ => gone.push(member.clone()),
            }
        }
        if !gone.is_empty() {
            let _: () = self.conn().srem(&set, &gone).await.map_err(unavailable)?;
        }
        Ok(found)
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        loop {
            // Dead when its deadline is not after now (`TokenRecord::is_live_at`). Records that
            // cannot be decoded are kept (as redb keeps them; their key's TTL still ends them),
            // so the next batch starts after them.
            let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.deadlines_key())
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(purged.undecodable)
                .arg(PURGE_BATCH)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            for member in &due {
                let subject = match self.record_at(&format!("{}t:{member}", self.prefix)).await {
                    Ok(record) => record.map(|r| r.subject),
                    Err(StoreError::Undecodable(_)) => {
                        purged.undecodable += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // Dead already on every replica's clock: nothing to announce.
                if self.remove(member, subject.as_deref(), false).await? {
                    purged.deleted += 1;
                }
            }
            if due.len() < PURGE_BATCH as usize {
                return Ok(purged);
            }
        }
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.conn()
            .zcard(self.deadlines_key())
            .await
            .map_err(unavailable)
    }

    async fn live(&self, now: u64) -> Result<Vec<(TokenHash, TokenRecord)>, StoreError> {
        // Live: a deadline after now (`TokenRecord::is_live_at`), or none.
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.deadlines_key())
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut live = Vec::with_capacity(members.len());
        for batch in members.chunks(PURGE_BATCH as usize) {
            for (_, hash, record) in self.records_of(batch).await? {
                if let (Some(hash), Some(Ok(record))) = (hash, record) {
                    live.push((hash, record));
                }
            }
        }
        Ok(live)
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn tell_replicas(&self, message: Vec<u8>) -> Result<(), StoreError> {
        let mut marked = format!("{}:", self.replica).into_bytes();
        marked.extend_from_slice(&message);
        self.conn()
            .publish(replicas_channel(&self.prefix), marked)
            .await
            .map_err(unavailable)
    }

    fn announcements(&self) -> Option<mpsc::UnboundedReceiver<Announcement>> {
        self.announcements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `redis-server` of the test's own, on a free port in a temporary directory, stopped when
    /// dropped. Never one already running.
    pub struct RedisServer {
        child: std::process::Child,
        pub url: String,
        _dir: tempfile::TempDir,
    }

    impl RedisServer {
        pub fn start() -> RedisServer {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (.ci/run installs it)");
            let url = format!("redis://127.0.0.1:{port}");
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            RedisServer {
                child,
                url,
                _dir: dir,
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn redis_store_meets_the_contract_and_keeps_to_its_prefix() {
        let server = RedisServer::start();
        let store = RedisStore::connect(
            &Endpoint::single(&server.url),
            "t1:",
            Duration::from_secs(2),
        )
        .unwrap();
        let other = RedisStore::connect(
            &Endpoint::single(&server.url),
            "t2:",
            Duration::from_secs(2),
        )
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            super::super::contract::run_all(&store).await;
            assert_eq!(
                other.count().await.unwrap(),
                0,
                "another prefix sees nothing"
            );
            // Only hashes are stored: no key or value holds the token itself.
            let token = "the-token-itself";
            store
                .insert(
                    TokenHash::of(token),
                    super::super::contract::record("carol", 1_000),
                )
                .await
                .unwrap();
            let mut conn = store.conn();
            let keys: Vec<String> = conn.keys("*").await.unwrap();
            assert!(keys
                .iter()
                .all(|k| k.starts_with("{t1:}") && !k.contains(token)));
            let ttl: i64 = conn
                .pttl(store.token_key(&TokenHash::of(token)))
                .await
                .unwrap();
            assert!(
                (1..=61_000).contains(&ttl),
                "remaining idle time plus margin: {ttl}"
            );
        });
    }

    #[test]
    fn a_revocation_on_one_store_is_announced_to_another() {
        let server = RedisServer::start();
        let one = RedisStore::connect(&Endpoint::single(&server.url), "a:", Duration::from_secs(2))
            .unwrap();
        let other =
            RedisStore::connect(&Endpoint::single(&server.url), "a:", Duration::from_secs(2))
                .unwrap();
        let mut feed = other.announcements().expect("given once");
        assert!(other.announcements().is_none());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let hash = TokenHash::of("t");
            one.insert(hash, super::super::contract::record("dave", 1_000))
                .await
                .unwrap();
            // The subscription is made in the background: revoke until it is heard.
            let heard = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    one.revoke(hash).await.unwrap();
                    if let Ok(Some(heard)) =
                        tokio::time::timeout(Duration::from_millis(100), feed.recv()).await
                    {
                        return heard;
                    }
                }
            })
            .await
            .expect("announced");
            assert_eq!(heard, Announcement::Revoked(hash));
        });
    }

    #[test]
    fn every_key_shares_one_hash_tag() {
        assert_eq!(tagged("authgate:"), "{authgate:}");
        assert_eq!(tagged("{shop}:auth:"), "{shop}:auth:");
        // `{}` is no tag to Redis (the whole key would be hashed): wrapped like any prefix.
        assert_eq!(tagged("a{}b:"), "{a{}b:}");
    }

    #[test]
    fn an_unreachable_redis_is_unavailable_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let error = RedisStore::connect(
            &Endpoint::single(&format!("redis://127.0.0.1:{port}")),
            "x:",
            Duration::from_millis(300),
        )
        .err()
        .expect("nothing listens there");
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
