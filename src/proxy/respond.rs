//! A `Reply` written to a pingora session.

use crate::reply::Reply;
use http::header::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Write it with Content-Length, so the connection stays usable (never `respond_error`).
pub async fn write(
    reply: Reply,
    session: &mut Session,
    extra: &[(HeaderName, HeaderValue)],
) -> pingora::Result<()> {
    let mut header =
        ResponseHeader::build(reply.status, Some(4 + reply.headers.len() + extra.len()))?;
    header.insert_header(http::header::CONTENT_TYPE, reply.content_type)?;
    header.set_content_length(reply.body.len())?;
    for (name, value) in reply.headers.into_iter().chain(extra.iter().cloned()) {
        header.append_header(name, value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD || reply.body.is_empty();
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}
