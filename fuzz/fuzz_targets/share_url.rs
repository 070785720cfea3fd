//! Share-URL parsing: the key a share is matched by, for any text a client sends as `url`.
#![no_main]

use authgate::auth::shares::share_url_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = share_url_key(url) {
        assert!(key.starts_with('/') && !key.ends_with('/'), "{key:?}");
    }
});
