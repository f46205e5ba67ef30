//! What the connection targets share: drive a connection with arbitrary input in arbitrary
//! reads, through the read buffer as the runtime does, and check more than "no panic": an error
//! comes once, with a Close queued, and nothing is delivered after it.

use bytes::BytesMut;
use switchboard_proto::{Config, Connection, Message};

/// The largest message the targets' connections accept.
pub const MAX_MESSAGE: usize = 8192;

/// Small limits, so that the fuzzer reaches them.
pub fn config() -> Config {
    Config {
        max_frame_size: 4096,
        max_message_size: MAX_MESSAGE,
        max_fragments: 64,
        ..Config::default()
    }
}

/// Feeds `data` to `conn`, made with [`config`], and checks what comes out.
pub fn drive(mut conn: Connection, data: &[u8]) {
    // The first byte chooses the read size, so chunking is explored too.
    let (chunk, data) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => return,
    };
    let mut failed = false;
    for piece in data.chunks(chunk) {
        read(&mut conn, piece);
        while let Some(event) = conn.poll_message() {
            assert!(!failed, "message after an error");
            match event {
                Ok(Message::Text(t)) => assert!(std::str::from_utf8(t.as_bytes()).is_ok()),
                Ok(Message::Binary(b)) => assert!(b.len() <= MAX_MESSAGE),
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

/// Hands `piece` to `conn` as the runtime's read loop does: an empty read buffer is replaced by
/// a buffer of the bytes read, a partial frame is appended to; then the read is committed.
pub fn read(conn: &mut Connection, piece: &[u8]) {
    let buf = conn.read_buffer();
    if buf.is_empty() {
        *buf = BytesMut::from(piece);
    } else {
        buf.extend_from_slice(piece);
    }
    conn.commit_read(piece.len());
}
