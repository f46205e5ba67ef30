//! permessage-deflate's inflater, through a connection with the extension on: arbitrary
//! DEFLATE data as compressed messages, fragmented, with pings between fragments, cut into
//! arbitrary reads. Each message must come out exactly as a one-shot reference inflate of its
//! whole payload (flate2) says, whatever the fragments and reads: the same bytes, or a failure
//! with the same close code (1009 past the limit, 1007 for invalid data or text). An input
//! whose flag byte says "raw" is fed as wire bytes instead, and only the connection's
//! invariants are checked (as in the connection targets).
//!
//! Layout: a flag byte (bit 0: client role, bit 1: no context takeover, bits 2-4: window bits
//! minus 8, bit 5: raw), a read size, then messages, each a header byte (bit 0: text, bits 1-2:
//! fragments minus 1, bit 3: a ping after the first fragment), a little-endian u16 length and
//! that many bytes of compressed payload.
#![no_main]

use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use switchboard_proto::deflate::{DeflateConfig, DeflateParams};
use switchboard_proto::{CloseCode, Config, Connection, Message, ProtocolError, Role};

mod common;

/// The inflated size limit: small, so that bombs are cheap to find.
const LIMIT: usize = common::MAX_MESSAGE;
/// What the sender strips from every message and the receiver adds back (RFC 7692 §7.2.2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fuzz_target!(|data: &[u8]| {
    let [flags, chunk, rest @ ..] = data else {
        return;
    };
    let raw_input = &data[1..]; // the read size, then wire bytes
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let no_context_takeover = flags & 2 != 0;
    let bits = 8 + ((flags >> 2) & 7);
    // The shared small limits, but frames as long as a message of this target's layout.
    let config = Config {
        max_frame_size: 1 << 16,
        ..common::config()
    };
    let mut conn = Connection::new(role, config);
    let params = DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: Some(bits),
        client_max_window_bits: Some(bits),
    };
    conn.enable_deflate(&params, &DeflateConfig::default());
    if flags & 0x20 != 0 {
        common::drive(conn, raw_input);
    } else {
        let chunk = usize::from(*chunk).max(1);
        messages(conn, role, bits, no_context_takeover, rest, chunk);
    }
});

/// What the reference expects of one message.
#[derive(Debug)]
enum Expected {
    Message {
        text: bool,
        data: Vec<u8>,
    },
    /// The connection fails with this code; `None`: with 1007 or 1009, whichever it finds first
    /// (a text message both invalid and too large).
    Failure(Option<CloseCode>),
}

