//! Reading a whole request body on the auth endpoints: bounded in size and time.
//! Only for requests answered locally: reading consumes the body (it could not be forwarded).

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use std::time::Duration;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit: 413.
    TooLarge,
    /// Broken framing, a client that stopped sending, or a timeout: 400.
    Malformed,
}

pub async fn read_bounded(
    session: &mut Session,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let read_all = async {
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(_) => return Err(BodyError::Malformed),
            }
        }
    };
    tokio::time::timeout(timeout, read_all)
        .await
        .unwrap_or(Err(BodyError::Malformed))
}
