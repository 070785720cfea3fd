//! How the real process stops.
//!
//! - SIGTERM or SIGINT: not ready at once; keep serving for `shutdown.delay_seconds` (so that
//!   load balancers stop sending first), then stop accepting, let in-flight requests finish (the
//!   configured grace is the bound), close the token store, exit 0.
//! - A second SIGTERM or SIGINT during the delay or the drain: close the store and exit at once
//!   with 130 (the Ctrl-C people expect).
//! - SIGQUIT: hand the listeners to a new process (pingora's graceful upgrade).
//!
//! Why not pingora's own handling: its SIGINT path (`FastShutdown`) tears the runtimes down under
//! the listeners, whose accept loops can then spin for ever on "Accept() failed … Tokio context
//! being shutdown"; its SIGTERM path sleeps the whole grace even with nothing in flight, and
//! ignores further signals. So both signals take the graceful path, and a drain thread of ours
//! ends the process as soon as the drain is done, or at the second signal, always after closing
//! the store.

use super::lifecycle::Lifecycle;
use crate::store::TokenStore;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

/// Exit status when a second signal cut the drain short.
pub const EXIT_INTERRUPTED: i32 = 130;

pub struct Shutdown {
    in_flight: Arc<AtomicUsize>,
    store: Arc<dyn TokenStore>,
    lifecycle: Arc<Lifecycle>,
    /// `shutdown.delay_seconds`.
    delay: Duration,
    /// pingora's phases: the drain starts counting once the listeners have been told to stop.
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Shutdown {
    pub fn new(
        in_flight: Arc<AtomicUsize>,
        store: Arc<dyn TokenStore>,
        lifecycle: Arc<Lifecycle>,
        delay: Duration,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Arc<Shutdown> {
        Arc::new(Shutdown {
            in_flight,
            store,
            lifecycle,
            delay,
            phases: Mutex::new(Some(phases)),
        })
    }

    /// What pingora waits on for its first signal.
    pub fn signals(self: &Arc<Self>) -> Box<dyn ShutdownSignalWatch> {
        Box::new(Signals(self.clone()))
    }

    /// Close the token store (idempotent). Every way out of the process goes through here.
    pub fn close_store(&self) {
        match self.store.close() {
            Ok(()) => tracing::info!("token store closed"),
            Err(e) => tracing::error!(error = %e, "token store did not close cleanly"),
        }
    }

    /// Once pingora has told the listeners to stop, wait until no request is in flight.
    async fn drained(&self) {
        let phases = self
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut phases) = phases {
            let listeners_told = async {
                loop {
                    match phases.recv().await {
                        Ok(ExecutionPhase::ShutdownStarted)
                        | Err(broadcast::error::RecvError::Closed) => return,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), listeners_told).await;
        }
        // A connection accepted just before the listeners stopped gets to start its request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// On its own thread (pingora's runtimes are winding down): drain, or take a second signal,
    /// then close the store and exit.
    fn drain_then_exit(self: Arc<Self>) {
        let spawned = std::thread::Builder::new()
            .name("authgate-drain".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let code = match runtime {
                    Ok(runtime) => runtime.block_on(self.drain_or_interrupt()),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch the drain; pingora's grace will end it");
                        return;
                    }
                };
                self.close_store();
                super::exit(code);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch the drain; pingora's grace will end it");
        }
    }

    async fn drain_or_interrupt(&self) -> i32 {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            self.drained().await;
            return 0;
        };
        tokio::select! {
            _ = self.drained() => {
                tracing::info!("in-flight requests done, exiting");
                0
            }
            _ = term.recv() => self.interrupted("SIGTERM"),
            _ = int.recv() => self.interrupted("SIGINT"),
        }
    }

    fn interrupted(&self, signal: &str) -> i32 {
        tracing::warn!(
            signal,
            in_flight = self.in_flight.load(Ordering::Acquire),
            "second signal while stopping: exiting now"
        );
        EXIT_INTERRUPTED
    }
}

struct Signals(Arc<Shutdown>);

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
        };
        self.0.lifecycle.stop();
        if !self.0.delay.is_zero() {
            tracing::info!(
                signal = name,
                delay_ms = self.0.delay.as_millis() as u64,
                "stopping: not ready, still serving until load balancers stop sending \
                 (a second signal exits at once)"
            );
            let second = tokio::select! {
                _ = tokio::time::sleep(self.0.delay) => None,
                _ = term.recv() => Some("SIGTERM"),
                _ = int.recv() => Some("SIGINT"),
            };
            if let Some(second) = second {
                let code = self.0.interrupted(second);
                self.0.close_store();
                super::exit(code);
            }
        }
        tracing::info!(
            signal = name,
            in_flight = self.0.in_flight.load(Ordering::Acquire),
            "stopping: no new connections; in-flight requests finish, then the store closes \
             (a second signal exits at once)"
        );
        self.0.clone().drain_then_exit();
        ShutdownSignal::GracefulTerminate
    }
}
