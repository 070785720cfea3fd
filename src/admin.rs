//! The admin listener (own port): liveness and readiness probes. Nothing else is served.

use crate::store::TokenStore;
use crate::upstream::Upstreams;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub store: Arc<dyn TokenStore>,
    pub upstreams: Arc<Upstreams>,
}

fn text(status: u16, body: &str) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body.as_bytes().to_vec())
        .expect("static status and headers are valid")
}

impl AdminApp {
    /// Ready when the token store answers and at least one upstream has a healthy backend.
    async fn readiness(&self) -> Result<(), String> {
        self.store
            .count()
            .await
            .map_err(|e| format!("token store: {e}"))?;
        if !self.upstreams.pools().iter().any(|p| p.healthy()) {
            return Err("no upstream has a healthy backend".into());
        }
        Ok(())
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
            "/healthz" => text(200, "ok"),
            "/readyz" => match self.readiness().await {
                Ok(()) => text(200, "ready"),
                Err(why) => text(503, &format!("not ready: {why}")),
            },
            _ => text(404, "Not Found"),
        }
    }
}
