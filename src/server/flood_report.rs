//! One summary line, every few seconds while it lasts, for what a flood makes happen many times a
//! second: connections refused, cut off or shed, logins limited, password checks refused, audit lines
//! held back. Each of those is counted in the metrics and logged one by one only at DEBUG (or,
//! for audit lines, within a budget); this is what an operator reading the log sees of it.

use crate::auth::guard::Limit;
use crate::auth::Authenticator;
use crate::metrics::{CloseReason, ConnectionLimit, Metrics};
use crate::telemetry::LogBudget;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub struct FloodReport {
    pub auth: Arc<Authenticator>,
    pub audit_budget: Arc<LogBudget>,
    pub every: Duration,
}

/// The counters a flood moves, read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    refused_total: u64,
    refused_per_client: u64,
    header_timeouts: u64,
    shed: u64,
    logins_limited: u64,
    password_checks_refused: u64,
}

impl Counts {
    fn read(metrics: &Metrics) -> Counts {
        let refused = |limit: ConnectionLimit| {
            metrics
                .connections_refused
                .with_label_values(&[limit.as_str()])
                .get()
        };
        let closed = |reason: CloseReason| {
            metrics
                .connections_closed
                .with_label_values(&[reason.as_str()])
                .get()
        };
        Counts {
            refused_total: refused(ConnectionLimit::Total),
            refused_per_client: refused(ConnectionLimit::PerClient),
            header_timeouts: closed(CloseReason::HeaderTimeout),
            shed: closed(CloseReason::Shed),
            logins_limited: Limit::ALL
                .iter()
                .map(|l| {
                    metrics
                        .logins_limited
                        .with_label_values(&[l.as_str()])
                        .get()
                })
                .sum(),
            password_checks_refused: metrics.password_rejected.get(),
        }
    }

    fn since(self, earlier: Counts) -> Counts {
        Counts {
            refused_total: self.refused_total - earlier.refused_total,
            refused_per_client: self.refused_per_client - earlier.refused_per_client,
            header_timeouts: self.header_timeouts - earlier.header_timeouts,
            shed: self.shed - earlier.shed,
            logins_limited: self.logins_limited - earlier.logins_limited,
            password_checks_refused: self.password_checks_refused - earlier.password_checks_refused,
        }
    }
}

#[async_trait]
impl BackgroundService for FloodReport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let metrics = self.auth.metrics();
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut before = Counts::read(metrics);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticks.tick() => {}
            }
            let now = Counts::read(metrics);
            let new = now.since(before);
            before = now;
            let audit_lines_held_back = self.audit_budget.take_suppressed();
            if new == Counts::default() && audit_lines_held_back == 0 {
                continue;
            }
            tracing::warn!(
                target: "authgate::flood",
                seconds = self.every.as_secs(),
                connections_refused_total_limit = new.refused_total,
                connections_refused_per_client_limit = new.refused_per_client,
                header_timeouts = new.header_timeouts,
                waiting_connections_shed = new.shed,
                logins_limited = new.logins_limited,
                password_checks_refused = new.password_checks_refused,
                audit_lines_held_back,
                "refused or cut off under load (counts since the last such line; see the metrics)"
            );
        }
    }
}
