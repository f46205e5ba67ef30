//! HTTP/1.x heads as the handshake reads and writes them (RFC 9112): the part of a buffer worth
//! parsing, `httparse`'s results as `http` types, and header lines written back.
//!
//! Invariant: a head is never parsed beyond the caller's `max_head` bytes.

use http::Version;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::HandshakeError;

/// The `name` header if it appears at most once.
///
/// # Errors
///
/// [`HandshakeError::DuplicateHeader`] if it appears more than once.
pub(super) fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, HandshakeError> {
    let mut values = headers.get_all(name).into_iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader(name.clone()));
    }
    Ok(first)
}

/// The part of `buf` worth parsing: a head that does not end within `max_head` bytes is too long
/// whatever follows, so parsing more only costs time.
pub(super) fn head_window(buf: &[u8], max_head: usize) -> &[u8] {
    &buf[..buf.len().min(max_head)]
}

/// The result of a parse that found no complete head in the window.
pub(super) fn incomplete<T>(buf: &[u8], max_head: usize) -> Result<Option<T>, HandshakeError> {
    if buf.len() > max_head {
        Err(HandshakeError::HeadTooLarge { limit: max_head })
    } else {
        Ok(None)
    }
}

/// Converts an `httparse` error, keeping [`HandshakeError::TooManyHeaders`] apart because it maps
/// to 431, not 400.
pub(super) fn parse_error(err: httparse::Error) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        other => HandshakeError::MalformedHttp(other.to_string()),
    }
}

/// The `http` version for `httparse`'s minor version (it only parses HTTP/1.x).
pub(super) fn http_version(minor: u8) -> Result<Version, HandshakeError> {
    match minor {
        0 => Ok(Version::HTTP_10),
        1 => Ok(Version::HTTP_11),
        _ => Err(HandshakeError::MalformedHttp("unknown http version".into())),
    }
}

/// The version as written on a request or status line; anything but 1.0 is written as 1.1, the
/// only other version that has this text form.
pub(super) fn version_str(version: Version) -> &'static str {
    if version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// Copies `httparse` headers into a [`HeaderMap`], keeping repeated fields in order.
pub(super) fn header_map(raw: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut headers = HeaderMap::with_capacity(raw.len());
    for header in raw {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| HandshakeError::MalformedHttp("invalid header name".into()))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| HandshakeError::MalformedHttp("invalid header value".into()))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Writes `name: value` lines and the blank line that ends the head. `HeaderValue` cannot hold CR
/// or LF, so a value cannot inject a header.
pub(super) fn write_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
