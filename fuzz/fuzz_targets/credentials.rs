//! Credential extraction from request headers: any names and values pingora accepts.
#![no_main]

use authgate::proxy::headers::{credentials, wants_json};
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;

fuzz_target!(|data: &[u8]| {
    let mut req = RequestHeader::build("GET", b"/", None).expect("a fixed request line");
    // Lines of `name:value`; names are drawn from the ones the extractor reads, by the first byte.
    const NAMES: [&str; 7] = [
        "gwos-api-token",
        "GWOS-APP-NAME",
        "app-name",
        "token",
        "authorization",
        "accept",
        "x-other",
    ];
    for line in data.split(|&b| b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let name = NAMES[pick as usize % NAMES.len()];
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            let _ = req.append_header(name, value);
        }
    }
    let c = credentials(&req);
    if let Some(token) = c.token {
        assert!(!token.is_empty());
    }
    let _ = wants_json(&req);
});
