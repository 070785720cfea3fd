//! The admin listener (own port): `/metrics`, `/healthz`, `/readyz`. Nothing else is served.

use crate::auth::Authenticator;
use crate::proxy::upstream::Upstreams;
use crate::store::StoreHealth;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub auth: Arc<Authenticator>,
    pub upstreams: Arc<Upstreams>,
    pub store_health: Arc<StoreHealth>,
    pub lifecycle: Arc<super::lifecycle::Lifecycle>,
    /// Requests in progress.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static status and headers are valid")
}

fn text(status: u16, body: &str) -> http::Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

impl AdminApp {
    /// Ready when this process holds its listeners and is not stopping, the token store takes
    /// writes and answers, and at least one upstream has a healthy backend.
    async fn readiness(&self) -> Result<(), String> {
        if let Some(problem) = self.lifecycle.problem() {
            return Err(problem.into());
        }
        if let Some(problem) = self.store_health.problem() {
            return Err(format!("token store cannot be written: {problem}"));
        }
        self.auth
            .cache()
            .store()
            .count()
            .await
            .map_err(|e| format!("token store: {e}"))?;
        if !self.upstreams.pools().iter().any(|p| p.healthy()) {
            return Err("no upstream has a healthy backend".into());
        }
        Ok(())
    }

    /// Gauges read at scrape time, then the whole registry.
    async fn metrics(&self) -> Vec<u8> {
        let metrics = self.auth.metrics();
        if let Ok(live) = self.auth.cache().store().count().await {
            metrics.tokens_live.set(live as i64);
        }
        metrics
            .requests_in_flight
            .set(self.in_flight.load(std::sync::atomic::Ordering::Relaxed) as i64);
        // moka counts after its deferred bookkeeping: let it finish first (once per scrape).
        self.auth.cache().run_pending_tasks().await;
        metrics
            .cache_entries
            .set(self.auth.cache().entry_count() as i64);
        metrics.users.set(self.auth.users().len() as i64);
        let verifier = self.auth.verifier();
        metrics.password_waiting.set(verifier.waiting() as i64);
        metrics.password_running.set(verifier.running() as i64);
        metrics.encode()
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(405, "Method Not Allowed");
        }
        match req.uri.path() {
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics().await,
            ),
            "/healthz" => text(200, "ok"),
            "/readyz" => match self.readiness().await {
                Ok(()) => text(200, "ready"),
                Err(why) => text(503, &format!("not ready: {why}")),
            },
            _ => text(404, "Not Found"),
        }
    }
}
