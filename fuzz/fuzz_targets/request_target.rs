//! Any bytes as a request target: refused, or a canonical path that is a fixed point and is
//! exactly what would be forwarded.
#![no_main]

use authgate::target::{
    canonical_path, EscapedSlashes, PathParameters, PathPolicy, RequestTarget, TargetForm,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, raw)) = data.split_first() else {
        return;
    };
    let policy = PathPolicy {
        escaped_slashes: if choice & 1 == 0 {
            EscapedSlashes::Reject
        } else {
            EscapedSlashes::Decode
        },
        path_parameters: if choice & 2 == 0 {
            PathParameters::Reject
        } else {
            PathParameters::Strip
        },
        merge_slashes: choice & 4 == 0,
    };
    let Ok(target) = RequestTarget::parse(raw, &policy) else {
        return;
    };
    if *target.form() == TargetForm::Asterisk {
        return;
    }
    let path = target.path();
    assert_eq!(
        canonical_path(path.as_bytes(), &policy).as_deref(),
        Ok(path),
        "not a fixed point"
    );
    assert!(
        canonical_path(path.as_bytes(), &PathPolicy::default()).is_ok(),
        "a canonical path holds nothing even the strictest policy refuses"
    );
    let forwarded = target.forwarded(raw);
    let forwarded_path = forwarded.split(|&b| b == b'?').next().unwrap_or_default();
    assert_eq!(forwarded_path, path.as_bytes(), "forwarded != decided");
    assert!(path.is_ascii() && path.starts_with('/'));
});
