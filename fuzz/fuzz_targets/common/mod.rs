//! What the connection targets share: drive a connection with arbitrary input in arbitrary
//! reads and check more than "no panic": an error comes once, with a Close queued, and nothing
//! is delivered after it.

use switchboard_proto::{Config, Connection, Message, Role};

pub fn drive(role: Role, data: &[u8]) {
    let config = Config {
        max_frame_size: 4096,
        max_message_size: 8192,
        max_fragments: 64,
        ..Config::default()
    };
    let mut conn = Connection::new(role, config);
    // The first byte chooses the read size, so chunking is explored too.
    let (chunk, data) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => return,
    };
    let mut failed = false;
    for piece in data.chunks(chunk) {
        conn.handle_input(piece);
        while let Some(event) = conn.poll_message() {
            assert!(!failed, "message after an error");
            match event {
                Ok(Message::Text(t)) => assert!(std::str::from_utf8(t.as_bytes()).is_ok()),
                Ok(Message::Binary(b)) => assert!(b.len() <= 8192),
                Ok(Message::Ping(b) | Message::Pong(b)) => assert!(b.len() <= 125),
                Ok(Message::Close(_)) => assert!(conn.is_closed()),
                Err(_) => {
                    failed = true;
                    assert!(conn.is_closed());
                    assert!(conn.buffered_amount() > 0, "no close frame queued");
                }
            }
        }
        while conn.poll_transmit().is_some() {}
    }
}
