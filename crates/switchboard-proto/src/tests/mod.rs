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
    assert!(pair.server.is_closed_by_peer() && !pair.client.is_closed_by_peer());
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

/// What a transport that accepts at most `writes[i]` bytes per call, over at most `iovecs`
/// slices, receives from `conn` through `transmit_slices`/`advance_transmit`.
fn write_in_pieces(conn: &mut Connection, writes: &[usize], iovecs: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut writes = writes.iter().cycle();
    loop {
        let mut slices = vec![std::io::IoSlice::new(&[]); iovecs];
        let count = conn.transmit_slices(&mut slices);
        if count == 0 {
            assert_eq!(conn.buffered_amount(), 0);
            return wire;
        }
        let mut budget = *writes.next().unwrap();
        let mut written = 0;
        for slice in &slices[..count] {
            let n = budget.min(slice.len());
            wire.extend_from_slice(&slice[..n]);
            written += n;
            budget -= n;
        }
        let before = conn.buffered_amount();
        conn.advance_transmit(written);
        assert_eq!(conn.buffered_amount(), before - written);
    }
}

proptest! {
    #[test]
    fn partial_writes_send_the_same_bytes_as_poll_transmit(
        messages in proptest::collection::vec(
            (0usize..3000, any::<bool>(), any::<bool>()), 1..12),
        writes in proptest::collection::vec(1usize..2500, 1..6),
        iovecs in 1usize..5,
    ) {
        let mut conns = [
            Connection::new(Role::Server, Config::default()),
            Connection::new(Role::Server, Config::default()),
        ];
        for (i, (len, encoded, flush_between)) in messages.into_iter().enumerate() {
            let payload = Bytes::from(vec![i as u8; len]);
            for conn in &mut conns {
                if encoded {
                    conn.send_encoded(&crate::EncodedFrame::binary(&payload)).unwrap();
                } else {
                    conn.send(Message::Binary(payload.clone())).unwrap();
                }
            }
            if flush_between {
                let sliced = write_in_pieces(&mut conns[0], &writes, iovecs);
                prop_assert_eq!(sliced, wire(&mut conns[1]));
            }
        }
        let sliced = write_in_pieces(&mut conns[0], &writes, iovecs);
        prop_assert_eq!(sliced, wire(&mut conns[1]));
    }
}

