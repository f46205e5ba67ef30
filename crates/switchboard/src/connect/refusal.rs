//! A refused opening handshake: the server answered the upgrade with a status other than 101
//! (HTTP/1.1) or 2xx (HTTP/2), as RFC 6455 §4.1 lets it ("the server may respond with any
//! status code... the client may handle it per HTTP"). The refusal keeps the status, headers
//! and the start of the body, so a client can show why (an auth challenge, a JSON error).
//!
//! Invariant: reading the body never holds the caller longer than [`BODY_WAIT`] past the head
//! and never keeps more than [`MAX_BODY`] bytes, whatever the server sends or withholds.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes of a refusal's body kept; the rest is not read.
pub(crate) const MAX_BODY: usize = 4096;

/// How long the body may take to arrive after the head: a refusal is not worth a long wait.
const BODY_WAIT: Duration = Duration::from_secs(1);

/// The server's answer to an upgrade it refused: status, headers, and the body's first 4 KiB
/// (as sent: a chunked body keeps its chunk framing).
#[derive(Debug)]
pub struct Refusal {
    response: Response<Bytes>,
    truncated: bool,
}

impl Refusal {
    /// A refusal with the given response (and body, as far as it was read).
    pub fn new(response: Response<Bytes>, truncated: bool) -> Self {
        Self {
            response,
            truncated,
        }
    }

    /// The status the server answered with.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The HTTP version of the answer.
    pub fn version(&self) -> Version {
        self.response.version()
    }

    /// The response's header fields.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The start of the body: at most 4 KiB, what arrived within a second of the head.
    pub fn body(&self) -> &Bytes {
        self.response.body()
    }

    /// Whether the body went on past [`body`](Self::body) (longer than 4 KiB, or still
    /// arriving when the wait ended).
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

/// Reads the body of a refusal whose head was `response` and whose first body bytes are
/// `read`: up to its `Content-Length`, the end of its chunks, the end of the stream, or
/// [`MAX_BODY`] bytes, whichever comes first, for at most [`BODY_WAIT`].
pub(crate) async fn read<S>(stream: &mut S, response: Response<()>, read: BytesMut) -> Refusal
where
    S: AsyncRead + Unpin,
{
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let chunked = response
        .headers()
        .get(TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let mut body = read;
    let complete = |body: &BytesMut| match length {
        Some(length) => body.len() >= length,
        None => chunked && body.ends_with(b"0\r\n\r\n"),
    };
    let reading = async {
        while !complete(&body) && body.len() < MAX_BODY {
            match stream.read_buf(&mut body).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        complete(&body)
    };
    let ended = tokio::time::timeout(BODY_WAIT, reading)
        .await
        .unwrap_or(false);
    let wanted = length.unwrap_or(usize::MAX).min(MAX_BODY);
    let truncated = !ended || length.map_or(body.len() > MAX_BODY, |l| l > MAX_BODY);
    body.truncate(wanted);
    Refusal::new(response.map(|()| body.freeze()), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Response<()> {
        let mut response = Response::builder().status(StatusCode::FORBIDDEN);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response.body(()).unwrap()
    }

    #[tokio::test]
    async fn the_body_is_read_to_its_length_and_no_further() {
        let mut rest: &[u8] = b"lo\nnext response";
        let refusal = read(
            &mut rest,
            head(&[("content-length", "6")]),
            BytesMut::from(&b"hel"[..]),
        )
        .await;
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        assert_eq!(&refusal.body()[..], b"hello\n");
        assert!(!refusal.is_truncated());
    }

    #[tokio::test]
    async fn a_long_body_is_cut_at_the_limit() {
        let long = vec![b'x'; MAX_BODY * 3];
        let mut rest = &long[..];
        let refusal = read(&mut rest, head(&[]), BytesMut::new()).await;
        assert_eq!(refusal.body().len(), MAX_BODY);
        assert!(refusal.is_truncated());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_ends_the_wait() {
        let (mut client, _server) = tokio::io::duplex(64);
        let refusal = read(
            &mut client,
            head(&[("content-length", "10")]),
            BytesMut::from(&b"part"[..]),
        )
        .await;
        assert_eq!(&refusal.body()[..], b"part");
        assert!(refusal.is_truncated());
    }
}
