//! permessage-deflate (RFC 7692): negotiating the extension in the opening handshake, and
//! compressing and decompressing messages.
//!
//! Negotiation: a client offers the extension in `Sec-WebSocket-Extensions`
//! ([`DeflateConfig::offer`]); a server picks the first offer it can accept
//! ([`DeflateConfig::negotiate`]) and answers with the agreed [`DeflateParams`]
//! ([`DeflateParams::to_header`]); the client checks that answer against its offer
//! ([`DeflateConfig::accept_response`]). A [`Connection`](crate::Connection) then compresses
//! and decompresses with [`Connection::enable_deflate`](crate::Connection::enable_deflate).
//!
//! Invariants:
//! - An offer with an unknown, duplicate or malformed parameter is declined (§5.1), never
//!   partly accepted; an answer the client did not allow fails the handshake (§5.1, §7.1).
//! - Window bits 9 to 15 are used as negotiated. zlib cannot deflate with an 8-bit window, so
//!   a limit of 8 is met by deflating with a 9-bit window: zlib never looks back further than
//!   the window size minus 262 bytes, 250 for a 512-byte window, so every back-reference fits
//!   in the 256-byte window the peer asked for (tested below with an 8-bit inflater).
//! - Inflation stops as soon as a message grows past the caller's limit: a small frame that
//!   inflates to gigabytes costs at most the limit in memory.
//! - Without context takeover, compressor and decompressor state is not kept between
//!   messages: it comes from a small per-thread pool and goes back to it, so an idle connection
//!   holds none (the pool holds a few per thread, not one per connection).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderValue;
use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// The extension's name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The four octets that end every flushed message and are removed before sending (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Largest and default LZ77 window, as the base-2 logarithm of its size (§7.1.2).
const MAX_WINDOW_BITS: u8 = 15;
/// Smallest window a peer may ask for (§7.1.2).
const MIN_WINDOW_BITS: u8 = 8;

/// How much an inflating message grows at least per step, in bytes.
const INFLATE_STEP: usize = 16 * 1024;

/// What this endpoint wants from permessage-deflate: what to offer or accept in the
/// handshake, and how to compress.
///
/// The defaults accept every offer a browser or Node's `ws` makes, with context takeover and
/// 15-bit windows both ways (the best ratio; about 420 KiB of zlib state per connection once
/// both directions have carried a compressed message), compression level 1 and a threshold of
/// 128 bytes.
///
/// Level 1 because compression dominates the cost of a compressed message: on 1 KiB JSON chat
/// messages with context takeover, level 1 compressed 3.2:1 at about 145,000 messages/s on one
/// core, level 6 5.1:1 at about 21,000 (`examples/deflate_numbers.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib compression level, 0 (store) to 9 (smallest); 1 is fastest at compressing.
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear): compressing
    /// them costs CPU for a few bytes saved at best.
    pub threshold: usize,
    /// Server: always answer with `server_no_context_takeover`, even when the client did not
    /// ask: the server then keeps no compressor per connection, and a broadcast is compressed
    /// once for every recipient ([`EncodedFrame`](crate::EncodedFrame)). Client: ask for it.
    pub server_no_context_takeover: bool,
    /// Server: answer with `client_no_context_takeover`, so that it keeps no decompressor per
    /// connection between messages. Client: offer it.
    pub client_no_context_takeover: bool,
    /// Server: the largest window its compressor uses (8 to 15). Client: ask the server for at
    /// most this window (sent when below 15).
    pub server_max_window_bits: u8,
    /// Server: limit the client's compression window to this (8 to 15) when the client allows
    /// it. Client: the window it offers to use at most; 15 sends the bare parameter ("any
    /// value the server picks").
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 1,
            threshold: 128,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// The parameters both ends agreed on: the extension as the server's response names it
/// ([`to_header`](Self::to_header)); on the client, with the window it offered to keep to when
/// the server named none.
///
/// A window of `None` means no limit: 15 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compressor after every message (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// The client compresses with at most this window (§7.1.2.2).
    pub client_max_window_bits: Option<u8>,
}