#[test]
fn an_idle_connection_keeps_a_small_output_buffer() {
    let mut server = Connection::new(Role::Server, Config::default());
    for _ in 0..8 {
        server
            .send(Message::Binary(Bytes::from(vec![7; 1000])))
            .unwrap();
    }
    let queued = {
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let count = server.transmit_slices(&mut slices);
        slices[..count].iter().map(|s| s.len()).sum::<usize>()
    };
    assert_eq!(queued, server.buffered_amount());
    server.advance_transmit(queued);
    assert_eq!(server.buffered_amount(), 0);
    assert_eq!(server.transmit_slices(&mut [std::io::IoSlice::new(&[])]), 0);
    assert!(server.pending_capacity() <= super::connection::RETAINED_OUTPUT);
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

mod deflate {
    use super::*;
    use crate::EncodedFrame;
    use crate::deflate::{DeflateConfig, DeflateParams};
    use crate::mask::apply_mask;

    fn always() -> DeflateConfig {
        DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        }
    }

    fn pair_with(params: DeflateParams, config: Config) -> Pair {
        let mut pair = Pair::new(config);
        pair.client.enable_deflate(&params, &always());
        pair.server.enable_deflate(&params, &always());
        pair
    }

    fn server_with(params: DeflateParams, config: Config) -> Connection {
        let mut server = Connection::new(Role::Server, config);
        server.enable_deflate(&params, &always());
        server
    }

    /// A masked frame (zero key) with the given first byte and payload.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    /// A message compressed as a client would, without the frame.
    fn compressed(message: &[u8]) -> Vec<u8> {
        let mut client = Connection::new(Role::Client, Config::default());
        client.enable_deflate(&DeflateParams::default(), &always());
        client.send(Message::binary(message.to_vec())).unwrap();
        let wire = wire(&mut client);
        let (header, len) = FrameHeader::decode(&wire).unwrap().unwrap();
        assert!(header.rsv1);
        let mut payload = wire[len..].to_vec();
        apply_mask(&mut payload, header.mask.unwrap(), 0);
        payload
    }

    use crate::frame::FrameHeader;

    #[test]
    fn messages_round_trip_compressed_with_every_parameter_set() {
        let text = "{\"op\":\"publish\",\"channel\":\"room\",\"data\":\"hello\"}".repeat(20);
        for params in [
            DeflateParams::default(),
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateParams::default()
            },
            DeflateParams {
                server_max_window_bits: Some(9),
                client_max_window_bits: Some(8),
                ..DeflateParams::default()
            },
        ] {
            let mut pair = pair_with(params, Config::default());
            for _ in 0..3 {
                pair.client.send(Message::text(text.clone())).unwrap();
                pair.server.send(Message::binary(text.clone())).unwrap();
                pair.server
                    .send(Message::Ping(Bytes::from_static(b"p")))
                    .unwrap();
            }
            let (at_client, at_server) = pair.drive().unwrap();
            let data: Vec<Message> = at_server.into_iter().filter(Message::is_data).collect();
            assert_eq!(data, vec![Message::text(text.clone()); 3]);
            let mut expected = Vec::new();
            for _ in 0..3 {
                expected.push(Message::binary(text.clone()));
                expected.push(Message::Ping(Bytes::from_static(b"p")));
            }
            assert_eq!(at_client, expected, "{params:?}");
        }
    }

    #[test]
    fn rsv1_marks_the_first_frame_only_and_never_a_control_frame() {
        let mut server = server_with(DeflateParams::default(), Config::default());
        server.send(Message::text("x".repeat(300))).unwrap();
        server
            .send(Message::Ping(Bytes::from_static(b"ping")))
            .unwrap();
        let out = wire(&mut server);
        let (header, len) = FrameHeader::decode(&out).unwrap().unwrap();
        assert!(header.rsv1 && header.fin && (header.len as usize) < 300);
        let (ping, _) = FrameHeader::decode(&out[len + header.len as usize..])
            .unwrap()
            .unwrap();
        assert!(!ping.rsv1);
        // Below the threshold: sent as is.
        let mut server = Connection::new(Role::Server, Config::default());
        server.enable_deflate(&DeflateParams::default(), &DeflateConfig::default());
        server.send(Message::text("short")).unwrap();
        assert_eq!(wire(&mut server), [0x81, 5, b's', b'h', b'o', b'r', b't']);
    }

    #[test]
    fn fragmented_compressed_message_is_inflated_across_frames() {
        let message = "κόσμε ".repeat(100);
        let data = compressed(message.as_bytes());
        let (a, b) = data.split_at(data.len() / 2);
        // Text frame with RSV1, then a continuation without it, a ping in between.
        let mut input = frame(0x41, a);
        input.extend(frame(0x89, b"hi"));
        input.extend(frame(0x80, b));
        for cut in [0, 3, 9, input.len() / 2, input.len() - 1] {
            let mut server = server_with(DeflateParams::default(), Config::default());
            let mut got = Vec::new();
            for piece in [&input[..cut], &input[cut..]] {
                server.handle_input(piece);
                while let Some(m) = server.poll_message() {
                    got.push(m.unwrap());
                }
            }
            assert_eq!(
                got,
                [
                    Message::Ping(Bytes::from_static(b"hi")),
                    Message::text(message.clone())
                ]
            );
        }
    }

    #[test]
    fn rsv1_where_it_does_not_belong_fails_with_1002() {
        let data = compressed(b"hello hello");
        let cases: Vec<(Connection, Vec<u8>)> = vec![
            // Not negotiated.
            (
                Connection::new(Role::Server, Config::default()),
                frame(0xc1, &data),
            ),
            // On a continuation.
            (server_with(DeflateParams::default(), Config::default()), {
                let mut f = frame(0x01, b"a");
                f.extend(frame(0xc0, b"b"));
                f
            }),
            // On a control frame.
            (
                server_with(DeflateParams::default(), Config::default()),
                frame(0xc9, b""),
            ),
        ];
        for (mut server, input) in cases {
            server.handle_input(&input);
            let err = std::iter::from_fn(|| server.poll_message())
                .find_map(Result::err)
                .expect("an error");
            assert_eq!(err, ProtocolError::ReservedBits);
            assert_eq!(&wire(&mut server)[2..4], &1002u16.to_be_bytes());
        }
    }

    #[test]
    fn compression_bomb_closes_with_1009_after_at_most_the_limit() {
        let bomb = compressed(&vec![b'a'; 2_000_000]);
        assert!(bomb.len() < 40_000, "{}", bomb.len());
        let config = Config {
            max_message_size: 64 * 1024,
            ..Config::default()
        };
        let mut server = server_with(DeflateParams::default(), config);
        server.handle_input(&frame(0xc2, &bomb));
        let err = server.poll_message().unwrap().unwrap_err();
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert_eq!(&wire(&mut server)[2..4], &1009u16.to_be_bytes());
        assert!(!server.holds_deflate_state());
    }

    #[test]
    fn invalid_utf8_and_invalid_deflate_data_close_with_1007() {
        let bad_text = compressed(&[b'o', b'k', 0xff, b'!']);
        for input in [frame(0xc1, &bad_text), frame(0xc2, &[0xff; 20])] {
            let mut server = server_with(DeflateParams::default(), Config::default());
            server.handle_input(&input);
            let err = server.poll_message().unwrap().unwrap_err();
            assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD, "{err:?}");
        }
    }

    #[test]
    fn broadcast_is_compressed_once_for_connections_without_context_takeover() {
        let no_takeover = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let message = Message::text("{\"channel\":\"news\",\"data\":\"x\"}".repeat(10));
        let frame = EncodedFrame::from_message(&message).unwrap();
        let mut sent = Vec::new();
        for params in [no_takeover, no_takeover, DeflateParams::default()] {
            let mut pair = pair_with(params, Config::default());
            pair.server.send_encoded(&frame).unwrap();
            let bytes = pair.server.poll_transmit().unwrap();
            pair.client.handle_input(&bytes);
            assert_eq!(pair.client.poll_message(), Some(Ok(message.clone())));
            sent.push(bytes);
        }
        let shared = frame.compressed_bytes().expect("compressed once");
        assert!(shared.len() < frame.as_bytes().len());
        // The same bytes, not a copy, for both connections without context takeover.
        assert_eq!(sent[0].as_ptr(), shared.as_ptr());
        assert_eq!(sent[1].as_ptr(), shared.as_ptr());
        assert_ne!(sent[2].as_ptr(), shared.as_ptr());
    }

    #[test]
    fn uncompressed_path_is_unchanged_and_zero_copy() {
        // With deflate on, an uncompressed message (RSV1 clear) is still a view of the read
        // buffer.
        let mut server = server_with(DeflateParams::default(), Config::default());
        server
            .read_buffer()
            .extend_from_slice(&frame(0x82, &[1, 2, 3]));
        let start = server.read_buffer().as_ptr() as usize;
        let Some(Ok(Message::Binary(payload))) = server.poll_message() else {
            panic!("no message")
        };
        assert_eq!(payload, Bytes::from_static(&[1, 2, 3]));
        assert_eq!(payload.as_ptr() as usize, start + 6);
    }

    proptest! {
        #[test]
        fn any_chunking_of_compressed_input_gives_the_same_messages(
            sent in proptest::collection::vec(any_message(), 0..6),
            cuts in proptest::collection::vec(0usize..3000, 0..10),
            no_takeover in any::<bool>(),
        ) {
            let params = DeflateParams {
                client_no_context_takeover: no_takeover,
                ..DeflateParams::default()
            };
            let mut client = Connection::new(Role::Client, Config { rng_seed: Some(5), ..Config::default() });
            client.enable_deflate(&params, &always());
            for m in &sent {
                client.send(m.clone()).unwrap();
            }
            let data = wire(&mut client);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut server = server_with(params, Config::default());
            let mut got = Vec::new();
            let mut start = 0;
            for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
                let cut = cut.clamp(start, data.len());
                server.handle_input(&data[start..cut]);
                start = cut;
                while let Some(m) = server.poll_message() {
                    got.push(m.unwrap());
                }
            }
            prop_assert_eq!(got, sent);
        }

        #[test]
        fn arbitrary_input_with_deflate_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut server = server_with(DeflateParams::default(), Config { max_message_size: 1000, ..Config::default() });
            server.handle_input(&data);
            while server.poll_message().is_some() {}
        }
    }
}
