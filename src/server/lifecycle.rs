//! What `/readyz` knows beyond the store and the upstreams: whether this process really holds
//! its listeners yet, and whether it is stopping.
//!
//! pingora binds in the background and retries a taken port for ever. So after start-up checked
//! the ports were free, `ListenWatch` waits (at most `bind_timeout_ms`) until this very process
//! listens on the main and admin addresses; until then the gateway is not ready, and past it the
//! process exits with an error rather than run while someone else gets its traffic.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status when a listener never became this process's own.
pub const EXIT_NOT_LISTENING: i32 = 3;

#[derive(Debug)]
pub struct Lifecycle {
    /// `(config key, address)` of the listeners that must be this process's own.
    addresses: Vec<(&'static str, SocketAddr)>,
    listening: AtomicBool,
    stopping: AtomicBool,
}

impl Lifecycle {
    pub fn new(addresses: Vec<(&'static str, SocketAddr)>) -> Lifecycle {
        // Without Linux's socket table there is nothing to check against.
        let checkable = std::path::Path::new("/proc/self/net/tcp").exists();
        Lifecycle {
            addresses,
            listening: AtomicBool::new(!checkable),
            stopping: AtomicBool::new(false),
        }
    }

    /// The listeners that are not (yet) this process's own.
    fn not_listening(&self) -> Vec<&(&'static str, SocketAddr)> {
        self.addresses
            .iter()
            .filter(|(_, addr)| !crate::listening::listens_on(None, *addr))
            .collect()
    }

    /// Whether every listener is this process's own (checked until it is, then remembered).
    fn listening(&self) -> bool {
        if self.listening.load(Ordering::Acquire) {
            return true;
        }
        let all = self.not_listening().is_empty();
        if all {
            self.listening.store(true, Ordering::Release);
        }
        all
    }

    /// Why the process is not ready, as far as its own state goes.
    pub fn problem(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.listening() {
            Some("listeners not bound yet")
        } else {
            None
        }
    }

    /// From the first stop signal on: not ready, so that load balancers stop sending.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Exits the process when a listener is not its own within `timeout` of the start.
pub struct ListenWatch {
    pub lifecycle: Arc<Lifecycle>,
    pub timeout: Duration,
}

#[async_trait]
impl BackgroundService for ListenWatch {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let started = Instant::now();
        while !self.lifecycle.listening() {
            if started.elapsed() > self.timeout {
                for (key, addr) in self.lifecycle.not_listening() {
                    tracing::error!(
                        key,
                        address = %addr,
                        after_ms = self.timeout.as_millis() as u64,
                        "not listening: the address is held by another process; exiting"
                    );
                }
                super::exit(EXIT_NOT_LISTENING);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_this_process_listens_and_until_it_stops() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lifecycle = Lifecycle::new(vec![("listen", addr)]);
        drop(listener);
        assert_eq!(lifecycle.problem(), Some("listeners not bound yet"));
        let listener = std::net::TcpListener::bind(addr).unwrap();
        assert_eq!(lifecycle.problem(), None);
        drop(listener);
        assert_eq!(lifecycle.problem(), None, "remembered once bound");
        lifecycle.stop();
        assert_eq!(lifecycle.problem(), Some("shutting down"));
    }
}
