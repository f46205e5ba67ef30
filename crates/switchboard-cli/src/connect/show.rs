//! How a message reads as one line of text, in a terminal and in the default piped output:
//! text as it is, binary data and control payloads as hex bytes.

use switchboard::Message;

/// The line for a received message; `None` for what is not shown (pings and pongs unless
/// `ping_pong`, and closes, which go to stderr as status).
pub(super) fn line(message: &Message, ping_pong: bool) -> Option<String> {
    match message {
        Message::Text(text) => Some(text.to_string()),
        Message::Binary(data) => Some(hex(data)),
        Message::Ping(data) if ping_pong => Some(control("ping", data)),
        Message::Pong(data) if ping_pong => Some(control("pong", data)),
        _ => None,
    }
}

fn control(kind: &str, data: &[u8]) -> String {
    if data.is_empty() {
        format!("[{kind}]")
    } else {
        format!("[{kind}] {}", hex(data))
    }
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn binary_and_control_payloads_read_as_hex() {
        let binary = Message::Binary(Bytes::from_static(b"\x00\xffA"));
        assert_eq!(line(&binary, false).as_deref(), Some("00 ff 41"));
        let ping = Message::Ping(Bytes::from_static(b"hi"));
        assert_eq!(line(&ping, true).as_deref(), Some("[ping] 68 69"));
        assert_eq!(line(&ping, false), None);
        assert_eq!(
            line(&Message::Pong(Bytes::new()), true).as_deref(),
            Some("[pong]")
        );
    }
}
