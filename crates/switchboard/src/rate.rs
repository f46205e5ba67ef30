//! [`TokenBucket`]: a rate with room for bursts, for limits on what a peer may do per second.

use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate` events per second on average and up to `burst` at once: every event takes a
/// token, and tokens come back at `rate` per second up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least 1) refilled at `rate` per second.
    ///
    /// # Panics
    ///
    /// When `rate` is not a positive number.
    pub fn new(rate: f64, burst: u32) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// How long until a token is there (zero when one is).
    pub fn wait(&mut self) -> Duration {
        self.refill(Instant::now());
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(10.0, 5);
        let start = bucket.last;
        for _ in 0..5 {
            assert!(bucket.try_take_at(start));
        }
        assert!(!bucket.try_take_at(start));
        // 10 per second: one more after 100 ms, not before.
        assert!(!bucket.try_take_at(start + Duration::from_millis(90)));
        assert!(bucket.try_take_at(start + Duration::from_millis(110)));
        assert!(!bucket.try_take_at(start + Duration::from_millis(160)));
        // Idle time fills it up to the burst and no further.
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(bucket.try_take_at(later));
        }
        assert!(!bucket.try_take_at(later));
    }

    #[test]
    fn says_how_long_until_a_token() {
        let mut bucket = TokenBucket::new(4.0, 1);
        assert_eq!(bucket.wait(), Duration::ZERO);
        assert!(bucket.try_take());
        let wait = bucket.wait();
        assert!(wait > Duration::from_millis(200) && wait <= Duration::from_millis(250));
    }
}
