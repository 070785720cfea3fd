//! Tokens in URLs, for any path and query a client sends, under the ioGates block of routes: a
//! token found is never empty, and the path as logged differs from the path in the token's
//! segment only, where it reads `{token}`.
#![no_main]

use authgate::url_token::{OptionsAnswer, Pattern, Permission, UrlTokens};
use libfuzzer_sys::fuzz_target;

fn routes() -> UrlTokens {
    let route = |path, query| {
        Pattern::parse(path, query, Permission::Upload, OptionsAnswer::Upstream).unwrap()
    };
    UrlTokens::new(vec![
        route("/api/authinfo/{token}", None),
        route("/upload/tus/{token}/**", None),
        route("/download-file/*/*/*/*/*/{token}", None),
        route("/handlers/upload.php", Some("token")),
    ])
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let routes = routes();
    let found = routes.find(path, query);
    let _ = routes.options_go_upstream(path);
    let hidden = routes.redact(path);
    let (sent, logged): (Vec<&str>, Vec<&str>) =
        (path.split('/').collect(), hidden.split('/').collect());
    assert_eq!(sent.len(), logged.len(), "{path:?} logged as {hidden:?}");
    let differing: Vec<usize> = (0..sent.len()).filter(|&i| sent[i] != logged[i]).collect();
    assert!(differing.len() <= 1, "{path:?} logged as {hidden:?}");
    if let Some(Ok(found)) = found {
        let Some(token) = found.token else {
            return;
        };
        assert!(!token.is_empty());
        if let [at] = differing[..] {
            assert_eq!(logged[at], "{token}");
            assert_eq!(sent[at], token, "another segment hidden than the token's");
        }
        // The routes with a `{token}` segment: it is always hidden, unless it reads `{token}`.
        if path != "/handlers/upload.php" && token != "{token}" {
            assert_eq!(differing.len(), 1, "{path:?}: the token is not hidden");
        }
    }
});
