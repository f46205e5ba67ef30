//! Compressing and decompressing messages (RFC 7692 §7.2): one DEFLATE stream per direction,
//! each message flushed and its trailing `00 00 ff ff` removed.
//!
//! Invariants:
//! - Inflation stops as soon as a message grows past the caller's limit: a small frame that
//!   inflates to gigabytes costs at most the limit in memory.
//! - Without context takeover, compressor and decompressor state is not kept between
//!   messages: it is borrowed from the thread's [`pool`] and returned reset, so an
//!   idle connection holds none.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::pool;
use super::window::zlib_bits;

/// The four octets that end every flushed message and are removed before sending (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much an inflating message grows at least per step, in bytes.
const INFLATE_STEP: usize = 16 * 1024;

/// Why inflating a message stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The inflated message grew past the limit.
    TooLarge,
    /// The payload is not a valid DEFLATE stream.
    Invalid,
}

/// The compressing side of one connection (§7.2.1).
#[derive(Debug)]
pub(crate) struct Deflater {
    level: u32,
    bits: u8,
    threshold: usize,
    no_context_takeover: bool,
    /// The compressor kept between messages (context takeover), created on first use.
    state: Option<Box<Compress>>,
}

impl Deflater {
    pub(crate) fn new(level: u32, bits: u8, threshold: usize, no_context_takeover: bool) -> Self {
        Self {
            level: level.min(9),
            bits: zlib_bits(bits),
            threshold,
            no_context_takeover,
            state: None,
        }
    }

    /// Whether a payload of `len` bytes is worth compressing.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Whether a message compressed with a fresh compressor of `bits` window bits and this
    /// level is what this side would send: true without context takeover, when the peer
    /// accepts a window that large.
    pub(crate) fn can_share(&self, level: u32, bits: u8) -> bool {
        self.no_context_takeover && level == self.level && bits <= self.bits
    }

    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    pub(crate) fn bits(&self) -> u8 {
        self.bits
    }

    /// Compresses one message: the DEFLATE blocks, flushed, without the trailing
    /// `00 00 ff ff` (§7.2.1).
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        if self.no_context_takeover {
            compress_pooled(self.level, self.bits, payload)
        } else {
            let (level, bits) = (self.level, self.bits);
            let compress = self
                .state
                .get_or_insert_with(|| Box::new(new_compress(level, bits)));
            compress_message(compress, payload)
        }
    }

    /// Whether a compressor is held between messages.
    pub(crate) fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

/// Compresses `payload` as the first message of a fresh stream; used for broadcasts, whose
/// frame every recipient without context takeover can share.
pub(crate) fn compress_once(level: u32, bits: u8, payload: &[u8]) -> Bytes {
    compress_pooled(level, zlib_bits(bits), payload)
}

/// Compresses one message with a compressor borrowed from the thread's pool and returned
/// reset.
fn compress_pooled(level: u32, bits: u8, payload: &[u8]) -> Bytes {
    let mut compress =
        pool::take_compressor(level, bits).unwrap_or_else(|| Box::new(new_compress(level, bits)));
    let out = compress_message(&mut compress, payload);
    compress.reset();
    pool::put_compressor(level, bits, compress);
    out
}

fn new_compress(level: u32, bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, bits)
}

fn compress_message(compress: &mut Compress, mut input: &[u8]) -> Bytes {
    // Text and JSON usually shrink well; start at half the size and grow when needed.
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        let before = compress.total_in();
        // A sync flush ends the message on a byte boundary with an empty stored block, whose
        // last four octets are the trailer removed below (§7.2.1).
        let result = compress.compress_vec(input, &mut out, FlushCompress::Sync);
        let consumed = (compress.total_in() - before) as usize;
        input = &input[consumed..];
        // Errors only come from misuse of the stream (none here); stop rather than loop.
        if result.is_err() {
            break;
        }
        // Done when all input is taken and zlib did not fill the buffer (it has no more).
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    if out.is_empty() {
        // An empty message right after another flush makes zlib write nothing at all; send
        // the empty stored block's first octet, as §7.2.3.6 does, so that the receiver's
        // trailer completes a block instead of starting one.
        out.push(0x00);
    }
    Bytes::from(out)
}

/// The decompressing side of one connection (§7.2.2).
#[derive(Debug)]
pub(crate) struct Inflater {
    bits: u8,
    no_context_takeover: bool,
    /// The decompressor: kept between messages with context takeover, else only while a
    /// message is being inflated.
    state: Option<Box<Decompress>>,
    /// The current message ended a DEFLATE stream (a block with BFINAL set).
    stream_ended: bool,
    /// Compressed bytes of the current message so far.
    message_len: usize,
}

