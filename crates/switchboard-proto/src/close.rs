//! Close codes and the Close frame body (RFC 6455 §5.5.1, §7.4).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::text::Utf8Bytes;

/// A close status code (RFC 6455 §7.4), a `u16` newtype with the registered codes as constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a Close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later, e.g. the server is overloaded (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may appear in a Close frame on the wire.
    ///
    /// RFC 6455 §7.4.1 defines 1000–1003 and 1007–1011; the IANA registry adds 1012–1014;
    /// 3000–4999 belong to libraries and applications. 1004 is reserved, and 1005, 1006 and 1015
    /// "MUST NOT be set as a status code in a Close control frame by an endpoint". Everything
    /// else below 3000 is unassigned, and 5000 and above are out of range.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ProtocolError {
    /// The status code of the Close frame this error sends (RFC 6455 §7.4.1); beside the codes
    /// it chooses from.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::TooManyFragments { .. } => CloseCode::POLICY_VIOLATION,
            Self::KeepaliveTimeout => CloseCode::INTERNAL_ERROR,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The body of a Close frame: a status code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Why the connection closes, for humans; may be empty.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A Close frame body with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a received Close frame payload; `None` when the payload is empty (no status code).
    ///
    /// # Errors
    ///
    /// A one-byte payload or a code not allowed on the wire is [`ProtocolError::InvalidCloseCode`]
    /// or [`ProtocolError::CloseFrameTooShort`] (1002); a reason that is not UTF-8 is
    /// [`ProtocolError::InvalidCloseReason`] (1007).
    pub fn parse(mut payload: Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => return Ok(None),
            // RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a
            // 2-byte unsigned integer [...] representing a status code".
            1 => return Err(ProtocolError::CloseFrameTooShort),
            _ => {}
        }
        let code = CloseCode(payload.get_u16());
        if !code.is_allowed_on_wire() {
            return Err(ProtocolError::InvalidCloseCode { code: code.0 });
        }
        let reason = Utf8Bytes::try_from(payload).map_err(|_| ProtocolError::InvalidCloseReason)?;
        Ok(Some(Self { code, reason }))
    }

    /// Writes the Close frame payload (code, then reason).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
    }

    /// The payload length of this Close frame.
    pub fn encoded_len(&self) -> usize {
        2 + self.reason.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_allowed_on_the_wire_follow_rfc_6455_and_iana() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 3999, 4999,
        ] {
            assert!(CloseCode(ok).is_allowed_on_wire(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_allowed_on_wire(), "{bad}");
        }
    }

    #[test]
    fn parses_code_and_reason() {
        let frame = CloseFrame::parse(Bytes::from_static(b"\x03\xe8bye")).unwrap();
        assert_eq!(frame, Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
        assert_eq!(CloseFrame::parse(Bytes::new()).unwrap(), None);
    }

    #[test]
    fn refuses_bad_bodies_with_the_right_close_code() {
        let short = CloseFrame::parse(Bytes::from_static(b"\x03")).unwrap_err();
        assert_eq!(short.close_code(), CloseCode::PROTOCOL_ERROR);
        let reserved = CloseFrame::parse(Bytes::from_static(b"\x03\xed")).unwrap_err();
        assert_eq!(reserved.close_code(), CloseCode::PROTOCOL_ERROR);
        let bad_utf8 = CloseFrame::parse(Bytes::from_static(b"\x03\xe8\xff")).unwrap_err();
        assert_eq!(bad_utf8.close_code(), CloseCode::INVALID_PAYLOAD);
    }
}
