//! permessage-deflate (RFC 7692) between connections: RSV1, inflation limits, shared
//! broadcast frames.

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
            read(&mut server, piece);
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
    read(&mut server, &frame(0x82, &[1, 2, 3]));
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
            read(&mut server, &data[start..cut]);
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
