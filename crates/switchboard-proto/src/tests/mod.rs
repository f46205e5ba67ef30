//! Client and server [`Connection`]s joined by in-memory byte queues.

use bytes::Bytes;
use proptest::prelude::*;

mod timers;

use crate::{CloseCode, CloseFrame, Config, Connection, Message, ProtocolError, Role};

/// A client and a server joined back to back.
struct Pair {
    client: Connection,
    server: Connection,
}

impl Pair {
    fn new(config: Config) -> Self {
        Self {
            client: Connection::new(
                Role::Client,
                Config {
                    rng_seed: Some(1),
                    ..config.clone()
                },
            ),
            server: Connection::new(Role::Server, config),
        }
    }

    /// Moves every queued byte both ways, collecting what each side receives, until nothing is
    /// left to move. Returns (client's messages, server's messages).
    fn drive(&mut self) -> Result<(Vec<Message>, Vec<Message>), ProtocolError> {
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.server.handle_input(&b);
                moved = true;
            }
            while let Some(m) = self.server.poll_message() {
                to_server.push(m?);
            }
            while let Some(b) = self.server.poll_transmit() {
                self.client.handle_input(&b);
                moved = true;
            }
            while let Some(m) = self.client.poll_message() {
                to_client.push(m?);
            }
            if !moved {
                return Ok((to_client, to_server));
            }
        }
    }
}

fn wire(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// Feeds `data` to a fresh server in pieces cut at `cuts`; returns its messages and result.
fn feed_in_pieces(data: &[u8], cuts: &[usize]) -> (Vec<Message>, Result<(), ProtocolError>) {
    let mut server = Connection::new(Role::Server, Config::default());
    let mut start = 0;
    let mut got = Vec::new();
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.clamp(start, data.len());
        server.handle_input(&data[start..cut]);
        start = cut;
        while let Some(m) = server.poll_message() {
            match m {
                Ok(m) => got.push(m),
                Err(e) => return (got, Err(e)),
            }
        }
    }
    (got, Ok(()))
}

#[test]
fn echo_round_trip_and_clean_close() {
    let mut pair = Pair::new(Config::default());
    pair.client.send(Message::text("héllo")).unwrap();
    pair.client
        .send(Message::binary(vec![0u8; 70_000]))
        .unwrap();
    let (_, received) = pair.drive().unwrap();
    for m in received {
        pair.server.send(m).unwrap();
    }
    let (echoed, _) = pair.drive().unwrap();
    assert_eq!(
        echoed,
        [Message::text("héllo"), Message::binary(vec![0u8; 70_000])]
    );

    pair.client.close(CloseCode::GOING_AWAY, "bye").unwrap();
    assert!(pair.client.is_closing() && !pair.client.is_closed());
    let (at_client, at_server) = pair.drive().unwrap();
    let closed = Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "bye")));
    assert_eq!(at_server, [closed]);
    // The server echoed the code; the client's handshake is complete too.
    let echoed = Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")));
    assert_eq!(at_client, [echoed]);
    assert!(pair.client.is_closed() && pair.server.is_closed());
}

#[test]
fn invalid_utf8_fails_before_the_frame_completes() {
    // A masked text frame announcing 100 bytes whose third byte is invalid UTF-8: the server
    // fails after 3 payload bytes, without waiting for the other 97.
    let mut frame = vec![0x81, 0x80 | 100, 0, 0, 0, 0];
    frame.extend_from_slice(&[b'o', b'k', 0xff]);
    let (got, result) = feed_in_pieces(&frame, &[]);
    assert_eq!((got, result), (vec![], Err(ProtocolError::InvalidUtf8)));
    let mut server = Connection::new(Role::Server, Config::default());
    server.handle_input(&frame);
    assert_eq!(server.poll_message(), Some(Err(ProtocolError::InvalidUtf8)));
    let out = wire(&mut server);
    assert_eq!(&out[2..4], &1007u16.to_be_bytes());
}

