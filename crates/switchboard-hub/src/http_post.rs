//! One HTTP request to the application's backend on a connection of its own, as the proxies
//! and the webhooks make them: hyper's HTTP/1.1 client connection over a [`MaybeTlsStream`]
//! (`https://` trusts the Mozilla roots).

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use switchboard::MaybeTlsStream;

/// Sends `request` to `uri`'s host; the answer's status and body (at most `max_answer`
/// bytes). `Err` says what failed: connecting, HTTP, or reading the answer.
pub(crate) async fn send(
    uri: &Uri,
    request: Request<Full<Bytes>>,
    max_answer: usize,
) -> Result<(StatusCode, Bytes), String> {
    let stream = MaybeTlsStream::connect(uri, None)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("starting HTTP: {e}"))?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    // Read to the end, so the backend sees its answer taken.
    let body = Limited::new(response.into_body(), max_answer)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    drop(sender);
    let _ = connection.await;
    Ok((status, body.to_bytes()))
}
