//! The credential decoders: lenient Base64 (GW7 user and password), Base58 + Jasypt (GroundWork's
//! "security encryption"), and the `jasypt.mainkey` property.
#![no_main]

use authgate::auth::jasypt::JasyptKey;
use authgate::auth::lenient_base64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = lenient_base64(text);
    let key = JasyptKey::from_plain("Gr0undW0rk123");
    if let Some(plain) = key.decrypt(text) {
        assert!(std::str::from_utf8(plain.as_bytes()).is_ok());
    }
    let _ = JasyptKey::from_foundation_property(text);
});
