//! The limits on what one client may do: how many messages a second (a token bucket per
//! connection), and how many channels at once; what they refused, counted for `/metrics`; and
//! the retry hints of the closes that ask clients to come back later.
//!
//! A message over the rate is answered `rate_limited` and not acted on. A client that goes on
//! regardless, so that its refused messages outrun the rate itself (a second bucket, of the
//! same size, for refusals), is closed with 1008: it is not a client that slows down when told.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard::{CloseCode, LogThrottle, Message, TokenBucket};

use crate::protocol::Reply;
use crate::random::random_u64;

/// How many messages a second one connection may send: `per_second` on average, `burst` at
/// once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MessageRate {
    /// Messages a second, on average.
    pub per_second: f64,
    /// Messages at once, after a quiet while.
    pub burst: u32,
}

impl MessageRate {
    /// `per_second` on average, in bursts of up to twice that (at least 1).
    pub fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: (per_second * 2.0).ceil().max(1.0) as u32,
        }
    }
}

/// One connection's rate limit.
#[derive(Debug)]
pub(super) struct RateGuard {
    allowed: TokenBucket,
    refused: TokenBucket,
}

/// What the guard says of one message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    /// Answer `rate_limited` and drop it.
    Refuse,
    /// Close the connection with 1008.
    Close,
}

impl RateGuard {
    pub(super) fn new(rate: MessageRate) -> Self {
        Self {
            allowed: TokenBucket::new(rate.per_second, rate.burst),
            refused: TokenBucket::new(rate.per_second, rate.burst),
        }
    }

    pub(super) fn check(&mut self) -> Verdict {
        if self.allowed.try_take() {
            Verdict::Allow
        } else if self.refused.try_take() {
            Verdict::Refuse
        } else {
            Verdict::Close
        }
    }
}

/// What the limits refused on this node.
#[derive(Debug, Default)]
pub(super) struct LimitCounts {
    rate_limited: AtomicU64,
    rate_limit_closes: AtomicU64,
    subscription_limit: AtomicU64,
    /// Keeps the log of refusals short under a flood.
    pub(super) log: LogThrottle,
}

impl LimitCounts {
    pub(super) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn rate_limit_closed(&self) {
        self.rate_limit_closes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn subscription_limited(&self) {
        self.subscription_limit.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts in the Prometheus text format.
    pub(super) fn render(&self, out: &mut String) {
        #[rustfmt::skip]
        let counters = [
            ("switchboard_hub_rate_limited_total", &self.rate_limited, "Client messages refused with rate_limited (over the per-connection rate)."),
            ("switchboard_hub_rate_limit_closes_total", &self.rate_limit_closes, "Connections closed with 1008 for going on over the rate."),
            ("switchboard_hub_subscription_limit_total", &self.subscription_limit, "Subscribes refused with too_many_subscriptions."),
        ];
        for (name, value, help) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
}

/// A `disconnect` frame before a close with `code`: come back after a random time in
/// `[floor, floor + spread)`, so that the clients of a node, or of a channel, spread their
/// return instead of coming back as one wave.
pub(crate) fn retry_hint(
    code: CloseCode,
    reason: &str,
    floor: Duration,
    spread: Duration,
) -> Message {
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1);
    let floor_ms = u64::try_from(floor.as_millis()).unwrap_or(u64::MAX);
    let retry_after_ms = floor_ms.saturating_add(random_u64() % spread_ms);
    let reply = Reply::Disconnect {
        code: code.into(),
        reason,
        retry_after_ms,
    };
    Message::text(reply.to_json())
}

/// What a hub's server sends every client when it shuts down for a restart: a `disconnect`
/// hint to wait between `floor` and `floor + spread` before reconnecting; pass it to
/// [`ServerBuilder::shutdown_message`](switchboard::ServerBuilder::shutdown_message), with
/// [`ServerBuilder::shutdown_close`](switchboard::ServerBuilder::shutdown_close) of
/// [`CloseCode::SERVICE_RESTART`] and [`RESTART_REASON`].
pub fn restart_hint(
    floor: Duration,
    spread: Duration,
) -> impl Fn() -> Option<Message> + Send + Sync {
    move || {
        Some(retry_hint(
            CloseCode::SERVICE_RESTART,
            RESTART_REASON,
            floor,
            spread,
        ))
    }
}

/// The reason of the Close frame a restarting hub sends.
pub const RESTART_REASON: &str = "restarting";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_the_rate_is_refused_then_closed_if_it_goes_on() {
        let mut guard = RateGuard::new(MessageRate {
            per_second: 0.001,
            burst: 3,
        });
        let verdicts: Vec<_> = (0..7).map(|_| guard.check()).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Allow, Allow, Allow, Refuse, Refuse, Refuse, Close]
        );
    }

    #[test]
    fn the_burst_is_twice_the_rate() {
        assert_eq!(MessageRate::per_second(50.0).burst, 100);
        assert_eq!(MessageRate::per_second(0.2).burst, 1);
    }

    #[test]
    fn a_retry_hint_is_a_disconnect_frame_within_its_window() {
        for _ in 0..100 {
            let hint = retry_hint(
                CloseCode::SERVICE_RESTART,
                "restarting",
                Duration::from_millis(1000),
                Duration::from_millis(500),
            );
            let Message::Text(text) = hint else {
                panic!("{hint:?}")
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "disconnect");
            assert_eq!(v["code"], 1012);
            assert_eq!(v["reason"], "restarting");
            let after = v["retry_after_ms"].as_u64().unwrap();
            assert!((1000..1500).contains(&after), "{after}");
        }
    }
}
