//! Sans-IO WebSocket protocol: RFC 6455 framing, masking, UTF-8 validation, the closing
//! handshake and the opening handshake, as state machines over byte buffers; RFC 7692
//! permessage-deflate in [`deflate`].
//!
//! ```text
//!            bytes from the peer                              bytes to the peer
//!                    │                                                ▲
//!     read into read_buffer(), then commit_read(n)          poll_transmit(), or
//!     (handle_input(&[u8]) copies in and commits)   transmit_slices() + advance_transmit(n)
//!                    │                                                │
//!                    ▼                                                │
//!            ┌──────────────────────── Connection ─────────────────────────┐
//!            │ receive: headers checked on arrival · unmask in place       │
//!            │   UTF-8 checked as bytes arrive · reassembly · inflate      │
//!            │ closing: auto-pong · Close answered · failures queue Close  │
//!            │ deadlines: handle_timeout(now) / poll_timeout()             │
//!            │ output: frames encoded (masked, compressed) into one queue  │
//!            └─────────────────────────────────────────────────────────────┘
//!                    │                                                ▲
//!              poll_message()                        send(Message) / close() / send_encoded()
//!                    ▼                                                │
//!               application                                      application
//! ```
//!
//! There is one input path: whoever reads from the transport reads into
//! [`Connection::read_buffer`] (appending, or putting a buffer of the bytes read in place of an
//! empty one) and commits what it read with [`Connection::commit_read`];
//! [`Connection::handle_input`] is the same path for a slice, with a copy. The runtime, the
//! tests and the fuzzers all feed the connection this way.
//!
//! # Design
//!
//! This crate never does I/O, never reads a clock and never spawns: the caller moves bytes in
//! and out and owns timers. The same engine serves the tokio runtime (`switchboard`), tests
//! (two connections joined by in-memory buffers) and fuzzers. Received payloads are slices of
//! the read buffer after in-place unmasking, not copies; a frame encoded for a broadcast is
//! shared by every recipient ([`EncodedFrame`]).
//!
//! ```
//! use switchboard_proto::{CloseCode, Config, Connection, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send(Message::text("ping?")).unwrap();
//! client.close(CloseCode::NORMAL, "done").unwrap();
//! while let Some(bytes) = client.poll_transmit() {
//!     server.handle_input(&bytes);
//! }
//! assert_eq!(server.poll_message(), Some(Ok(Message::text("ping?"))));
//! let Some(Ok(Message::Close(Some(frame)))) = server.poll_message() else { panic!() };
//! assert_eq!(frame.code, CloseCode::NORMAL);
//! assert!(server.is_closed()); // the server's Close reply is queued in poll_transmit()
//! ```
#![deny(unsafe_code)]

mod close;
mod config;
mod connection;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod header;
pub mod mask;
mod message;
mod text;
mod timer;
pub mod utf8;

#[cfg(test)]
mod tests;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{Connection, EncodedFrame, Role};
pub use error::{ProtocolError, SendError};
pub use message::Message;
pub use text::Utf8Bytes;