/// Why a server's permessage-deflate answer was refused by the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// The header is not a valid extension list (RFC 6455 §9.1).
    #[error("malformed sec-websocket-extensions header")]
    Malformed,
    /// The response names permessage-deflate more than once.
    #[error("permessage-deflate answered more than once")]
    Repeated,
    /// A parameter that is not defined for a response, or one the client did not allow.
    #[error("parameter {0} was not allowed")]
    UnexpectedParameter(String),
    /// A parameter appears twice.
    #[error("parameter {0} appears twice")]
    DuplicateParameter(String),
    /// A parameter has a value it may not have.
    #[error("parameter {0} has an invalid value")]
    InvalidValue(String),
    /// A parameter the client asked for is missing from the answer.
    #[error("parameter {0} was requested but not answered")]
    MissingParameter(String),
}

impl DeflateConfig {
    /// The `Sec-WebSocket-Extensions` value a client sends to offer permessage-deflate as
    /// configured (§5.1): always with `client_max_window_bits`, so that the server may limit
    /// the client's window.
    ///
    /// ```
    /// use switchboard_proto::deflate::DeflateConfig;
    ///
    /// let offer = DeflateConfig::default().offer();
    /// assert_eq!(offer, "permessage-deflate; client_max_window_bits");
    /// ```
    pub fn offer(&self) -> HeaderValue {
        let mut value = header_start(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
        );
        let server_bits = clamp_bits(self.server_max_window_bits);
        if server_bits < MAX_WINDOW_BITS {
            value.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < MAX_WINDOW_BITS {
            value.push_str(&format!("; client_max_window_bits={client_bits}"));
        } else {
            value.push_str("; client_max_window_bits");
        }
        // Built from ASCII names and digits only.
        HeaderValue::try_from(value).expect("an ascii header value")
    }

    /// Server side: the parameters to accept, chosen from the client's offers in the
    /// request's `Sec-WebSocket-Extensions` headers, or `None` to decline (and not compress).
    ///
    /// The first offer this server can accept wins (§5.1: offers are in the client's order of
    /// preference). An offer is declined if it has an unknown, duplicate or malformed
    /// parameter (§7: "A server MUST decline an extension negotiation offer for this extension
    /// if any of the following conditions are met"). A header value that is not a valid
    /// extension list is skipped entirely.
    ///
    /// ```
    /// use switchboard_proto::deflate::DeflateConfig;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(
    ///     http::header::SEC_WEBSOCKET_EXTENSIONS,
    ///     "permessage-deflate; client_max_window_bits".parse().unwrap(),
    /// );
    /// let agreed = DeflateConfig::default().negotiate(&headers).unwrap();
    /// assert_eq!(agreed.to_header(), "permessage-deflate");
    /// ```
    pub fn negotiate(&self, headers: &HeaderMap) -> Option<DeflateParams> {
        headers
            .get_all(SEC_WEBSOCKET_EXTENSIONS)
            .into_iter()
            .filter_map(|value| parse_extensions(value.as_bytes()).ok())
            .flatten()
            .filter(|element| element.name.eq_ignore_ascii_case(EXTENSION_NAME))
            .find_map(|element| self.accept_offer(&element))
    }

    fn accept_offer(&self, element: &Element<'_>) -> Option<DeflateParams> {
        let offer = Offer::parse(element).ok()?;
        // §7.1.2.1: the response's server_max_window_bits must not exceed the offer's; the
        // server may limit its own window further, or name a limit nobody asked for.
        let own_bits = clamp_bits(self.server_max_window_bits);
        let server_max_window_bits = match offer.server_max_window_bits {
            Some(bits) => Some(bits.min(own_bits)),
            None if own_bits < MAX_WINDOW_BITS => Some(own_bits),
            None => None,
        };
        // §7.1.2.2: "If a received extension negotiation offer doesn't have the
        // "client_max_window_bits" extension parameter, the corresponding extension
        // negotiation response to the offer MUST NOT include the "client_max_window_bits"
        // extension parameter." Without it, the client may use 15 bits, which this server's
        // decompressor accepts whatever it would prefer.
        let client_max_window_bits = match offer.client_max_window_bits {
            None => None,
            Some(hint) => {
                let bits = hint
                    .unwrap_or(MAX_WINDOW_BITS)
                    .min(clamp_bits(self.client_max_window_bits));
                (bits < MAX_WINDOW_BITS).then_some(bits)
            }
        };
        Some(DeflateParams {
            // §7.1.1.1: a server that accepts an offer with server_no_context_takeover
            // includes it in its response.
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            // §7.1.1.2: the server may include client_no_context_takeover whether or not the
            // offer had it.
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }

    /// Client side: checks the server's `Sec-WebSocket-Extensions` answer to
    /// [`offer`](Self::offer) and returns the agreed parameters, or `None` when the server declined
    /// (no permessage-deflate in the answer; other extensions are not this module's concern).
    ///
    /// # Errors
    ///
    /// A [`DeflateError`] when the answer is one this offer did not allow (§7.1: "the client
    /// MUST _Fail the WebSocket Connection_"): a malformed header, permessage-deflate named
    /// twice, an unknown or repeated parameter, a window outside 8..=15 or above the one
    /// requested, `client_max_window_bits` without a value, or a parameter the offer asked
    /// for that the answer lacks.
    pub fn accept_response(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<DeflateParams>, DeflateError> {
        let mut found = None;
        for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
            let elements =
                parse_extensions(value.as_bytes()).map_err(|()| DeflateError::Malformed)?;
            for element in elements {
                if !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                    continue;
                }
                if found.is_some() {
                    return Err(DeflateError::Repeated);
                }
                found = Some(self.check_response(&element)?);
            }
        }
        Ok(found)
    }

    fn check_response(&self, element: &Element<'_>) -> Result<DeflateParams, DeflateError> {
        let offer = Offer::parse(element)?;
        let Some(client_bits) = offer.client_max_window_bits.map(|bits| {
            // §7.1.2.2: in a response, client_max_window_bits must have a value.
            bits.ok_or_else(|| DeflateError::InvalidValue("client_max_window_bits".into()))
        }) else {
            // No limit from the server: the client keeps to the window it offered.
            let own = clamp_bits(self.client_max_window_bits);
            return self.check_server_side(&offer, (own < MAX_WINDOW_BITS).then_some(own));
        };
        // The offer always carries client_max_window_bits, so the server may name any window:
        // the client then uses the smaller of that and its own.
        let bits = client_bits?.min(clamp_bits(self.client_max_window_bits));
        self.check_server_side(&offer, Some(bits))
    }

    fn check_server_side(
        &self,
        offer: &Offer,
        client_max_window_bits: Option<u8>,
    ) -> Result<DeflateParams, DeflateError> {
        // §7.1.1.1: a server accepting server_no_context_takeover includes it in the response.
        if self.server_no_context_takeover && !offer.server_no_context_takeover {
            return Err(DeflateError::MissingParameter(
                "server_no_context_takeover".into(),
            ));
        }
        let requested = clamp_bits(self.server_max_window_bits);
        match offer.server_max_window_bits {
            // §7.1.2.1: an offer with server_max_window_bits is accepted by naming it.
            None if requested < MAX_WINDOW_BITS => {
                return Err(DeflateError::MissingParameter(
                    "server_max_window_bits".into(),
                ));
            }
            Some(bits) if bits > requested => {
                return Err(DeflateError::InvalidValue("server_max_window_bits".into()));
            }
            _ => {}
        }
        Ok(DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: offer.server_max_window_bits,
            client_max_window_bits,
        })
    }
}

/// The start of an offer or answer: the extension name and the takeover flags.
fn header_start(server_no_context_takeover: bool, client_no_context_takeover: bool) -> String {
    let mut value = String::from(EXTENSION_NAME);
    if server_no_context_takeover {
        value.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        value.push_str("; client_no_context_takeover");
    }
    value
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value of a server's response that accepts these
    /// parameters.
    pub fn to_header(&self) -> HeaderValue {
        let mut value = header_start(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
        );
        if let Some(bits) = self.server_max_window_bits {
            value.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            value.push_str(&format!("; client_max_window_bits={bits}"));
        }
        // Built from ASCII names and digits only.
        HeaderValue::try_from(value).expect("an ascii header value")
    }

    /// The window the server compresses with, in bits.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }

    /// The window the client compresses with, in bits.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }
}

/// One permessage-deflate element's parameters, checked (§7.1).
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    fn parse(element: &Element<'_>) -> Result<Self, DeflateError> {
        let mut offer = Self::default();
        let mut seen = [false; 4];
        for (name, value) in &element.params {
            let index = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return Err(DeflateError::UnexpectedParameter((*name).to_owned())),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(DeflateError::DuplicateParameter((*name).to_owned()));
            }
            let invalid = || DeflateError::InvalidValue((*name).to_owned());
            match index {
                // §7.1.1: the no_context_takeover parameters have no value.
                0 | 1 if value.is_some() => return Err(invalid()),
                0 => offer.server_no_context_takeover = true,
                1 => offer.client_no_context_takeover = true,
                // §7.1.2.1: server_max_window_bits has a value.
                2 => {
                    let value = value.as_deref().ok_or_else(invalid)?;
                    offer.server_max_window_bits = Some(parse_bits(value).ok_or_else(invalid)?);
                }
                _ => {
                    let bits = match value.as_deref() {
                        Some(value) => Some(parse_bits(value).ok_or_else(invalid)?),
                        None => None,
                    };
                    offer.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok(offer)
    }
}

/// A window size parameter: "a decimal integer value without leading zeroes between 8 to 15,
/// inclusive" (§7.1.2.1).
fn parse_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.is_empty() || value.len() > 2 {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// zlib's raw deflate takes windows of 9 to 15 bits; see the module docs for 8.
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, MAX_WINDOW_BITS)
}

/// One element of an extension list: a name and its parameters, values unquoted.
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1):
/// `extension-list = 1#extension`, `extension = token *( ";" param )`,
/// `param = token [ "=" (token | quoted-string) ]`, with optional whitespace around the
/// separators. Empty list elements are skipped (RFC 9110 §5.6.1).
fn parse_extensions(value: &[u8]) -> Result<Vec<Element<'_>>, ()> {
    let text = std::str::from_utf8(value).map_err(|_| ())?;
    let mut parser = Parser { text, at: 0 };
    let mut elements = Vec::new();
    loop {
        parser.skip_space();
        match parser.peek() {
            None => return Ok(elements),
            Some(b',') => {
                parser.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = parser.token()?;
        let mut params = Vec::new();
        loop {
            parser.skip_space();
            match parser.peek() {
                None | Some(b',') => break,
                Some(b';') => parser.at += 1,
                Some(_) => return Err(()),
            }
            parser.skip_space();
            let param = parser.token()?;
            parser.skip_space();
            let value = if parser.peek() == Some(b'=') {
                parser.at += 1;
                parser.skip_space();
                let value = if parser.peek() == Some(b'"') {
                    parser.quoted()?
                } else {
                    parser.token()?.to_owned()
                };
                Some(value)
            } else {
                None
            };
            params.push((param, value));
        }
        elements.push(Element { name, params });
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, ()> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(());
        }
        Ok(&self.text[start..self.at])
    }

    /// A quoted-string, unquoted. RFC 6455 §9.1: its value "MUST conform to the 'token' ABNF"
    /// once unquoted, which callers check as they interpret it.
    fn quoted(&mut self) -> Result<String, ()> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(()),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or(())?;
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(c) if c.is_ascii() && c != 0x7f && (c >= 0x20 || c == b'\t') => {
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(_) => return Err(()),
            }
        }
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

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
            let mut compress =
                POOL.with(|pool| pool.borrow_mut().compressor(self.level, self.bits));
            let out = compress_message(&mut compress, payload);
            compress.reset();
            POOL.with(|pool| {
                pool.borrow_mut()
                    .put_compressor(self.level, self.bits, compress)
            });
            out
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