impl Inflater {
    pub(crate) fn new(bits: u8, no_context_takeover: bool) -> Self {
        Self {
            bits: zlib_bits(bits),
            no_context_takeover,
            state: None,
            stream_ended: false,
            message_len: 0,
        }
    }

    /// Inflates the next piece of a compressed message into `out`, which may hold at most
    /// `limit` bytes; with `fin`, the piece is the message's last and the trailer that the
    /// sender removed is added back (§7.2.2).
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let bits = self.bits;
        let state = match &mut self.state {
            Some(state) => state,
            None => {
                let pooled = if self.no_context_takeover {
                    pool::take_decompressor(bits)
                } else {
                    None
                };
                self.state.insert(
                    pooled
                        .unwrap_or_else(|| Box::new(Decompress::new_with_window_bits(false, bits))),
                )
            }
        };
        self.stream_ended |= inflate_into(state, input, out, limit)?;
        self.message_len += input.len();
        if fin {
            if self.message_len == 0 {
                // An empty payload holds no block at all (a sender whose compressor wrote
                // nothing): the message is empty and the stream unchanged.
            } else if self.stream_ended {
                // §7.2.3.4: a message may end its DEFLATE stream with BFINAL set; the sender
                // then starts the next message with a new stream, so this side does too
                // (and the trailer, which closes an open stream's last block, is not added).
                state.reset(false);
                self.stream_ended = false;
            } else {
                inflate_into(state, &TRAILER, out, limit)?;
            }
            self.message_len = 0;
            self.end_message();
        }
        Ok(())
    }

    /// Ends a message: without context takeover the decompressor goes back to the pool.
    fn end_message(&mut self) {
        if self.no_context_takeover
            && let Some(mut state) = self.state.take()
        {
            state.reset(false);
            pool::put_decompressor(self.bits, state);
        }
    }

    /// Forgets a message that will not complete (the connection failed).
    pub(crate) fn abandon(&mut self) {
        self.state = None;
        self.stream_ended = false;
        self.message_len = 0;
    }

    pub(crate) fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

