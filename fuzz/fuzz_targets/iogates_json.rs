//! The ioGates `POST /api/authtoken` body, JSON or form, with or without a JSON content type.
#![no_main]

use authgate::api::iogates::AuthTokenRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = AuthTokenRequest::parse(data, Some("application/json"));
    let _ = AuthTokenRequest::parse(data, Some("application/x-www-form-urlencoded"));
    let _ = AuthTokenRequest::parse(data, None);
});
