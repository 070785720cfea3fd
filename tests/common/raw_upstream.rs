//! An HTTP/1.1 upstream that records each request's line and headers byte for byte, for the tests
//! where *exactly* what reached the upstream is the subject (a parsing library would normalise it).
//!
//! Answers: `/chunked-trailer` sends a chunked body with a trailer, `/chunked` a chunked body,
//! `/slow-length` a Content-Length body in two parts 1.5 s apart, `/upgrade` switches protocols
//! (101) and then echoes every byte back; anything else `200 upstream ok` with a Content-Length.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    /// The request target exactly as it arrived.
    pub target: String,
    pub version: String,
    /// (name as sent, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The target's path (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
    /// Every value of a header, any case.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

pub struct RawUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    stopped: Arc<AtomicBool>,
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader)?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer fields, then the empty line.
            while !read_line(reader)?.is_empty() {}
            return Some(body);
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

/// Read one request; `None` at the end of the connection or on a framing it cannot read.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let line = read_line(reader)?;
    let mut parts = line.splitn(3, ' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut headers = Vec::new();
    loop {
        let h = read_line(reader)?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut request = RawRequest {
        method: method.into(),
        target: target.into(),
        version: version.into(),
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        request.body = read_chunked(reader)?;
    } else if let Some(len) = request.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        request.body = body;
    }
    Some(request)
}

/// After a 101: echo what arrives until the client goes.
fn echo(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) {
    let _ = reader.get_ref().set_read_timeout(None);
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 || writer.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn respond(stream: &mut TcpStream, request: &RawRequest) -> std::io::Result<()> {
    let answer: &[u8] = match request.path() {
        "/slow-length" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")?;
            std::thread::sleep(Duration::from_millis(1500));
            b"world"
        }
        "/upgrade" => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        }
        "/chunked-trailer" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
              6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: 42\r\n\r\n"
        }
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nupstream ok",
    };
    stream.write_all(answer)
}

fn serve(stream: TcpStream, log: Arc<Mutex<Vec<RawRequest>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        log.lock().unwrap().push(request.clone());
        if respond(&mut writer, &request).is_err() || close {
            return;
        }
        if request.path() == "/upgrade" {
            return echo(&mut reader, &mut writer);
        }
    }
}

impl RawUpstream {
    pub fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (log, stop) = (requests.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let log = log.clone();
                std::thread::spawn(move || serve(stream, log));
            }
        });
        RawUpstream {
            addr,
            requests,
            stopped,
        }
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The requests that arrived after the first `since`.
    pub fn since(&self, since: usize) -> Vec<RawRequest> {
        self.requests()[since..].to_vec()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}
