//! Messages: what an application sends and receives (RFC 6455 §5.6, §5.5).

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::text::Utf8Bytes;

/// A WebSocket message: data (text or binary) or control (ping, pong, close).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with up to 125 bytes of application data. Received pings are answered
    /// automatically.
    Ping(Bytes),
    /// A pong with up to 125 bytes of application data.
    Pong(Bytes),
    /// A close, with the status code and reason when the peer gave one.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Self::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Self::Binary(b.into())
    }

    /// Whether this is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Binary(_))
    }

    /// The payload length in bytes (for Close, the code and reason).
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b.len(),
            Self::Close(f) => f.as_ref().map_or(0, CloseFrame::encoded_len),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Self::Text(s.into())
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<Utf8Bytes> for Message {
    fn from(s: Utf8Bytes) -> Self {
        Self::Text(s)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b.into())
    }
}
