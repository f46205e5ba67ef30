//! Keepalive and closing-handshake deadlines (RFC 6455 §5.5.2, §7.1.1), as plain state over
//! instants the caller supplies: this module never reads a clock.
//!
//! Invariants:
//! - Nothing is armed before the caller first says what time it is
//!   ([`Connection::handle_timeout`](crate::Connection::handle_timeout)); a caller that never
//!   does gets no timers at all.
//! - A timer whose start the connection could not date (a Close sent by
//!   [`Connection::close`](crate::Connection::close), which takes no time) is reported as due at
//!   the last known time, so that the next `handle_timeout` arms it.
//! - Every call of [`Timers::on_timeout`] leaves each deadline after `now` or gone, so a driver
//!   that calls `handle_timeout` when `poll_timeout` is due cannot spin.

use std::time::{Duration, Instant};

/// What a deadline that came due asks the connection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing (a deadline was armed or moved).
    Nothing,
    /// The peer has been silent for the idle timeout: send a Ping.
    Ping,
    /// The peer did not answer the keepalive Ping in time: fail the connection.
    PongOverdue,
    /// The closing handshake took longer than the close timeout: give up on it.
    CloseOverdue,
}

/// The deadlines of one connection.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// The latest time the caller reported.
    now: Option<Instant>,
    /// While open, when the keepalive is next checked; once `closing`, when the closing
    /// handshake is given up on. One field for both: a connection never reopens.
    deadline: Option<Instant>,
    /// `deadline` is the close timeout's.
    closing: bool,
    /// A keepalive Ping is out and unanswered.
    awaiting_pong: bool,
    /// Input arrived since the keepalive deadline was armed.
    received: bool,
}

impl Timers {
    /// Input arrived from the peer: it is alive.
    pub(crate) fn on_input(&mut self) {
        self.received = true;
    }

    /// The next deadline: the close timeout once `closing`, else the keepalive (when
    /// `idle_timeout` is set). `None` before the first [`on_timeout`](Self::on_timeout).
    pub(crate) fn next(&self, closing: bool, idle_timeout: Option<Duration>) -> Option<Instant> {
        let now = self.now?;
        if closing {
            Some(self.deadline.filter(|_| self.closing).unwrap_or(now))
        } else {
            idle_timeout.map(|_| self.deadline.unwrap_or(now))
        }
    }

    /// The time is `now`: arms what is unarmed and reports what came due.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        closing: bool,
        idle_timeout: Option<Duration>,
        pong_timeout: Duration,
        close_timeout: Duration,
    ) -> Due {
        // A caller's clock never goes back, but be robust to one that does.
        let now = self.now.map_or(now, |last| last.max(now));
        self.now = Some(now);
        if closing {
            if !self.closing {
                self.closing = true;
                self.deadline = None;
            }
            let deadline = *self.deadline.get_or_insert(now + close_timeout);
            return if now >= deadline {
                self.deadline = None;
                Due::CloseOverdue
            } else {
                Due::Nothing
            };
        }
        let Some(idle_timeout) = idle_timeout else {
            self.deadline = None;
            return Due::Nothing;
        };
        let Some(deadline) = self.deadline else {
            self.arm_keepalive(now + idle_timeout);
            return Due::Nothing;
        };
        if now < deadline {
            return Due::Nothing;
        }
        if self.received {
            // Heard from the peer since the deadline was armed (a Pong, or anything else).
            self.awaiting_pong = false;
            self.arm_keepalive(now + idle_timeout);
            Due::Nothing
        } else if self.awaiting_pong {
            self.deadline = None;
            Due::PongOverdue
        } else {
            self.awaiting_pong = true;
            self.arm_keepalive(now + pong_timeout);
            Due::Ping
        }
    }

    fn arm_keepalive(&mut self, at: Instant) {
        self.deadline = Some(at);
        self.received = false;
    }
}
