//! A connection on its own: RFC 6455's example frames, failures and the closing handshake.

use bytes::Bytes;

use super::*;
use crate::close::{CloseCode, CloseFrame};
use crate::error::{ProtocolError, SendError};
use crate::mask::apply_mask;
use crate::message::Message;

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(
        Role::Client,
        Config {
            rng_seed: Some(7),
            ..Config::default()
        },
    )
}

fn feed(conn: &mut Connection, data: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    conn.handle_input(data);
    std::iter::from_fn(|| conn.poll_message()).collect()
}

fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn rfc_6455_single_frame_messages() {
    // §5.7: unmasked "Hello" as received by a client.
    let mut c = client();
    let got = feed(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(got, Ok(vec![Message::text("Hello")]));
    // §5.7: masked "Hello" as received by a server.
    let mut s = server();
    let got = feed(
        &mut s,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(got, Ok(vec![Message::text("Hello")]));
}

#[test]
fn rfc_6455_fragmented_message_and_ping() {
    // §5.7: "Hel" + "lo" as two unmasked frames, with an unmasked ping between them.
    let mut c = client();
    assert_eq!(feed(&mut c, &[0x01, 0x03, 0x48, 0x65, 0x6c]), Ok(vec![]));
    let ping = feed(&mut c, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(ping, Ok(vec![Message::Ping(Bytes::from_static(b"Hello"))]));
    assert_eq!(
        feed(&mut c, &[0x80, 0x02, 0x6c, 0x6f]),
        Ok(vec![Message::text("Hello")])
    );
    // The ping was answered with a masked pong carrying the same payload.
    let out = drain(&mut c);
    assert_eq!(&out[..2], &[0x8a, 0x85]);
    let mut pong = out[6..].to_vec();
    apply_mask(&mut pong, out[2..6].try_into().unwrap(), 0);
    assert_eq!(pong, b"Hello");
}

#[test]
fn server_encodes_rfc_6455_unmasked_hello() {
    let mut s = server();
    s.send(Message::text("Hello")).unwrap();
    assert_eq!(drain(&mut s), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    let shared = EncodedFrame::text(&"Hello".into());
    assert_eq!(
        &shared.as_bytes()[..],
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
}

#[test]
fn unmasked_frame_to_server_fails_with_1002() {
    let mut s = server();
    let err = feed(&mut s, &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']).unwrap_err();
    assert_eq!(err, ProtocolError::UnmaskedFrame);
    let out = drain(&mut s);
    assert_eq!(&out[..4], &[0x88, out[1], 0x03, 0xea]);
    assert!(s.is_closed());
    assert_eq!(s.send(Message::text("late")), Err(SendError::Closed));
}

#[test]
fn oversized_frame_header_is_refused_before_its_payload() {
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_frame_size: 1000,
            ..Config::default()
        },
    );
    // A header announcing 1 GiB, and no payload at all.
    let header = [0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4];
    let err = feed(&mut s, &header).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn close_is_echoed_and_ends_the_connection() {
    let mut c = client();
    let got = feed(&mut c, &[0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(
        got,
        Ok(vec![Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            ""
        )))])
    );
    assert!(c.is_closed());
    let out = drain(&mut c);
    assert_eq!(&out[..2], &[0x88, 0x82]);
    // Data after Close is ignored.
    assert_eq!(feed(&mut c, &[0x81, 0x01, b'x']), Ok(vec![]));
}

#[test]
fn a_reply_goes_out_before_the_close_of_a_later_violation() {
    // A valid message, then a frame with RSV2 set, in one read.
    let mut s = server();
    s.handle_input(&[0x81, 0x81, 0, 0, 0, 0, b'a', 0xa1, 0x80, 0, 0, 0, 0]);
    let first = s.poll_message();
    assert_eq!(first, Some(Ok(Message::text("a"))));
    s.send(Message::text("a")).unwrap();
    assert_eq!(s.poll_message(), Some(Err(ProtocolError::ReservedBits)));
    assert_eq!(s.poll_message(), None);
    let out = drain(&mut s);
    assert_eq!(&out[..3], &[0x81, 0x01, b'a']);
    assert_eq!(&out[3..4], &[0x88]);
}