/// Compresses `payload` with one message worth of a fresh or shared compressor; used for
/// broadcasts, whose frame every recipient without context takeover can share.
pub(crate) fn compress_once(level: u32, bits: u8, payload: &[u8]) -> Bytes {
    let bits = zlib_bits(bits);
    let mut compress = POOL.with(|pool| pool.borrow_mut().compressor(level, bits));
    let out = compress_message(&mut compress, payload);
    compress.reset();
    POOL.with(|pool| pool.borrow_mut().put_compressor(level, bits, compress));
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
                let fresh = if self.no_context_takeover {
                    POOL.with(|pool| pool.borrow_mut().decompressor(bits))
                } else {
                    Box::new(Decompress::new_with_window_bits(false, bits))
                };
                self.state.insert(fresh)
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
        if self.no_context_takeover {
            if let Some(mut state) = self.state.take() {
                state.reset(false);
                POOL.with(|pool| pool.borrow_mut().put_decompressor(self.bits, state));
            }
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

/// Compressors and decompressors kept per thread for connections without context takeover:
/// a message borrows one and returns it reset, so the state exists per thread in use, not per
/// connection.
#[derive(Default)]
struct Pool {
    compressors: Vec<(u32, u8, Box<Compress>)>,
    decompressors: Vec<(u8, Box<Decompress>)>,
}

/// The most idle compressors (and, apart, decompressors) a thread keeps.
const POOL_SIZE: usize = 4;

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

impl Pool {
    fn compressor(&mut self, level: u32, bits: u8) -> Box<Compress> {
        match self
            .compressors
            .iter()
            .position(|(l, b, _)| *l == level && *b == bits)
        {
            Some(i) => self.compressors.swap_remove(i).2,
            None => Box::new(new_compress(level, bits)),
        }
    }

    fn put_compressor(&mut self, level: u32, bits: u8, compress: Box<Compress>) {
        if self.compressors.len() == POOL_SIZE {
            self.compressors.remove(0);
        }
        self.compressors.push((level, bits, compress));
    }

    fn decompressor(&mut self, bits: u8) -> Box<Decompress> {
        match self.decompressors.iter().position(|(b, _)| *b == bits) {
            Some(i) => self.decompressors.swap_remove(i).1,
            None => Box::new(Decompress::new_with_window_bits(false, bits)),
        }
    }

    fn put_decompressor(&mut self, bits: u8, decompress: Box<Decompress>) {
        if self.decompressors.len() == POOL_SIZE {
            self.decompressors.remove(0);
        }
        self.decompressors.push((bits, decompress));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(SEC_WEBSOCKET_EXTENSIONS, v.parse().unwrap());
        }
        map
    }

    fn negotiate(config: &DeflateConfig, values: &[&str]) -> Option<String> {
        config
            .negotiate(&headers(values))
            .map(|p| p.to_header().to_str().unwrap().to_owned())
    }

    #[test]
    fn server_accepts_the_offers_browsers_and_ws_make() {
        let config = DeflateConfig::default();
        // Chromium and Firefox.
        assert_eq!(
            negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate")
        );
        // Node's ws.
        assert_eq!(
            negotiate(&config, &["permessage-deflate; client_max_window_bits=15"]).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            negotiate(&config, &["permessage-deflate"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn rfc_7692_section_5_2_example_offers() {
        let config = DeflateConfig::default();
        // §7.1.2.1's example: both windows limited.
        assert_eq!(
            negotiate(
                &config,
                &["permessage-deflate; client_max_window_bits; server_max_window_bits=10"]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        // §5.2: "permessage-deflate; server_max_window_bits=10, permessage-deflate": the
        // first is acceptable here.
        assert_eq!(
            negotiate(
                &config,
                &["permessage-deflate; server_max_window_bits=10, permessage-deflate"]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            negotiate(
                &config,
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        let config = DeflateConfig::default();
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; foo",
        ] {
            assert_eq!(negotiate(&config, &[bad]), None, "{bad}");
            let list = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert_eq!(
                negotiate(&config, &[&list]).as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{list}"
            );
        }
        // Other extensions and malformed header lines are skipped.
        assert_eq!(
            negotiate(
                &config,
                &[
                    "x-foo; a=\"unterminated",
                    "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=\"12\""
                ]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
        assert_eq!(negotiate(&config, &["x-foo"]), None);
        assert_eq!(negotiate(&config, &[]), None);
    }

    #[test]
    fn server_configuration_limits_what_it_answers() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 12,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        };
        assert_eq!(
            negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12; client_max_window_bits=10"
            )
        );
        // Without the client's permission, no client_max_window_bits in the answer.
        assert_eq!(
            negotiate(&config, &["permessage-deflate; server_max_window_bits=9"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9"
            )
        );
    }

    #[test]
    fn window_of_8_bits_is_accepted() {
        let config = DeflateConfig::default();
        assert_eq!(
            negotiate(
                &config,
                &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8")
        );
    }

    fn response(
        config: &DeflateConfig,
        value: &str,
    ) -> Result<Option<DeflateParams>, DeflateError> {
        config.accept_response(&headers(&[value]))
    }

    #[test]
    fn client_accepts_answers_its_offer_allows() {
        let config = DeflateConfig::default();
        assert_eq!(
            response(&config, "permessage-deflate"),
            Ok(Some(DeflateParams::default()))
        );
        let agreed = response(
            &config,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
        )
        .unwrap()
        .unwrap();
        assert!(agreed.server_no_context_takeover);
        assert_eq!(agreed.client_window_bits(), 9);
        assert_eq!(response(&config, "x-other"), Ok(None));
        let config = DeflateConfig {
            server_max_window_bits: 10,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let agreed = response(
            &config,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        )
        .unwrap()
        .unwrap();
        assert_eq!(agreed.server_window_bits(), 9);
    }

    #[test]
    fn client_refuses_answers_it_did_not_allow() {
        let config = DeflateConfig::default();
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; x=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; =",
        ] {
            assert!(response(&config, bad).is_err(), "{bad}");
        }
        let asked = DeflateConfig {
            server_max_window_bits: 10,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert_eq!(
            response(&asked, "permessage-deflate; server_max_window_bits=10"),
            Err(DeflateError::MissingParameter(
                "server_no_context_takeover".into()
            ))
        );
        assert_eq!(
            response(
                &asked,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
            ),
            Err(DeflateError::InvalidValue("server_max_window_bits".into()))
        );
        assert_eq!(
            response(&asked, "permessage-deflate; server_no_context_takeover"),
            Err(DeflateError::MissingParameter(
                "server_max_window_bits".into()
            ))
        );
    }

    #[test]
    fn offer_names_what_the_client_asks_for() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        assert_eq!(
            config.offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        // The server's side of the same configuration accepts it.
        let agreed = DeflateConfig::default()
            .negotiate(&headers(&[config.offer().to_str().unwrap()]))
            .unwrap();
        assert_eq!(
            config.accept_response(&headers(&[agreed.to_header().to_str().unwrap()])),
            Ok(Some(agreed))
        );
    }

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

    fn any_config() -> impl Strategy<Value = DeflateConfig> {
        (any::<[bool; 2]>(), 8u8..=15, 8u8..=15).prop_map(|([snct, cnct], sbits, cbits)| {
            DeflateConfig {
                server_no_context_takeover: snct,
                client_no_context_takeover: cnct,
                server_max_window_bits: sbits,
                client_max_window_bits: cbits,
                ..DeflateConfig::default()
            }
        })
    }

    proptest! {
        #[test]
        fn our_client_accepts_every_answer_of_our_server(
            client in any_config(),
            server in any_config(),
        ) {
            let offer = client.offer();
            let agreed = server.negotiate(&headers(&[offer.to_str().unwrap()]));
            let agreed = agreed.expect("a valid offer is accepted");
            let answer = agreed.to_header();
            let got = client.accept_response(&headers(&[answer.to_str().unwrap()]));
            let got = got.expect("our server's answer is valid").expect("accepted");
            // What each side then uses stays within what the other allowed.
            let server_bits = client.server_max_window_bits.min(server.server_max_window_bits);
            prop_assert!(got.server_window_bits() <= server_bits);
            let client_bits = client.client_max_window_bits.min(server.client_max_window_bits);
            prop_assert!(got.client_window_bits() <= client_bits);
            prop_assert_eq!(got.server_no_context_takeover,
                client.server_no_context_takeover || server.server_no_context_takeover);
        }

        #[test]
        fn arbitrary_extension_headers_never_panic(value in "[ -~]{0,80}") {
            if let Ok(value) = HeaderValue::from_str(&value) {
                let mut map = HeaderMap::new();
                map.insert(SEC_WEBSOCKET_EXTENSIONS, value);
                let _ = DeflateConfig::default().negotiate(&map);
                let _ = DeflateConfig::default().accept_response(&map);
            }
        }
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
