//! The GWOS form parser: a body and a query string of any bytes never panic, and what parses
//! answers every lookup.
#![no_main]

use authgate::api::form::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (body, query) = data.split_at(split);
    let query = std::str::from_utf8(query.get(1..).unwrap_or_default()).ok();
    if let Ok(params) = Params::parse(body, query) {
        for names in [
            &["user"][..],
            &["password"],
            &["gwos-app-name", "gwos_app_name"],
            &["gwos-api-token", "gwos_api_token"],
        ] {
            let _ = params.get(names);
        }
    }
});