/// Inflates `input` into `out`, at most `limit` bytes in all; returns whether a DEFLATE stream
/// ended on the way.
fn inflate_into(
    state: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, InflateError> {
    let mut ended = false;
    loop {
        if out.len() == out.capacity() {
            // Room for one byte past the limit, so that going over it shows; growth doubles
            // but never reserves beyond that. A first guess sized by the input keeps small
            // messages small (they live on as the received message's bytes).
            let room = (limit + 1).saturating_sub(out.len());
            if room == 0 {
                return Err(InflateError::TooLarge);
            }
            let grow = if out.capacity() == 0 {
                input.len().saturating_mul(4).clamp(256, INFLATE_STEP)
            } else {
                out.capacity()
            };
            out.reserve_exact(grow.min(room));
        }
        let (in_before, out_before) = (state.total_in(), out.len());
        let status = state
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|_| InflateError::Invalid)?;
        let consumed = (state.total_in() - in_before) as usize;
        input = &input[consumed..];
        if out.len() > limit {
            return Err(InflateError::TooLarge);
        }
        if status == Status::StreamEnd {
            // A block with BFINAL set ends the DEFLATE stream (§7.2.3.4 allows it); whatever
            // follows starts a new one.
            state.reset(false);
            ended = true;
            if input.is_empty() {
                return Ok(ended);
            }
            continue;
        }
        let progress = consumed > 0 || out.len() > out_before;
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(ended);
        }
        if !progress && out.len() < out.capacity() {
            // zlib wants more input than this piece holds.
            return Ok(ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(deflater: &mut Deflater, inflater: &mut Inflater, message: &[u8]) -> Bytes {
        let compressed = deflater.compress(message);
        let mut out = Vec::new();
        inflater
            .inflate(&compressed, true, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out, message);
        compressed
    }

    #[test]
    fn rfc_7692_section_7_2_3_1_hello() {
        // "Hello" compressed with no context takeover: c2 48 cd c9 c9 07 00 (§7.2.3.1).
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        inflater
            .inflate(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same message again with context takeover: f2 00 11 00 00.
        inflater
            .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"HelloHello");
        // §7.2.3.3: "Hello" in a stored block (no compression): 00 05 00 fa ff 48 65 6c 6c 6f 00
        let mut out = Vec::new();
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        Inflater::new(15, true)
            .inflate(&stored, true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.4: a final block (BFINAL set) is fine too: f3 48 cd c9 c9 07 00 00.
        let mut out = Vec::new();
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut inflater = Inflater::new(15, false);
        inflater.inflate(&bfinal, true, &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // Without the padding octet, and followed by a message that starts a new stream.
        let mut out = Vec::new();
        inflater.inflate(&bfinal[..7], true, &mut out, 100).unwrap();
        inflater
            .inflate(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"HelloHello");
    }

    #[test]
    fn compressed_hello_matches_rfc_7692_and_shrinks_with_context_takeover() {
        let mut deflater = Deflater::new(6, 15, 0, false);
        let mut inflater = Inflater::new(15, false);
        let first = round_trip(&mut deflater, &mut inflater, b"Hello");
        assert_eq!(&first[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let second = round_trip(&mut deflater, &mut inflater, b"Hello");
        assert!(second.len() < first.len(), "{second:x?}");
        let mut reset = Deflater::new(6, 15, 0, true);
        let mut inflater = Inflater::new(15, true);
        for _ in 0..3 {
            assert_eq!(
                &round_trip(&mut reset, &mut inflater, b"Hello")[..],
                &first[..]
            );
        }
        assert!(!reset.holds_state() && !inflater.holds_state());
        // An empty message compresses to one byte (an empty block), and back, also right
        // after another message with context takeover (zlib itself writes nothing then).
        assert_eq!(&round_trip(&mut reset, &mut inflater, b"")[..], [0x00]);
        let mut deflater = Deflater::new(1, 15, 0, false);
        let mut inflater = Inflater::new(15, false);
        for message in [&b""[..], b"", b"Hello", b"", b"Hello"] {
            round_trip(&mut deflater, &mut inflater, message);
        }
        // A peer that sends an empty payload sends an empty message.
        let mut out = Vec::new();
        inflater.inflate(&[], true, &mut out, 100).unwrap();
        assert!(out.is_empty());
        round_trip(&mut deflater, &mut inflater, b"Hello");
    }

    #[test]
    fn every_window_and_level_round_trips_across_pieces() {
        let message: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"n\":{},\"k\":\"{}\"}}", i % 97, i % 13).into_bytes())
            .collect();
        for bits in 8..=15 {
            for level in [0, 1, 6, 9] {
                for takeover in [false, true] {
                    let mut deflater = Deflater::new(level, bits, 0, !takeover);
                    let mut inflater = Inflater::new(bits, !takeover);
                    for _ in 0..2 {
                        let compressed = deflater.compress(&message);
                        let mut out = Vec::new();
                        // Inflate in three pieces, as if the message came in three frames.
                        let third = compressed.len() / 3;
                        for (i, piece) in compressed.chunks(third.max(1)).enumerate() {
                            let fin = (i + 1) * third.max(1) >= compressed.len();
                            inflater
                                .inflate(piece, fin, &mut out, usize::MAX - 1)
                                .unwrap();
                        }
                        assert_eq!(out, message, "bits {bits} level {level}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_limit_of_8_window_bits_is_met() {
        // Deflated with zlib's 9-bit window, inflated by an inflater whose window is truly
        // 256 bytes: every back-reference fits.
        let message: Vec<u8> = (0..5_000u32)
            .flat_map(|i| format!("<{}:{}>", i % 31, i % 7).into_bytes())
            .collect();
        for level in 1..=9 {
            let mut deflater = Deflater::new(level, 8, 0, false);
            let mut strict = zlib_rs::Inflate::new(false, 8);
            for _ in 0..3 {
                let mut compressed = deflater.compress(&message).to_vec();
                compressed.extend_from_slice(&TRAILER);
                let mut out = vec![0; message.len() + 16];
                let before = strict.total_out();
                strict
                    .decompress(&compressed, &mut out, zlib_rs::InflateFlush::SyncFlush)
                    .unwrap();
                let n = (strict.total_out() - before) as usize;
                assert_eq!(&out[..n], &message[..], "level {level}");
            }
        }
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        // 10 MB of zeros compress to about 10 KB.
        let bomb = Deflater::new(9, 15, 0, true).compress(&vec![0; 10_000_000]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut inflater = Inflater::new(15, true);
        let mut out = Vec::new();
        let limit = 100_000;
        assert_eq!(
            inflater.inflate(&bomb, true, &mut out, limit),
            Err(InflateError::TooLarge)
        );
        assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let exact = Deflater::new(9, 15, 0, true).compress(&vec![0; limit]);
        let mut out = Vec::new();
        Inflater::new(15, true)
            .inflate(&exact, true, &mut out, limit)
            .unwrap();
        assert_eq!(out.len(), limit);
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(15, false).inflate(&[0xff; 32], true, &mut out, 1000),
            Err(InflateError::Invalid)
        );
    }
}
