//! The answer to a refused upgrade on the fast path, where no HTTP stack writes it.

use bytes::Bytes;
use http::{Method, Response, header};
use tokio::io::AsyncWriteExt;

use crate::accept::write_response;
use crate::error::Error;
use crate::stream::MaybeTlsStream;

/// Writes `response` (with its `Content-Length`) to a request of `method` and ends the
/// connection.
pub(super) async fn respond(
    stream: &mut MaybeTlsStream,
    method: &Method,
    response: Response<Bytes>,
) -> Result<(), Error> {
    let (parts, body) = response.into_parts();
    let mut head = Response::from_parts(parts, ());
    let headers = head.headers_mut();
    headers
        .entry(header::CONTENT_LENGTH)
        .or_insert(body.len().into());
    let body = if method == Method::HEAD {
        &[][..]
    } else {
        &body[..]
    };
    write_response(stream, &head, body).await?;
    let _ = stream.shutdown().await;
    Ok(())
}
