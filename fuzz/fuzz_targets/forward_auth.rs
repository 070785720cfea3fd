//! Any header values naming the original request of a forward-auth decision: refused, or an
//! original whose path every header agrees on and that the proxy forwards exactly as decided.
#![no_main]

use authgate::forward_auth::{
    from_headers, from_path, X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_METHOD,
    X_ORIGINAL_URI, X_ORIGINAL_URL,
};
use authgate::target::PathPolicy;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    X_ORIGINAL_URI,
    X_ORIGINAL_URL,
    X_FORWARDED_URI,
    X_ORIGINAL_METHOD,
    X_FORWARDED_METHOD,
];

fuzz_target!(|data: &[u8]| {
    let policy = PathPolicy::default();
    // Envoy's form: the bytes after the prefix are the original target as forwarded.
    let mut raw = b"/authgate/verify".to_vec();
    raw.extend_from_slice(data);
    if let Ok(original) = from_path(&http::Method::GET, &raw, "/authgate/verify", &policy) {
        assert!(original.target.rewritten().is_none(), "decided on another reading");
        let path = data.split(|&b| b == b'?').next().unwrap_or_default();
        assert_eq!(original.target.path().as_bytes(), path);
    }

    // The header forms: values split on 0xFF, one per name in turn (empty: absent).
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().cycle().zip(data.split(|&b| b == 0xFF)) {
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(*name, value);
        }
    }
    let Ok(original) = from_headers(&headers, &policy) else {
        return;
    };
    assert!(original.target.rewritten().is_none(), "decided on another reading");
    let path = original.target.path().as_bytes();
    for name in [X_ORIGINAL_URI, X_FORWARDED_URI] {
        if let Some(value) = headers.get(name) {
            let sent = value.as_bytes().split(|&b| b == b'?').next().unwrap_or_default();
            assert_eq!(sent, path, "{name} disagrees with the decision");
        }
    }
});
