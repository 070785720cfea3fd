//! Token generation and hashing. Raw tokens are handed to clients and never stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// SHA-256 of a token: the only form in which a token is stored or cached.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// A short, non-reversible label for logs (first 8 hex digits of the hash).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({})", self.short())
    }
}

/// A GWOS token: a lowercase UUID v4 from the OS CSPRNG (the wire contract; GW::RAPID checks the shape).
pub fn new_gwos_token() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// An opaque, URL-safe token of 256 bits from the OS CSPRNG.
pub fn new_opaque_token() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    // The OS source cannot fail on Linux once booted; uuid's v4 makes the same assumption.
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gwos_tokens_are_lowercase_uuid_v4() {
        let t = new_gwos_token();
        assert_eq!(t.len(), 36);
        let shape = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-';
        assert!(t.chars().all(shape), "{t}");
        assert_eq!(&t[14..15], "4", "version nibble: {t}");
        assert!("89ab".contains(&t[19..20]), "variant nibble: {t}");
        assert_ne!(new_gwos_token(), t);
    }

    #[test]
    fn opaque_tokens_carry_256_bits_url_safe() {
        let t = new_opaque_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn hash_is_stable_and_distinct() {
        assert_eq!(TokenHash::of("a"), TokenHash::of("a"));
        assert_ne!(TokenHash::of("a"), TokenHash::of("b"));
        assert_eq!(TokenHash::of("a").short().len(), 8);
    }
}
