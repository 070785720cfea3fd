//! A real `redis-server` of the test's own: a free port, a temporary directory, append-only file
//! on (a token answered before a crash must survive it), stopped when dropped. Never one that is
//! already running.

use super::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub url: String,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// With these extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_configured(|_, _| extra.iter().map(|a| a.to_string()).collect())
    }

    /// With the extra arguments `extra` gives for the server's port and directory (where it may
    /// write files first).
    pub fn start_configured(
        extra: impl FnOnce(u16, &std::path::Path) -> Vec<String>,
    ) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let extra = extra(port, dir.path());
        let child = RedisServer::spawn(port, dir.path(), &extra);
        RedisServer {
            child,
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir,
            extra,
        }
    }

    fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            // A server that exits at once says why in its log.
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server {extra:?} exited ({status}): {said}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// `kill -9`, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same port and directory (its append-only file).
    pub fn restart(&mut self) {
        self.kill();
        self.child = RedisServer::spawn(self.port, self.dir.path(), &self.extra);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p <port> <args>`: its output, trimmed. Panics when it fails.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli comes with redis-server");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A Redis Cluster of three masters of the test's own (`--cluster-enabled yes`, then
/// `redis-cli --cluster create`), stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // The bus port must be given: Redis's default, port + 10000, does not exist
                // above 55535 (where a free port may well be) and may be taken below it.
                RedisServer::start_configured(|_, _| {
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-port",
                        &free_port().to_string(),
                    ]
                    .map(String::from)
                    .to_vec()
                })
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(nodes[0].port, &create);
        let started = Instant::now();
        for node in &nodes {
            while !redis_cli(node.port, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "cluster not ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The seed nodes, as `store.redis.cluster_nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        redis_cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .parse()
            .unwrap()
    }

    /// The node that serves `slot` now.
    pub fn owner_of(&self, slot: u16) -> &RedisServer {
        let nodes = redis_cli(self.nodes[0].port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let mut ends = range.splitn(2, '-').map(|n| n.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(first)), Some(Ok(last))) => (first..=last).contains(&slot),
                    (Some(Ok(only)), None) => only == slot,
                    _ => false,
                }
            });
            if serves {
                let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().find(|n| n.port == port).unwrap();
            }
        }
        panic!("no node serves slot {slot}");
    }

    /// Move `slot` and its keys to another master, the way `redis-cli --cluster reshard` does
    /// (IMPORTING/MIGRATING, MIGRATE, then SETSLOT NODE everywhere). Returns the new owner's port.
    pub fn move_slot(&self, slot: u16) -> u16 {
        let from = self.owner_of(slot).port;
        let to = self.nodes.iter().find(|n| n.port != from).unwrap().port;
        let id = |port| redis_cli(port, &["cluster", "myid"]);
        let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
        redis_cli(to, &["cluster", "setslot", &slot, "importing", &from_id]);
        redis_cli(from, &["cluster", "setslot", &slot, "migrating", &to_id]);
        loop {
            let keys = redis_cli(from, &["cluster", "getkeysinslot", &slot, "100"]);
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["migrate", "127.0.0.1"];
            let to_port = to.to_string();
            migrate.extend([to_port.as_str(), "", "0", "5000", "KEYS"]);
            migrate.extend(keys.lines());
            redis_cli(from, &migrate);
        }
        for node in &self.nodes {
            redis_cli(node.port, &["cluster", "setslot", &slot, "node", &to_id]);
        }
        to
    }
}
