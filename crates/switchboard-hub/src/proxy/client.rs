//! One POST of JSON to the backend, within a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;

use crate::http_post::{Backend, json_post};

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
pub(super) async fn post(
    backend: &Backend,
    uri: &Uri,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, CallError> {
    tokio::time::timeout(timeout, exchange(backend, uri, body))
        .await
        .map_err(|_| CallError::Timeout)?
        .map_err(CallError::Failed)
}

async fn exchange(backend: &Backend, uri: &Uri, body: Vec<u8>) -> Result<Bytes, String> {
    let request = json_post(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (status, body) = backend.send(request, MAX_ANSWER).await?;
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    Ok(body)
}
