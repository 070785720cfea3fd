//! Signals for the real process: SIGTERM drains and exits as soon as in-flight requests are done
//! (or at the configured grace), SIGINT exits at once, SIGQUIT hands over to a graceful upgrade.
//!
//! pingora alone would sleep the whole grace period after SIGTERM even when nothing is in flight.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub struct SignalWatch {
    pub in_flight: Arc<AtomicUsize>,
}

/// Exit the process once no request is in flight (pingora's grace sleep remains the upper bound).
fn exit_when_drained(in_flight: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        // Let the listeners close first, so no new request slips in after the count reads zero.
        std::thread::sleep(Duration::from_millis(200));
        while in_flight.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!("in-flight requests done, exiting");
        std::process::exit(0);
    });
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining in-flight requests");
                exit_when_drained(self.in_flight.clone());
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: exiting now");
                ShutdownSignal::FastShutdown
            }
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}
