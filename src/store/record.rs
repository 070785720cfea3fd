//! How a `TokenRecord` is written: JSON with a format number `v`, the same for every store.
//!
//! The rule that keeps a rolling upgrade (or a downgrade) from losing tokens:
//! - a field is only ever added, with a default, so an older reader can skip it;
//! - a reader ignores fields it does not know, and reads a record with a higher `v` as far as it
//!   can;
//! - a record that still cannot be decoded is an error for that token alone. It is kept, never
//!   deleted: a later version may read it.

use super::{StoreError, TokenRecord};
use serde::{Deserialize, Serialize};

/// The format this version writes. 0 is the unversioned JSON of authgate before formats were
/// numbered (the same fields, no `v`).
pub const RECORD_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Writing<'a> {
    v: u32,
    #[serde(flatten)]
    record: &'a TokenRecord,
}

#[derive(Deserialize)]
struct Reading {
    #[serde(default)]
    v: u32,
    #[serde(flatten)]
    record: TokenRecord,
}

pub fn encode_record(record: &TokenRecord) -> Vec<u8> {
    serde_json::to_vec(&Writing {
        v: RECORD_FORMAT,
        record,
    })
    .expect("a token record always serialises")
}

pub fn decode_record(bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    let reading: Reading = serde_json::from_slice(bytes).map_err(|e| {
        // serde's message names the field at fault; the bytes themselves never reach a log.
        StoreError::Undecodable(format!("{e}"))
    })?;
    if reading.v > RECORD_FORMAT {
        tracing::debug!(
            format = reading.v,
            "token record from a newer version, read as far as known"
        );
    }
    Ok(reading.record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::record;

    #[test]
    fn a_record_round_trips_with_its_format_number() {
        let r = record("alice", 1_000);
        let bytes = encode_record(&r);
        assert!(
            bytes.starts_with(b"{\"v\":1,"),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(decode_record(&bytes).unwrap(), r);
    }

    #[test]
    fn unversioned_records_of_earlier_releases_still_decode() {
        // Byte for byte what authgate wrote before records had a format number.
        let legacy = br#"{"kind":"gwos","subject":"alice","role":"admin","app_name":"app","device_id":null,"issued_at":1000,"last_used":1000,"idle_timeout_ms":1000,"max_expires_at":null}"#;
        assert_eq!(decode_record(legacy).unwrap(), record("alice", 1_000));
    }

    #[test]
    fn newer_records_decode_as_far_as_known_and_bad_ones_are_an_error_not_a_panic() {
        let newer = br#"{"v":7,"kind":"gwos","subject":"alice","role":"admin","app_name":"app","issued_at":1000,"last_used":1000,"idle_timeout_ms":1000,"scopes":["x"],"origin":{"replica":"b"}}"#;
        assert_eq!(decode_record(newer).unwrap(), record("alice", 1_000));
        for bad in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            br#"{"v":1}"#,
            br#"{"kind":"ldap"}"#,
        ] {
            assert!(matches!(
                decode_record(bad),
                Err(StoreError::Undecodable(_))
            ));
        }
    }
}
