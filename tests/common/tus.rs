//! The upstream of the ioGates transfer proof: a tus 1.0 server (core, creation, concatenation)
//! under `/upload/tus/{token}`, which also serves what was uploaded as ioGates downloads
//! (`/download-file/{upload id}/0/0/1/0/{token}`, with `Range`). Uploads are kept in memory.
//! Every request is recorded with the token its URL carried and the share authgate named, so a
//! test sees what reached the upstream.

use super::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const TUS: &str = "1.0.0";

/// One request as the tus server saw it.
#[derive(Debug, Clone)]
pub struct TusRequest {
    pub method: String,
    /// The token in the URL (path segment), as received.
    pub token: String,
    /// `X-Authgate-Share`, as authgate set it.
    pub share: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Upload {
    length: u64,
    data: Vec<u8>,
    partial: bool,
}

#[derive(Default)]
struct State {
    uploads: HashMap<String, Upload>,
    next_id: u64,
    seen: Vec<TusRequest>,
}

pub struct TusServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn answer(status: u16, headers: &[(&str, String)], body: Option<Bytes>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("tus-resumable", TUS);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let body = match body {
        Some(bytes) => Full::new(bytes).boxed(),
        None => Empty::new().boxed(),
    };
    builder.body(body).unwrap()
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The upload id at the end of an upload URL, absolute or not.
fn upload_id(url: &str) -> Option<&str> {
    let path = match url.find("://") {
        Some(at) => &url[at + 3..][url[at + 3..].find('/')?..],
        None => url,
    };
    let rest = path.strip_prefix("/upload/tus/")?;
    let (_, id) = rest.split_once('/')?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return answer(400, &[], None);
    };
    let path = parts.uri.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut state = state.lock().unwrap();
    let (token, response) = match segments.as_slice() {
        ["upload", "tus", token, rest @ ..] => (
            token.to_string(),
            tus(&parts, rest, token, body, &mut state),
        ),
        ["download-file", id, "0", "0", "1", "0", token] => {
            (token.to_string(), download(&parts, id, &state))
        }
        _ => (String::new(), answer(404, &[], None)),
    };
    state.seen.push(TusRequest {
        method: parts.method.to_string(),
        token,
        share: header(&parts, "x-authgate-share").map(String::from),
        status: response.status().as_u16(),
    });
    response
}

fn tus(
    parts: &http::request::Parts,
    rest: &[&str],
    token: &str,
    body: Bytes,
    state: &mut State,
) -> Response<Body> {
    if parts.method == http::Method::OPTIONS {
        let discovery = [
            ("tus-version", TUS.to_string()),
            ("tus-extension", "creation,concatenation".to_string()),
        ];
        return answer(204, &discovery, None);
    }
    if header(parts, "tus-resumable") != Some(TUS) {
        return answer(412, &[], None);
    }
    match (parts.method.as_str(), rest) {
        ("POST", []) => {
            let concat = header(parts, "upload-concat").unwrap_or_default();
            let upload = if let Some(urls) = concat.strip_prefix("final;") {
                // The final upload: the partial ones, complete, in the order given.
                let mut data = Vec::new();
                for url in urls.split(' ') {
                    let part = upload_id(url).and_then(|id| state.uploads.get(id));
                    match part {
                        Some(p) if p.partial && p.data.len() as u64 == p.length => {
                            data.extend_from_slice(&p.data)
                        }
                        _ => return answer(400, &[], None),
                    }
                }
                Upload {
                    length: data.len() as u64,
                    data,
                    partial: false,
                }
            } else {
                let Some(length) = header(parts, "upload-length").and_then(|l| l.parse().ok())
                else {
                    return answer(400, &[], None);
                };
                Upload {
                    length,
                    data: body.to_vec(),
                    partial: concat == "partial",
                }
            };
            state.next_id += 1;
            let id = format!("u{}", state.next_id);
            state.uploads.insert(id.clone(), upload);
            answer(
                201,
                &[("location", format!("/upload/tus/{token}/{id}"))],
                None,
            )
        }
        ("HEAD", [id]) => match state.uploads.get(*id) {
            Some(upload) => answer(
                200,
                &[
                    ("upload-offset", upload.data.len().to_string()),
                    ("upload-length", upload.length.to_string()),
                    ("cache-control", "no-store".to_string()),
                ],
                None,
            ),
            None => answer(404, &[], None),
        },
        ("PATCH", [id]) => {
            let Some(upload) = state.uploads.get_mut(*id) else {
                return answer(404, &[], None);
            };
            if header(parts, "content-type") != Some("application/offset+octet-stream") {
                return answer(415, &[], None);
            }
            let offset: Option<u64> = header(parts, "upload-offset").and_then(|o| o.parse().ok());
            if offset != Some(upload.data.len() as u64) {
                return answer(409, &[], None);
            }
            if upload.data.len() as u64 + body.len() as u64 > upload.length {
                return answer(413, &[], None);
            }
            upload.data.extend_from_slice(&body);
            answer(
                204,
                &[("upload-offset", upload.data.len().to_string())],
                None,
            )
        }
        _ => answer(405, &[], None),
    }
}

/// A finished upload, whole or the one range asked for.
fn download(parts: &http::request::Parts, id: &str, state: &State) -> Response<Body> {
    let Some(upload) = state.uploads.get(id).filter(|u| !u.partial) else {
        return answer(404, &[], None);
    };
    let data = Bytes::copy_from_slice(&upload.data);
    let total = data.len();
    let range = header(parts, "range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match range {
        Some((first, last)) if first <= last && last < total => answer(
            206,
            &[
                ("accept-ranges", "bytes".to_string()),
                ("content-range", format!("bytes {first}-{last}/{total}")),
            ],
            Some(data.slice(first..=last)),
        ),
        Some(_) => answer(416, &[("content-range", format!("bytes */{total}"))], None),
        None => answer(200, &[("accept-ranges", "bytes".to_string())], Some(data)),
    }
}

impl TusServer {
    pub fn start() -> TusServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let shutdown = super::serve_http1(listener, move |req| {
            let state = shared.clone();
            async move { Ok::<_, Infallible>(handle(req, state).await) }
        });
        TusServer {
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<TusRequest> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The bytes of a finished upload.
    pub fn upload(&self, id: &str) -> Option<Vec<u8>> {
        let state = self.state.lock().unwrap();
        state.uploads.get(id).map(|u| u.data.clone())
    }
}

impl Drop for TusServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `node upload.mjs` of `tests/tus-client` (tus-js-client), its npm packages installed from the
/// committed lock file the first time.
pub fn tus_client() -> std::process::Command {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus-client");
    let mut installed = INSTALLED.lock().unwrap();
    if !*installed && !dir.join("node_modules/tus-js-client").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("node and npm must be installed (.ci/run installs them)");
        assert!(status.success(), "npm ci in {}", dir.display());
    }
    *installed = true;
    let mut node = std::process::Command::new("node");
    node.arg(dir.join("upload.mjs"));
    node
}
