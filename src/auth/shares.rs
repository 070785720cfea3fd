//! ioGates shares: a share URL that authenticates as its owner's account, limited to the upstream
//! paths and permissions configured for it.

use serde::Deserialize;

/// ioGates' permission flags for a share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    pub upload: bool,
    /// Download the original files.
    pub master: bool,
    /// Download converted (proxy) files.
    pub converted: bool,
    pub description: bool,
    pub comments: bool,
    pub attachments: bool,
    pub metainfo: bool,
}

impl Permissions {
    /// Reading (GET, HEAD) needs a download permission.
    pub fn may_download(&self) -> bool {
        self.master || self.converted
    }
}

/// A share as written in the users file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareEntry {
    /// Stable id (profile `id`, revocation, logs); defaults to the URL's path.
    pub id: Option<String>,
    pub url: String,
    /// The owning account (a user of the same file).
    pub owner: String,
    /// RFC 3339 UTC instant (e.g. `2027-01-01T00:00:00Z`) after which the share is dead.
    pub expires: Option<String>,
    #[serde(default)]
    pub permissions: Permissions,
    /// Upstream path prefixes a token of this share may reach.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub id: String,
    /// The URL's path, as matched (see [`share_url_key`]).
    pub key: String,
    pub owner: String,
    /// Unix milliseconds.
    pub expires_at: Option<u64>,
    pub permissions: Permissions,
    /// Canonical path prefixes (`target::check_configured_path`).
    pub paths: Vec<String>,
}

impl Share {
    pub fn from_entry(index: usize, entry: ShareEntry) -> Result<Share, String> {
        let at = |key: &str| format!("shares[{index}].{key}");
        let key =
            share_url_key(&entry.url).ok_or_else(|| format!("{}: not a share URL", at("url")))?;
        let expires_at = entry
            .expires
            .as_deref()
            .map(|e| {
                humantime::parse_rfc3339(e)
                    .map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    })
                    .map_err(|err| {
                        format!("{}: {err} (want e.g. 2027-01-01T00:00:00Z)", at("expires"))
                    })
            })
            .transpose()?;
        if entry.paths.is_empty() {
            return Err(format!(
                "{}: at least one path prefix is required",
                at("paths")
            ));
        }
        for (i, p) in entry.paths.iter().enumerate() {
            crate::target::check_configured_path(p)
                .map_err(|why| format!("{}[{i}]: {why}", at("paths")))?;
        }
        Ok(Share {
            id: entry.id.unwrap_or_else(|| key.clone()),
            key,
            owner: entry.owner,
            expires_at,
            permissions: entry.permissions,
            paths: entry.paths,
        })
    }

    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|e| now_ms >= e)
    }

    /// The token subject of this share's tokens (kept apart from user names).
    pub fn subject(&self) -> String {
        share_subject(&self.id)
    }
}

pub fn share_subject(id: &str) -> String {
    format!("share:{id}")
}

/// How a share URL is matched: its path only (scheme, host and its case, query, fragment and a
/// trailing slash ignored). `None` when there is no path to speak of.
pub fn share_url_key(url: &str) -> Option<String> {
    let url = url.trim();
    let parsed = url::Url::parse(url)
        .or_else(|_| url::Url::parse(&format!("http://{}", url.trim_start_matches('/'))))
        .ok()?;
    let path = parsed.path().trim_end_matches('/');
    // An opaque URL (`mailto:x`, `sh:host/show/1`) has no path to match: found by fuzzing.
    if path.is_empty() || !path.starts_with('/') {
        return None;
    }
    Some(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_urls_match_on_their_path() {
        let key = "/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0";
        for url in [
            "https://share.example.com/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0",
            "http://127.0.0.1/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0/",
            "HTTPS://SHARE.Example.COM/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0",
            "share.example.com/show/16/5989522a1b0a6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0",
        ] {
            assert_eq!(share_url_key(url).as_deref(), Some(key), "{url}");
        }
        assert_ne!(
            share_url_key("https://x/show/16/5989522A1B0A6/d5239e67c69a3ef76a807ae25ebf750b/dir/272/272/0/0/0").as_deref(),
            Some(key),
            "the path is case-sensitive"
        );
        assert_eq!(share_url_key("https://host.only/"), None);
        assert_eq!(share_url_key("sh:a..re.example.com/show/1/"), None);
        assert_eq!(share_url_key(""), None);
    }

    #[test]
    fn entries_are_checked_with_their_key() {
        let entry = |expires: Option<&str>, paths: Vec<&str>| ShareEntry {
            id: None,
            url: "https://s/show/1".into(),
            owner: "o".into(),
            expires: expires.map(String::from),
            permissions: Permissions::default(),
            paths: paths.into_iter().map(String::from).collect(),
        };
        let share =
            Share::from_entry(0, entry(Some("2027-01-01T00:00:00Z"), vec!["/api/files/"])).unwrap();
        assert_eq!(share.id, "/show/1");
        assert_eq!(share.paths, ["/api/files/"]);
        assert_eq!(share.expires_at, Some(1_798_761_600_000));
        assert!(share.is_expired_at(1_798_761_600_000));
        assert!(Share::from_entry(2, entry(Some("soon"), vec!["/a"]))
            .unwrap_err()
            .starts_with("shares[2].expires"));
        assert!(Share::from_entry(0, entry(None, vec![]))
            .unwrap_err()
            .starts_with("shares[0].paths"));
        assert!(Share::from_entry(0, entry(None, vec!["api"]))
            .unwrap_err()
            .starts_with("shares[0].paths[0]"));
        assert!(Share::from_entry(0, entry(None, vec!["/a", "/x/../y"]))
            .unwrap_err()
            .starts_with("shares[0].paths[1]"));
    }
}
