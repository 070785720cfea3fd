//! A real HTTP/1.1 upstream (hyper) that records what reaches it.
//!
//! Paths: `/slow` answers after 3 s; `/stream` sends a chunked body of 64 KiB pieces (`?mb=N`);
//! anything else answers 200 `upstream ok` (with `Range` → 206 and the requested bytes of a 1 KiB
//! pattern).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
    pub body_sha256: String,
    /// The body itself when small (≤ 64 KiB).
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            len += data.len();
            if kept.len() + data.len() <= 64 * 1024 {
                kept.extend_from_slice(&data);
            }
        }
    }
    let uri = parts.uri.to_string();
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body_len: len,
        body_sha256: hex::encode(hasher.finalize()),
        body: kept,
    });
    let path = parts.uri.path();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(full(200, "slow ok"));
    }
    if path == "/stream" {
        let mb: usize = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("mb="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let chunks = mb * 16;
        let stream = futures_util::stream::iter(
            (0..chunks)
                .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))),
        );
        return Ok(Response::builder()
            .status(200)
            .body(StreamBody::new(stream).boxed())
            .unwrap());
    }
    if let Some(range) = parts.headers.get("range").and_then(|v| v.to_str().ok()) {
        // bytes=a-b over a 1 KiB pattern
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        if let Some((a, b)) = range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
            let (a, b): (usize, usize) = (a.parse().unwrap_or(0), b.parse().unwrap_or(1023));
            return Ok(Response::builder()
                .status(206)
                .header("content-range", format!("bytes {a}-{b}/1024"))
                .body(Full::new(Bytes::from(pattern[a..=b].to_vec())).boxed())
                .unwrap());
        }
    }
    Ok(full(200, "upstream ok"))
}

/// Serve HTTP/1.1 on `listener` with `handle`, on a runtime of its own thread, until the sender
/// returned is used or dropped.
pub fn serve_http1<F, Fut>(
    listener: std::net::TcpListener,
    handle: F,
) -> tokio::sync::oneshot::Sender<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    listener.set_nonblocking(true).unwrap();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let service = hyper::service::service_fn(handle.clone());
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                }
            }
        });
        rt.shutdown_background();
    });
    tx
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serve on a given listener (e.g. to come back on the same port after `stop`).
    pub fn start_on(listener: std::net::TcpListener) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let shutdown = serve_http1(listener, move |req| handle(req, log.clone()));
        Upstream {
            addr,
            requests,
            shutdown: Some(shutdown),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received a request")
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Give the runtime a moment to drop the listener.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}
