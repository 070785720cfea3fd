//! Jasypt `BasicTextEncryptor` (PBEWithMD5AndDES) decryption: GroundWork's "security encryption".
//!
//! Wire form: Base58 (Flickr alphabet) of `salt(8) || DES-CBC-PKCS5(ciphertext)`, key material
//! `MD5^1000(key || salt)`: DES key = first 8 bytes, IV = next 8.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use md5::{Digest, Md5};

type DesCbcDecryptor = cbc::Decryptor<des::Des>;

const ITERATIONS: usize = 1000;
const SALT_LEN: usize = 8;

/// The decryption key (GroundWork's `jasypt.mainkey`, decoded). Its Debug output hides it.
#[derive(Clone)]
pub struct JasyptKey(Vec<u8>);

impl std::fmt::Debug for JasyptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JasyptKey(..)")
    }
}

impl JasyptKey {
    /// A key given directly (e.g. `Gr0undW0rk123`).
    pub fn from_plain(key: &str) -> JasyptKey {
        JasyptKey(key.as_bytes().to_vec())
    }

    /// GroundWork's `foundation.properties` `jasypt.mainkey` value: 12 characters of noise, then the
    /// key in Base64.
    pub fn from_foundation_property(value: &str) -> Result<JasyptKey, String> {
        let value = value.trim();
        let encoded = value
            .get(12..)
            .filter(|rest| !rest.is_empty())
            .ok_or("jasypt.mainkey is too short (12 characters of prefix, then Base64)")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "jasypt.mainkey: the part after the first 12 characters is not Base64")?;
        Ok(JasyptKey(key))
    }

    /// Decrypt a ciphertext as GroundWork clients send it. `None` for anything that does not decrypt
    /// to UTF-8 text: callers answer it exactly like a wrong password.
    pub fn decrypt(&self, wire: &str) -> Option<String> {
        let mut bytes = bs58::decode(wire.trim())
            .with_alphabet(bs58::Alphabet::FLICKR)
            .into_vec()
            .ok()?;
        // Java's BigInteger.toByteArray() adds a sign byte when the top bit is set; bs58 keeps it.
        // Salt plus at least one DES block is 16 bytes; the ciphertext is a whole number of blocks.
        if bytes.len() % 8 == 1 && bytes.first() == Some(&0) {
            bytes.remove(0);
        }
        if bytes.len() < SALT_LEN + 8 || bytes.len() % 8 != 0 {
            return None;
        }
        let (salt, ciphertext) = bytes.split_at(SALT_LEN);
        let mut digest: [u8; 16] = Md5::new()
            .chain_update(&self.0)
            .chain_update(salt)
            .finalize()
            .into();
        for _ in 1..ITERATIONS {
            digest = Md5::digest(digest).into();
        }
        let (key, iv) = digest.split_at(8);
        let decryptor = DesCbcDecryptor::new_from_slices(key, iv).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = decryptor.decrypt_padded_mut::<Pkcs7>(&mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> JasyptKey {
        JasyptKey::from_plain("Gr0undW0rk123")
    }

    #[test]
    fn spec_vector_admin_password() {
        assert_eq!(
            key()
                .decrypt("7UZZVvnLbuRNk12Yk5H33zeYdWQpnA7j9shir7QfJgwh")
                .as_deref(),
            Some("RESTAPIACCESSPASSWORD")
        );
    }

    #[test]
    fn spec_vector_reader_password() {
        assert_eq!(
            key()
                .decrypt("5CFothtTmW6VX3L85iXDC8b8UhFNFn6W7XMkDtaMZhFmP7tNg3HFR9t")
                .as_deref(),
            Some("RESTAPIACCESSREADERPASSWORD")
        );
    }

    #[test]
    fn spec_vector_reader_password_other_salt() {
        assert_eq!(
            key()
                .decrypt("5p4LyKS3ZfAtsg1AZQ19BDeozC3nU2NEahP542yZUVur6C811TP3ezF")
                .as_deref(),
            Some("RESTAPIACCESSREADERPASSWORD")
        );
    }

    #[test]
    fn spec_vector_random_password() {
        assert_eq!(
            key()
                .decrypt("63c5BtYDNAPANvNqAkh9quYszwVrvLaruxmzvM4P1FSw")
                .as_deref(),
            Some("nNPNxL8gxkCt4iiRaChU")
        );
    }

    #[test]
    fn foundation_property_gives_the_default_key() {
        let k = JasyptKey::from_foundation_property("3PHpHhaYzuc=R3IwdW5kVzByazEyMw==").unwrap();
        assert_eq!(k.0, b"Gr0undW0rk123");
        assert!(JasyptKey::from_foundation_property("short").is_err());
    }

    #[test]
    fn garbage_and_wrong_key_do_not_decrypt() {
        assert_eq!(key().decrypt(""), None);
        assert_eq!(
            key().decrypt("0OIl"),
            None,
            "characters outside the Flickr alphabet"
        );
        assert_eq!(key().decrypt("abc"), None, "too short");
        let wrong = JasyptKey::from_plain("not-the-key");
        assert_ne!(
            wrong
                .decrypt("7UZZVvnLbuRNk12Yk5H33zeYdWQpnA7j9shir7QfJgwh")
                .as_deref(),
            Some("RESTAPIACCESSPASSWORD")
        );
        assert!(!format!("{:?}", key()).contains("Gr0und"));
    }
}
