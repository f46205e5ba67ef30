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
#[derive(Debug)]
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
    /// Input since the keepalive deadline was armed: [`NO_INPUT`], [`INPUT`] (at a time the
    /// caller did not tell), or how many milliseconds before the deadline the last input came
    /// (told by [`input_at`](Self::input_at)). A `u32` rather than an `Instant`, so that the
    /// engine's state does not grow.
    input: u32,
}

/// No input since the keepalive deadline was armed.
const NO_INPUT: u32 = u32::MAX;
/// Input since the keepalive deadline was armed, at a time the caller did not tell.
const INPUT: u32 = u32::MAX - 1;

impl Default for Timers {
    fn default() -> Self {
        Self {
            now: None,
            deadline: None,
            closing: false,
            awaiting_pong: false,
            input: NO_INPUT,
        }
    }
}

impl Timers {
    /// Input arrived from the peer: it is alive.
    pub(crate) fn on_input(&mut self) {
        if self.input == NO_INPUT {
            self.input = INPUT;
        }
    }

    /// Input arrived at `at` (by a clock that may lag, never lead): the keepalive counts the
    /// silence from then.
    pub(crate) fn input_at(&mut self, at: Instant) {
        let Some(deadline) = self.deadline.filter(|_| !self.closing) else {
            return;
        };
        let before = deadline.saturating_duration_since(at).as_millis();
        self.input = u32::try_from(before).unwrap_or(INPUT - 1).min(INPUT - 1);
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
        if self.input != NO_INPUT {
            // Heard from the peer since the deadline was armed (a Pong, or anything else): the
            // next check is a full idle period after that input when the caller told its time,
            // else after now.
            self.awaiting_pong = false;
            let next = match self.input {
                INPUT => now + idle_timeout,
                before => deadline
                    .checked_sub(Duration::from_millis(before.into()))
                    .map_or(now, |at| at + idle_timeout),
            };
            if next > now {
                self.arm_keepalive(next);
                return Due::Nothing;
            }
            self.awaiting_pong = true;
            self.arm_keepalive(now + pong_timeout);
            Due::Ping
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
        self.input = NO_INPUT;
    }
}
