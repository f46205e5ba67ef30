//! Plain HTTP answers on a server's port: the routes' responses, and refusals of upgrade
//! requests.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use tokio::io::AsyncWriteExt;

use crate::accept::write_response;
use crate::error::Error;
use crate::stream::MaybeTlsStream;

/// Writes a plain HTTP response and ends the connection (no keep-alive: the server's HTTP is
/// for health checks, metrics and a few pages).
pub(super) async fn respond(
    stream: &mut MaybeTlsStream,
    request: &Request<()>,
    response: Response<Bytes>,
) -> Result<(), Error> {
    let (parts, body) = response.into_parts();
    let mut head = Response::from_parts(parts, ());
    let headers = head.headers_mut();
    if !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, body.len().into());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let body = if request.method() == Method::HEAD {
        &[][..]
    } else {
        &body[..]
    };
    write_response(stream, &head, body).await?;
    let _ = stream.shutdown().await;
    Ok(())
}
