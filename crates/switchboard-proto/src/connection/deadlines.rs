//! The connection's side of its deadlines (RFC 6455 §5.5.2 keepalive pings, §7.1.1 the close
//! timeout): when the caller should next call back, and what to do when it does. The clock
//! stays with the caller; [`Timers`](crate::timer::Timers) keeps the state.

use std::time::Instant;

use bytes::Bytes;

use super::{ABANDONED, Connection, State, TIMED_OUT};
use crate::error::ProtocolError;
use crate::frame::OpCode;
use crate::timer::Due;

impl Connection {
    /// When [`handle_timeout`](Self::handle_timeout) is next due, if ever.
    ///
    /// While the connection is open that is the keepalive check (with
    /// [`Config::idle_timeout`]); once closing, the close timeout. `None` before the first
    /// `handle_timeout`, which arms the timers, and once the closing handshake was abandoned.
    /// A time in the past means "now".
    ///
    /// [`Config::idle_timeout`]: crate::Config::idle_timeout
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_abandoned() {
            return None;
        }
        self.timers
            .next(self.state != State::Open, self.config.idle_timeout)
    }

    /// Tells the connection that the time is `now`: arms the timers and acts on those due.
    ///
    /// - Keepalive ([`Config::idle_timeout`]): when nothing has arrived from the peer for that
    ///   long, a Ping is queued; when nothing arrives within [`Config::pong_timeout`] after it,
    ///   the connection fails: the next [`poll_message`](Self::poll_message) returns
    ///   [`ProtocolError::KeepaliveTimeout`] and a Close frame with 1011 is queued.
    /// - Close ([`Config::close_timeout`], from the first `handle_timeout` after the closing
    ///   handshake started): past it the handshake is abandoned ([`is_abandoned`]): queued
    ///   output is discarded and the transport should be dropped without waiting further.
    ///
    /// Call it once when the connection starts and then whenever [`poll_timeout`] comes due;
    /// calling it early does no harm. Afterwards, poll the output methods.
    ///
    /// [`is_abandoned`]: Self::is_abandoned
    /// [`poll_timeout`]: Self::poll_timeout
    /// [`Config::idle_timeout`]: crate::Config::idle_timeout
    /// [`Config::pong_timeout`]: crate::Config::pong_timeout
    /// [`Config::close_timeout`]: crate::Config::close_timeout
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_abandoned() {
            return;
        }
        let due = self.timers.on_timeout(
            now,
            self.state != State::Open,
            self.config.idle_timeout,
            self.config.pong_timeout,
            self.config.close_timeout,
        );
        match due {
            Due::Nothing => {}
            Due::Ping => self.write_frame(OpCode::Ping, Bytes::new()),
            Due::PongOverdue => {
                self.fail(&ProtocolError::KeepaliveTimeout);
                self.set_flag(TIMED_OUT, true);
            }
            Due::CloseOverdue => {
                self.set_flag(ABANDONED, true);
                self.state = State::Closed;
                self.stop_reading();
                self.transmit.clear();
            }
        }
    }

    /// Whether the closing handshake ran past [`Config::close_timeout`] and was given up on:
    /// nothing more is sent or received; drop the transport.
    ///
    /// [`Config::close_timeout`]: crate::Config::close_timeout
    pub fn is_abandoned(&self) -> bool {
        self.flag(ABANDONED)
    }
}
