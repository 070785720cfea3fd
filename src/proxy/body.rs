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
    if continue_if_expected(session).await.is_err() {
        return Err(BodyError::Malformed);
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

/// Send `100 Continue` when the client waits for it before its body (`Expect: 100-continue`).
/// pingora would mark the connection for closing, as for any answer written before the body has
/// been read; an interim answer is not one, so that rule is lifted while it is written.
pub async fn continue_if_expected(session: &mut Session) -> pingora::Result<()> {
    let req = session.req_header();
    let expects = req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects || session.is_body_done() {
        return Ok(());
    }
    let downstream = session.as_downstream_mut();
    downstream.set_close_on_response_before_downstream_finish(false);
    let written = downstream.write_continue_response().await;
    downstream.set_close_on_response_before_downstream_finish(true);
    written
}
