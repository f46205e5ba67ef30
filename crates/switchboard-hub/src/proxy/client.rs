//! One POST of JSON to the backend, within a timeout: hyper's HTTP/1.1 client connection over
//! a [`MaybeTlsStream`] (`https://` trusts the Mozilla roots).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use switchboard::MaybeTlsStream;

/// The largest answer read from the backend, in bytes.
const MAX_ANSWER: usize = 1 << 20;

/// Why a call got no usable answer.
#[derive(Debug)]
pub(super) enum CallError {
    /// Connecting, HTTP, or a status other than 2xx; the words say which.
    Failed(String),
    /// No answer within the timeout.
    Timeout,
}

/// POSTs `body` to `uri`, and returns the answer's body.
pub(super) async fn post(uri: &Uri, body: Vec<u8>, timeout: Duration) -> Result<Bytes, CallError> {
    tokio::time::timeout(timeout, exchange(uri, body))
        .await
        .map_err(|_| CallError::Timeout)?
        .map_err(CallError::Failed)
}

async fn exchange(uri: &Uri, body: Vec<u8>) -> Result<Bytes, String> {
    let host = uri.authority().map_or("", |a| a.as_str());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let stream = MaybeTlsStream::connect(uri, None)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("starting HTTP: {e}"))?;
    // The connection task ends when the exchange does (the sender dropped) or fails.
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(body.to_bytes())
}
