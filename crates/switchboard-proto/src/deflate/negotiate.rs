//! Negotiating permessage-deflate in the opening handshake (RFC 7692 §5, §7.1): the client's
//! offer, the server's choice among offers, and the client's check of the answer.
//!
//! Invariants: an offer with an unknown, duplicate or malformed parameter is declined (§5.1),
//! never partly accepted; an answer the client did not allow fails the handshake (§5.1, §7.1);
//! what either side then uses stays within what the other allowed.

use http::HeaderValue;
use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

use super::window::{MAX_WINDOW_BITS, clamp_bits, parse_bits};
use crate::header::{Extension, Malformed, parse_extensions};

/// The extension's name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What this endpoint wants from permessage-deflate: what to offer or accept in the
/// handshake, and how to compress.
///
/// The defaults accept every offer a browser or Node's `ws` makes, with context takeover and
/// 15-bit windows both ways, compression level 1 and a threshold of 128 bytes.
///
/// Context takeover gives the best ratio, at a price in memory: once both directions have
/// carried a compressed message, a connection keeps a compressor and a decompressor, far more
/// than the rest of the connection holds (`examples/deflate_numbers.rs` measures it). Without
/// it, that state is lent per message from a small per-thread pool.
///
/// Level 1 because compression dominates the cost of a compressed message: on JSON chat
/// messages, higher levels compress somewhat better for several times the CPU
/// (`examples/deflate_numbers.rs` measures both).
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

    fn accept_offer(&self, element: &Extension<'_>) -> Option<DeflateParams> {
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
                parse_extensions(value.as_bytes()).map_err(|Malformed| DeflateError::Malformed)?;
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

    fn check_response(&self, element: &Extension<'_>) -> Result<DeflateParams, DeflateError> {
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
    fn parse(element: &Extension<'_>) -> Result<Self, DeflateError> {
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

#[cfg(test)]
mod tests;
