//! How many client connections are open, in all and per client address, and whether one more may
//! be: the first line against a flood of connections. No pingora types here; `proxy::connection`
//! asks at accept time and holds the permit for as long as the connection lives.
//!
//! The address is the TCP peer. A peer in `trusted_proxies` (a load balancer carrying many
//! clients) is not limited per address, only in the total.
//!
//! Near the total, the limits are *under pressure*: connections waiting for a request are closed
//! after a short wait (`limits.wait_under_pressure_ms`) instead of their usual idle limit, so that a flood of idle
//! connections from many addresses cannot hold every place for long (Envoy's overload manager
//! shortens idle timeouts the same way).

use crate::forwarded::{canonical_ip, TrustedProxies};
use crate::metrics::ConnectionLimit;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Under pressure from this share of the total on, relieved below the second.
const PRESSURE_FROM: (usize, usize) = (9, 10);
const RELIEVED_BELOW: (usize, usize) = (3, 4);

pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: u32,
    exempt: TrustedProxies,
    open: Mutex<Open>,
    open_gauge: prometheus::IntGauge,
    pressure: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only addresses with at least one connection: the map shrinks as they close.
    per_client: HashMap<IpAddr, u32>,
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    /// The address counted against, if any (not a trusted proxy, not a Unix socket).
    client: Option<IpAddr>,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("client", &self.client)
            .finish()
    }
}

impl ConnectionLimits {
    /// `open_gauge` follows the number of admitted connections.
    pub fn new(
        max_total: usize,
        max_per_client: u32,
        exempt: TrustedProxies,
        open_gauge: prometheus::IntGauge,
    ) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_client,
            exempt,
            open: Mutex::new(Open::default()),
            open_gauge,
            pressure: tokio::sync::watch::Sender::new(false),
        })
    }

    /// A place for one more connection from `peer`, or which limit is full.
    pub fn admit(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
    ) -> Result<ConnectionPermit, ConnectionLimit> {
        let client = peer
            .map(canonical_ip)
            .filter(|ip| !self.exempt.contains(*ip));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(ConnectionLimit::Total);
        }
        if let Some(ip) = client {
            let count = open.per_client.entry(ip).or_insert(0);
            if *count >= self.max_per_client {
                return Err(ConnectionLimit::PerClient);
            }
            *count += 1;
        }
        open.total += 1;
        self.open_gauge.inc();
        self.update_pressure(open.total);
        Ok(ConnectionPermit {
            limits: self.clone(),
            client,
        })
    }

    /// Whether the limits are under pressure, and its changes.
    pub fn pressure(&self) -> tokio::sync::watch::Receiver<bool> {
        self.pressure.subscribe()
    }

    fn update_pressure(&self, total: usize) {
        let share = |(n, d): (usize, usize)| self.max_total.saturating_mul(n) / d;
        self.pressure.send_if_modified(|pressed| {
            let now = if *pressed {
                total >= share(RELIEVED_BELOW)
            } else {
                total >= share(PRESSURE_FROM)
            };
            std::mem::replace(pressed, now) != now
        });
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        self.limits.update_pressure(open.total);
        if let Some(ip) = self.client {
            if let std::collections::hash_map::Entry::Occupied(mut entry) =
                open.per_client.entry(ip)
            {
                *entry.get_mut() -= 1;
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
        }
        self.limits.open_gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: u32, exempt: &[&str]) -> Arc<ConnectionLimits> {
        let exempt: Vec<String> = exempt.iter().map(|s| s.to_string()).collect();
        ConnectionLimits::new(
            total,
            per_client,
            TrustedProxies::new(&exempt),
            prometheus::IntGauge::new("open", "open").unwrap(),
        )
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn one_address_is_held_to_its_share_and_others_still_get_in() {
        let limits = limits(10, 2, &[]);
        let a1 = limits.admit(ip("10.0.0.1")).unwrap();
        let _a2 = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.1")).unwrap_err(),
            ConnectionLimit::PerClient
        );
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(
            limits.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            ConnectionLimit::PerClient
        );
        let _b = limits.admit(ip("10.0.0.2")).unwrap();
        drop(a1);
        let _a3 = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.open.lock().unwrap().total, 3);
    }

    #[test]
    fn the_total_bounds_everyone_and_closing_gives_places_back() {
        let limits = limits(2, 5, &[]);
        let a = limits.admit(ip("10.0.0.1")).unwrap();
        let _b = limits.admit(None).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.3")).unwrap_err(),
            ConnectionLimit::Total
        );
        drop(a);
        let _c = limits.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(limits.open_gauge.get(), 2);
        let gone: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!limits.open.lock().unwrap().per_client.contains_key(&gone));
    }

    #[test]
    fn pressure_rises_near_the_total_and_falls_well_below_it() {
        let limits = limits(20, 20, &[]);
        let pressure = limits.pressure();
        let mut held: Vec<_> = (0..17).map(|_| limits.admit(None).unwrap()).collect();
        assert!(!*pressure.borrow());
        held.push(limits.admit(None).unwrap());
        assert!(*pressure.borrow(), "18 of 20");
        held.truncate(15);
        assert!(*pressure.borrow(), "still 15 of 20");
        held.truncate(14);
        assert!(!*pressure.borrow(), "relieved below 15");
    }

    #[test]
    fn a_trusted_proxy_is_limited_only_in_the_total() {
        let limits = limits(4, 1, &["10.1.0.0/16"]);
        let _held: Vec<_> = (0..4)
            .map(|_| limits.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(
            limits.admit(ip("10.1.2.3")).unwrap_err(),
            ConnectionLimit::Total
        );
    }
}
