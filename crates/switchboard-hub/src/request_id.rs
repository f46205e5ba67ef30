//! Request ids: a short string that follows one publish through this node's log lines (the
//! API request or WebSocket message, the broker call, the fan-out), so that one can grep for
//! it. An HTTP caller may bring its own in `X-Request-Id`; otherwise the hub makes one.
//!
//! The id lives in `tracing` spans, not in the publication: it does not cross nodes (see the
//! README's logging paragraph).

use crate::random::random_hex;

/// The header that carries a request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// A new random request id: 16 hex digits.
pub(crate) fn new_request_id() -> String {
    random_hex(8)
}

/// `value` as a request id: 1 to [`MAX_REQUEST_ID`] bytes of printable ASCII (space to `~`),
/// since it is copied into log lines and a response header.
pub(crate) fn check_request_id(value: &[u8]) -> Result<&str, String> {
    if value.is_empty() || value.len() > MAX_REQUEST_ID {
        return Err(format!("must be 1 to {MAX_REQUEST_ID} bytes"));
    }
    if !value.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err("must be printable ASCII".to_owned());
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_up_to_the_limit_is_taken_and_the_rest_refused() {
        assert_eq!(check_request_id(b"abc-123"), Ok("abc-123"));
        assert!(check_request_id(&[b'a'; MAX_REQUEST_ID]).is_ok());
        assert!(check_request_id(&[b'a'; MAX_REQUEST_ID + 1]).is_err());
        assert!(check_request_id(b"").is_err());
        assert!(check_request_id(b"a\nb").is_err());
        assert!(check_request_id("é".as_bytes()).is_err());
    }

    #[test]
    fn made_ids_are_valid_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(check_request_id(a.as_bytes()), Ok(a.as_str()));
    }
}
