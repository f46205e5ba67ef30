//! `connect --jsonl`: each message, sent or received, as one JSON object, for logging a
//! session and for scripts (`jq`).
//!
//! Fields: `timestamp_ms` (milliseconds since the Unix epoch, UTC), `direction` (`in` or
//! `out`), `type` (`text`, `binary`, `ping`, `pong`, `close`), then `payload` (text as a
//! string; binary, ping and pong data as standard base64) or, for a close, `code` and `reason`
//! (`null` when the close frame had no code).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use switchboard::Message;

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// Received from the server.
    In,
    /// Sent to the server.
    Out,
}

/// The JSON object for `message`, stamped with `at`.
pub(super) fn record(direction: Direction, message: &Message, at: SystemTime) -> Value {
    let timestamp_ms = at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    let direction = match direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    let mut line = json!({"timestamp_ms": timestamp_ms, "direction": direction});
    let (kind, fields) = match message {
        Message::Text(text) => ("text", json!({"payload": text.as_str()})),
        Message::Binary(data) => ("binary", json!({"payload": BASE64.encode(data)})),
        Message::Ping(data) => ("ping", json!({"payload": BASE64.encode(data)})),
        Message::Pong(data) => ("pong", json!({"payload": BASE64.encode(data)})),
        Message::Close(Some(frame)) => (
            "close",
            json!({"code": frame.code.0, "reason": frame.reason.as_str()}),
        ),
        Message::Close(None) => ("close", json!({"code": null, "reason": ""})),
    };
    line["type"] = kind.into();
    if let (Value::Object(line), Value::Object(fields)) = (&mut line, fields) {
        line.extend(fields);
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use switchboard::{CloseCode, CloseFrame};

    use super::*;

    #[test]
    fn each_type_has_its_payload_or_close_fields() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let text = record(Direction::Out, &Message::text("héllo"), at);
        assert_eq!(
            text,
            json!({"timestamp_ms": 1_700_000_000_123_u64, "direction": "out", "type": "text",
                   "payload": "héllo"})
        );
        let binary = Message::Binary(Bytes::from_static(b"\x00\xff"));
        let binary = record(Direction::In, &binary, at);
        assert_eq!(
            (&binary["type"], &binary["payload"]),
            (&json!("binary"), &json!("AP8="))
        );
        let close = Message::Close(Some(CloseFrame::new(CloseCode(4000), "bye")));
        let close = record(Direction::In, &close, at);
        assert_eq!(
            (&close["code"], &close["reason"]),
            (&json!(4000), &json!("bye"))
        );
        assert_eq!(
            record(Direction::In, &Message::Close(None), at)["code"],
            Value::Null
        );
    }
}
