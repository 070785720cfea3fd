//! The built-in demo upstream: answers every request with a JSON echo of what reached it, so that
//! a newcomer sees at once what authgate forwards (and the identity it adds).

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct DemoUpstream;

#[async_trait]
impl ServeHttp for DemoUpstream {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let mut body_bytes = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_bytes += chunk.len();
        }
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let echo = serde_json::json!({
            "service": "authgate demo upstream",
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": req.uri.query(),
            "user": header("x-authgate-user"),
            "role": header("x-authgate-role"),
            "app": header("x-authgate-app"),
            "forwarded_for": header("x-forwarded-for"),
            "body_bytes": body_bytes,
        });
        let body = format!("{echo:#}\n").into_bytes();
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .expect("static status and headers are valid")
    }
}
