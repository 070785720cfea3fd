//! Clients: reqwest for ordinary calls, a raw socket where the connection itself is the subject.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status and body text of a response.
pub async fn text(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Form POST with a raw body (so tests control every byte).
pub async fn post_form(url: &str, body: &str) -> reqwest::Response {
    http()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// GWOS login as GW7 clients do it (Base64 user and password); returns (status, body).
pub async fn login(base: &str, user: &str, password: &str, app: &str) -> (u16, String) {
    let body = format!(
        "user={}&password={}&gwos-app-name={}",
        urlencode(&super::b64(user)),
        urlencode(&super::b64(password)),
        urlencode(app)
    );
    text(post_form(&format!("{base}/api/auth/login"), &body).await).await
}

/// Log in and return the token, asserting success.
pub async fn token(base: &str, user: &str, password: &str, app: &str) -> String {
    let (status, body) = login(base, user, password, app).await;
    assert_eq!(status, 200, "login failed: {body}");
    body
}

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// GET with the GWOS credential headers.
pub async fn get_with(url: &str, token: &str, app: &str) -> reqwest::Response {
    http()
        .get(url)
        .header("GWOS-API-TOKEN", token)
        .header("GWOS-APP-NAME", app)
        .send()
        .await
        .unwrap()
}

/// The status of a GET with the GWOS credential headers.
pub async fn status_with(url: &str, token: &str, app: &str) -> u16 {
    get_with(url, token, app).await.status().as_u16()
}

/// A parsed HTTP/1.1 response from a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One TCP connection, for keep-alive and `Connection: close` checks.
pub struct RawConn {
    reader: BufReader<TcpStream>,
}

impl RawConn {
    pub fn open(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawConn {
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, request: &str) {
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, request: &[u8]) {
        self.reader.get_mut().write_all(request).unwrap();
    }

    /// Read one response (Content-Length framed, or to EOF when there is none).
    pub fn read_response(&mut self) -> RawResponse {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line, got {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        match response
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap())
        {
            Some(len) => {
                response.body.resize(len, 0);
                self.reader.read_exact(&mut response.body).unwrap();
            }
            None => {
                self.reader.read_to_end(&mut response.body).unwrap();
            }
        }
        response
    }

    /// What arrives within `wait` after the first bytes (at most `wait` for those), as text.
    pub fn read_available(&mut self, wait: Duration) -> String {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut got = self
            .reader
            .fill_buf()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.reader.consume(got.len());
        // Whatever else is already on its way.
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while let Ok(more) = self.reader.fill_buf() {
            if more.is_empty() {
                break;
            }
            let n = more.len();
            got.extend_from_slice(more);
            self.reader.consume(n);
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    /// True when the server has closed the connection (EOF on read).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// Metric samples keyed `name{a="x",b="y"}` (labels sorted).
pub type Samples = std::collections::BTreeMap<String, f64>;

/// Scrape a `/metrics` URL with a real exposition parser.
pub async fn scrape_metrics(url: &str) -> Samples {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let body = resp.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut samples = Samples::new();
    for s in scrape.samples {
        let mut labels: Vec<_> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(key, value);
    }
    samples
}

/// The device id the real ioGates client sends in the spec's example.
pub const DEVICE: &str = "3f1c8a7e9b2d4c6f8e0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";

/// The real ioGates client's share login, byte for byte: JSON, an empty `token:` header, its
/// `appName`.
pub async fn share_login(base: &str, url: &str, device: serde_json::Value) -> reqwest::Response {
    let body = serde_json::json!({ "url": url, "deviceId": device, "appName": "iotransfer" });
    http()
        .post(format!("{base}/api/authtoken"))
        .header("Content-Type", "application/json")
        .header("token", "")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A share login's token, asserting success.
pub async fn share_token(base: &str, url: &str, device: &str) -> String {
    let resp = share_login(base, url, serde_json::Value::from(device)).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}