fn messages(
    mut conn: Connection,
    role: Role,
    bits: u8,
    no_context_takeover: bool,
    mut data: &[u8],
    chunk: usize,
) {
    let mut reference = Reference::new(bits, no_context_takeover);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    while let [header, lo, hi, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        data = rest;
        let text = header & 1 != 0;
        let fragments = 1 + usize::from((header >> 1) & 3);
        let ping = header & 8 != 0;
        write_message(&mut wire, role, text, payload, fragments, ping, *header);
        let outcome = match (reference.message(payload), text) {
            (Ok(data), true) if std::str::from_utf8(&data).is_err() => {
                Expected::Failure(Some(CloseCode::INVALID_PAYLOAD))
            }
            (Ok(data), text) => Expected::Message { text, data },
            (Err(_), true) => Expected::Failure(None),
            (Err(code), false) => Expected::Failure(Some(code)),
        };
        let failed = matches!(outcome, Expected::Failure(_));
        expected.push(outcome);
        if failed {
            break; // the connection reads nothing after a failure
        }
    }

    let mut got = Vec::new();
    for piece in wire.chunks(chunk) {
        common::read(&mut conn, piece);
        while let Some(event) = conn.poll_message() {
            match event {
                Ok(Message::Ping(_)) => {}
                other => got.push(other),
            }
        }
        while conn.poll_transmit().is_some() {}
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "got {got:?}, expected {expected:?}"
    );
    for (got, expected) in got.iter().zip(&expected) {
        match (got, expected) {
            (Ok(Message::Text(t)), Expected::Message { text: true, data }) => {
                assert_eq!(t.as_bytes(), &data[..]);
            }
            (Ok(Message::Binary(b)), Expected::Message { text: false, data }) => {
                assert_eq!(&b[..], &data[..]);
            }
            (Err(e), Expected::Failure(code)) => {
                let allowed = [CloseCode::INVALID_PAYLOAD, CloseCode::MESSAGE_TOO_BIG];
                match code {
                    Some(code) => assert_eq!(e.close_code(), *code, "{e}"),
                    None => assert!(allowed.contains(&e.close_code()), "{e}"),
                }
                assert!(is_payload_error(e), "{e}");
                assert!(conn.is_closed());
            }
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }
    if no_context_takeover && !matches!(expected.last(), Some(Expected::Failure(_))) {
        // Between messages, a connection without context takeover holds no zlib state.
        assert!(
            !conn.holds_deflate_state(),
            "inflater state kept between messages"
        );
    }
}

fn is_payload_error(e: &ProtocolError) -> bool {
    matches!(
        e,
        ProtocolError::InvalidCompressedData
            | ProtocolError::InvalidUtf8
            | ProtocolError::MessageTooLarge { .. }
    )
}

/// Frames for one compressed message: RSV1 on the first, the payload cut into `fragments`
/// near-equal parts, a ping after the first if asked; masked when the receiver is a server.
fn write_message(
    wire: &mut Vec<u8>,
    role: Role,
    text: bool,
    payload: &[u8],
    fragments: usize,
    ping: bool,
    seed: u8,
) {
    let mask = (role == Role::Server).then(|| [seed, seed ^ 0x5a, seed.wrapping_add(7), 0xc3]);
    let step = payload.len().div_ceil(fragments).max(1);
    let parts: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(step).collect()
    };
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        let opcode = match (i, text) {
            (0, true) => 0x1,
            (0, false) => 0x2,
            _ => 0x0,
        };
        let rsv1 = if i == 0 { 0x40 } else { 0 };
        let fin = if i == last { 0x80 } else { 0 };
        write_frame(wire, fin | rsv1 | opcode, part, mask);
        if i == 0 && ping {
            write_frame(wire, 0x89, b"between", mask);
        }
    }
}

fn write_frame(wire: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    wire.push(first);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => wire.push(masked | len as u8),
        len @ 126..=0xffff => {
            wire.push(masked | 126);
            wire.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            wire.push(masked | 127);
            wire.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            wire.extend_from_slice(&key);
            wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => wire.extend_from_slice(payload),
    }
}

/// A one-shot inflate of each whole message, kept apart from the connection's incremental one:
/// a DEFLATE stream that ends (BFINAL) restarts with a fresh stream for what follows, and then
/// no trailer is added; an empty payload is an empty message.
struct Reference {
    state: Decompress,
    bits: u8,
    no_context_takeover: bool,
}

impl Reference {
    fn new(bits: u8, no_context_takeover: bool) -> Self {
        // zlib inflates with 9 to 15 bits; a 9-bit window also holds every 8-bit stream.
        let bits = bits.max(9);
        Self {
            state: Decompress::new_with_window_bits(false, bits),
            bits,
            no_context_takeover,
        }
    }

    fn message(&mut self, payload: &[u8]) -> Result<Vec<u8>, CloseCode> {
        let mut out = Vec::with_capacity(LIMIT + 1);
        if payload.is_empty() {
            return Ok(out);
        }
        let ended = self.inflate(payload, &mut out)?;
        if ended {
            self.state.reset(false);
        } else {
            self.inflate(&TRAILER, &mut out)?;
        }
        if self.no_context_takeover {
            self.state = Decompress::new_with_window_bits(false, self.bits);
        }
        Ok(out)
    }

    /// Inflates `input` into `out` (capacity LIMIT + 1); whether a stream ended on the way.
    fn inflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, CloseCode> {
        let mut ended = false;
        loop {
            let (in_before, out_before) = (self.state.total_in(), out.len());
            let status = self
                .state
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|_| CloseCode::INVALID_PAYLOAD)?;
            input = &input[(self.state.total_in() - in_before) as usize..];
            if out.len() > LIMIT {
                return Err(CloseCode::MESSAGE_TOO_BIG);
            }
            if status == Status::StreamEnd {
                self.state.reset(false);
                ended = true;
                if input.is_empty() {
                    return Ok(ended);
                }
                continue;
            }
            let progress = self.state.total_in() > in_before || out.len() > out_before;
            if input.is_empty() || !progress {
                return Ok(ended);
            }
        }
    }
}
