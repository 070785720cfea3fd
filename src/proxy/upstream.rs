//! Upstream pools (pingora load balancers with TCP health checks) and the path-prefix route table.

use crate::config::{Config, UpstreamConfig};
use crate::target::has_prefix;
use http::HeaderValue;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::services::background::{background_service, GenBackgroundService};
use std::sync::Arc;
use std::time::Duration;

pub struct Pool {
    pub name: String,
    /// `Host` for requests that arrive without one (HTTP/1.0).
    pub host: HeaderValue,
    lb: Arc<LoadBalancer<RoundRobin>>,
    /// One ready-made peer per backend, timeouts set: a request only clones one.
    peers: Vec<HttpPeer>,
}

fn peer_template(addr: std::net::SocketAddr, timeouts: &UpstreamConfig) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    let ms = Duration::from_millis;
    peer.options.connection_timeout = Some(ms(timeouts.connect_timeout_ms.get()));
    peer.options.total_connection_timeout = Some(ms(timeouts.connect_timeout_ms.get()));
    peer.options.read_timeout = Some(ms(timeouts.read_timeout_ms.get()));
    peer.options.write_timeout = Some(ms(timeouts.write_timeout_ms.get()));
    peer.options.idle_timeout = Some(ms(timeouts.idle_timeout_ms));
    peer
}

impl Pool {
    /// A peer for the next healthy backend. When none passes its health check, still try one: the
    /// check may simply not have seen it come up yet, and a dead one fails fast with 502 anyway.
    /// So a pool of one backend has nothing to choose, and skips the balancer.
    pub fn peer(&self) -> Option<HttpPeer> {
        if let [only] = self.peers.as_slice() {
            return Some(only.clone());
        }
        let backend = self
            .lb
            .select(b"", 256)
            .or_else(|| self.lb.backends().get_backend().iter().next().cloned())?;
        let addr = backend.addr.as_inet()?;
        self.peers
            .iter()
            .find(|p| p._address.as_inet() == Some(addr))
            .cloned()
    }

    /// At least one backend passes its health check.
    pub fn healthy(&self) -> bool {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .any(|b| self.lb.backends().ready(b))
    }
}

pub struct Upstreams {
    pools: Vec<Pool>,
    /// (canonical prefix, pool index), longest prefix first.
    routes: Vec<(String, usize)>,
    default: usize,
}

pub type HealthChecks = Vec<GenBackgroundService<LoadBalancer<RoundRobin>>>;

impl Upstreams {
    /// Build the pools from a validated config, with one health-check service each.
    pub fn build(config: &Config) -> std::io::Result<(Upstreams, HealthChecks)> {
        let mut pools = Vec::new();
        let mut checks = Vec::new();
        for (name, upstream) in &config.upstreams {
            let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(
                upstream.addresses.iter().map(String::as_str),
            )?;
            let mut check = TcpHealthCheck::new();
            // One failed probe (say, at start-up, before the backend listens) is not an outage.
            check.consecutive_failure = 2;
            lb.set_health_check(check);
            lb.health_check_frequency = Some(Duration::from_millis(
                upstream.health_check_interval_ms.get(),
            ));
            let peers = lb
                .backends()
                .get_backend()
                .iter()
                .filter_map(|b| b.addr.as_inet().map(|a| peer_template(*a, upstream)))
                .collect();
            let service = background_service(&format!("health check {name}"), lb);
            let host = upstream.host.as_ref().unwrap_or(&upstream.addresses[0]);
            pools.push(Pool {
                name: name.clone(),
                host: HeaderValue::from_str(host)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
                lb: service.task(),
                peers,
            });
            checks.push(service);
        }
        let index = |name: &str| pools.iter().position(|p| p.name == name);
        let mut routes: Vec<(String, usize)> = config
            .routes
            .iter()
            .filter_map(|r| {
                Some((
                    r.prefix.trim_end_matches('/').to_string(),
                    index(&r.upstream)?,
                ))
            })
            .collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let default = index(&config.default_upstream).unwrap_or(0);
        Ok((
            Upstreams {
                pools,
                routes,
                default,
            },
            checks,
        ))
    }

    /// The pool for a canonical path: the most specific matching prefix, else the default.
    pub fn route(&self, path: &str) -> &Pool {
        &self.pools[self.route_index(path)]
    }

    /// The position in `pools()` of the pool for a canonical path.
    pub fn route_index(&self, path: &str) -> usize {
        self.routes
            .iter()
            .find(|(prefix, _)| has_prefix(path, prefix))
            .map_or(self.default, |(_, i)| *i)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }
}
