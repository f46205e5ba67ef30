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
//! The parts, each depending only on those after it:
//! - `negotiate`: the handshake's offers and answers (§5, §7.1), over the extension-list parser
//!   the handshake shares (`crate::header`);
//! - `codec`: one connection's compressor and decompressor (§7.2);
//! - `pool`: per-thread compressors lent to connections without context takeover;
//! - `window`: window sizes as negotiated and as zlib takes them (§7.1.2).
//!
//! Invariants:
//! - An offer with an unknown, duplicate or malformed parameter is declined (§5.1), never
//!   partly accepted; an answer the client did not allow fails the handshake (§5.1, §7.1).
//! - A window limit of 8 bits is met, though zlib deflates with no less than 9.
//! - Inflation stops as soon as a message grows past the caller's limit: a small frame that
//!   inflates to gigabytes costs at most the limit in memory.
//! - Without context takeover, compressor and decompressor state is not kept between
//!   messages, so an idle connection holds none.

mod codec;
mod negotiate;
mod pool;
mod window;

pub(crate) use codec::{Deflater, InflateError, Inflater, compress_once};
pub use negotiate::{DeflateConfig, DeflateError, DeflateParams, EXTENSION_NAME};
