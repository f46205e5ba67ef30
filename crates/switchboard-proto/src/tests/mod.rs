//! Client and server [`Connection`]s joined by in-memory byte queues, fed the way the runtime
//! feeds them: into the read buffer, in reads of arbitrary sizes, each one committed.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

mod deflate;
mod timers;

use crate::{CloseCode, CloseFrame, Config, Connection, Message, ProtocolError, Role};

/// A client and a server joined back to back.
struct Pair {
    client: Connection,
    server: Connection,
    /// Chooses the size of each read, so that every exchange is cut differently.
    reads: ReadSizes,
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
            reads: ReadSizes(1),
        }
    }

    /// Moves every queued byte both ways, collecting what each side receives, until nothing is
    /// left to move. Returns (client's messages, server's messages).
    fn drive(&mut self) -> Result<(Vec<Message>, Vec<Message>), ProtocolError> {
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        loop {
            let up = transfer(
                &mut self.client,
                &mut self.server,
                &mut self.reads,
                &mut to_server,
            )?;
            let down = transfer(
                &mut self.server,
                &mut self.client,
                &mut self.reads,
                &mut to_client,
            )?;
            if !up && !down {
                return Ok((to_client, to_server));
            }
        }
    }
}

/// Moves what `from` queued to `to` in reads of the sizes `reads` chooses, taking `to`'s
/// messages after each read as the runtime does. Returns whether any byte moved.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    reads: &mut ReadSizes,
    got: &mut Vec<Message>,
) -> Result<bool, ProtocolError> {
    let mut moved = false;
    loop {
        while let Some(m) = to.poll_message() {
            got.push(m?);
        }
        let Some(mut bytes) = from.poll_transmit() else {
            return Ok(moved);
        };
        moved = true;
        while !bytes.is_empty() {
            let piece = bytes.split_to(reads.next().min(bytes.len()));
            read(to, &piece);
            while let Some(m) = to.poll_message() {
                got.push(m?);
            }
        }
    }
}

/// Read sizes from a seeded generator (splitmix64): single bytes, a few bytes, a TCP segment's
/// worth, or everything at once.
struct ReadSizes(u64);

impl ReadSizes {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let z = (z ^ (z >> 31)) as usize;
        match z % 4 {
            0 => 1,
            1 => 1 + (z >> 8) % 16,
            2 => 1 + (z >> 8) % 2048,
            _ => usize::MAX,
        }
    }
}

/// Hands `data` to `conn` as the runtime's read loop does: an empty read buffer is replaced by
/// a buffer of the bytes read, a partial frame is appended to; then the read is committed.
fn read(conn: &mut Connection, data: &[u8]) {
    let buf = conn.read_buffer();
    if buf.is_empty() {
        *buf = BytesMut::from(data);
    } else {
        buf.extend_from_slice(data);
    }
    conn.commit_read(data.len());
}

fn wire(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// Feeds `data` to a fresh server in reads cut at `cuts`; returns its messages and result.
fn feed_in_pieces(data: &[u8], cuts: &[usize]) -> (Vec<Message>, Result<(), ProtocolError>) {
    let mut server = Connection::new(Role::Server, Config::default());
    let mut start = 0;
    let mut got = Vec::new();
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.clamp(start, data.len());
        read(&mut server, &data[start..cut]);
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
        // handle_input is the same path with a copy.
        let mut server = Connection::new(Role::Server, Config::default());
        server.handle_input(&data);
        let copied: Result<Vec<Message>, _> = std::iter::from_fn(|| server.poll_message()).collect();
        prop_assert_eq!(copied.as_ref(), Ok(&whole));
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
fn an_idle_connection_keeps_no_output_buffer() {
    let mut server = Connection::new(Role::Server, Config::default());
    let shared = crate::EncodedFrame::binary(b"to every subscriber");
    for _ in 0..8 {
        server
            .send(Message::Binary(Bytes::from(vec![7; 1000])))
            .unwrap();
        server.send_encoded(&shared).unwrap();
    }
    assert!(server.has_queue());
    // Written four slices at a time, as a vectored write would take them.
    while server.buffered_amount() > 0 {
        let written = {
            let mut slices = [std::io::IoSlice::new(&[]); 4];
            let count = server.transmit_slices(&mut slices);
            slices[..count].iter().map(|s| s.len()).sum::<usize>()
        };
        assert!(written > 0);
        server.advance_transmit(written);
    }
    assert_eq!(server.transmit_slices(&mut [std::io::IoSlice::new(&[])]), 0);
    assert_eq!(server.pending_capacity(), 0);
    assert!(!server.has_queue());
}

#[test]
fn an_emptied_output_buffer_serves_the_next_connection_on_the_thread() {
    let mut first = Connection::new(Role::Server, Config::default());
    first.send(Message::text("hello")).unwrap();
    let capacity = first.pending_capacity();
    first.advance_transmit(first.buffered_amount());
    assert_eq!(first.pending_capacity(), 0);
    // A reply on another connection (or the same one) takes it instead of allocating.
    let mut second = Connection::new(Role::Server, Config::default());
    second.send(Message::text("hi")).unwrap();
    assert_eq!(second.pending_capacity(), capacity);
}

#[test]
fn payloads_are_views_of_the_read_buffer() {
    let mut server = Connection::new(Role::Server, Config::default());
    let frame = [0x82, 0x83, 0, 0, 0, 0, 1, 2, 3];
    read(&mut server, &frame);
    let Some(Ok(Message::Binary(payload))) = server.poll_message() else {
        panic!("no message")
    };
    assert_eq!(payload, Bytes::from_static(&[1, 2, 3]));
}