#[test]
fn fragmented_text_split_inside_a_code_point() {
    // "€" is e2 82 ac: e2 | 82 ac as two fragments (masked with a zero key).
    let data = [
        0x01, 0x81, 0, 0, 0, 0, 0xe2, 0x80, 0x82, 0, 0, 0, 0, 0x82, 0xac,
    ];
    assert_eq!(
        feed_in_pieces(&data, &[7]),
        (vec![Message::text("€")], Ok(()))
    );
}

#[test]
fn limits_close_with_1009_and_1008() {
    let config = Config {
        max_message_size: 10,
        max_fragments: 3,
        ..Config::default()
    };
    let mut pair = Pair::new(config.clone());
    pair.client.send(Message::binary(vec![1u8; 11])).unwrap();
    let err = pair.drive().unwrap_err();
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);

    // Four empty fragments: the fourth is one too many.
    let mut server = Connection::new(Role::Server, config);
    let first = [0x02, 0x80, 0, 0, 0, 0];
    let cont = [0x00, 0x80, 0, 0, 0, 0];
    server.handle_input(&first);
    server.handle_input(&cont);
    server.handle_input(&cont);
    assert_eq!(server.poll_message(), None);
    server.handle_input(&cont);
    let err = server.poll_message().unwrap().unwrap_err();
    assert_eq!(err.close_code(), CloseCode::POLICY_VIOLATION);
}

#[test]
fn fragmentation_order_is_enforced() {
    let (_, result) = feed_in_pieces(&[0x80, 0x80, 0, 0, 0, 0], &[]);
    assert_eq!(result, Err(ProtocolError::UnexpectedContinuation));
    let (_, result) = feed_in_pieces(&[0x01, 0x80, 0, 0, 0, 0, 0x81, 0x80, 0, 0, 0, 0], &[]);
    assert_eq!(result, Err(ProtocolError::ExpectedContinuation));
    let (_, result) = feed_in_pieces(&[0xc1, 0x80, 0, 0, 0, 0], &[]);
    assert_eq!(result, Err(ProtocolError::ReservedBits));
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "\\PC{0,40}".prop_map(Message::from),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Message::from),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(|b| Message::Ping(b.into())),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(|b| Message::Pong(b.into())),
    ]
}

proptest! {
    #[test]
    fn any_chunking_of_the_input_gives_the_same_messages(
        sent in proptest::collection::vec(any_message(), 0..8),
        cuts in proptest::collection::vec(0usize..4000, 0..12),
    ) {
        let mut client = Connection::new(Role::Client, Config { rng_seed: Some(3), ..Config::default() });
        for m in &sent {
            client.send(m.clone()).unwrap();
        }
        client.close(CloseCode::NORMAL, "").unwrap();
        let data = wire(&mut client);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (whole, whole_result) = feed_in_pieces(&data, &[]);
        let (pieces, pieces_result) = feed_in_pieces(&data, &cuts);
        prop_assert_eq!(&whole, &pieces);
        prop_assert_eq!(whole_result, Ok(()));
        prop_assert_eq!(pieces_result, Ok(()));
        let mut expected = sent.clone();
        expected.push(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
        prop_assert_eq!(whole, expected);
    }

    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (_, _) = feed_in_pieces(&data, &[7, 50]);
        let mut client = Connection::new(Role::Client, Config::default());
        client.handle_input(&data);
        while client.poll_message().is_some() {}
    }

    #[test]
    fn round_trip_through_a_pair(sent in proptest::collection::vec(any_message(), 0..8)) {
        let mut pair = Pair::new(Config::default());
        for m in &sent {
            pair.server.send(m.clone()).unwrap();
        }
        let (received, _) = pair.drive().unwrap();
        prop_assert_eq!(received, sent);
    }
}

#[test]
fn payloads_are_views_of_the_read_buffer() {
    let mut server = Connection::new(Role::Server, Config::default());
    let frame = [0x82, 0x83, 0, 0, 0, 0, 1, 2, 3];
    server.read_buffer().extend_from_slice(&frame);
    let Some(Ok(Message::Binary(payload))) = server.poll_message() else {
        panic!("no message")
    };
    assert_eq!(payload, Bytes::from_static(&[1, 2, 3]));
}
