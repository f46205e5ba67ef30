//! Pauses between reconnects: exponential with full jitter, so that clients cut off together
//! do not come back together.

use std::time::Duration;

/// The pause before the next attempt, and the count of attempts since the last success.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: 0,
        }
    }

    /// A connection worked: the next pause is short again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The pause before the next attempt: random between 0 and `min · 2^failures`, capped at
    /// `max`, and at least `floor` (a server's retry hint).
    pub(crate) fn next(&mut self, floor: Duration) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let fraction = getrandom::u32().map_or(1.0, |r| f64::from(r) / f64::from(u32::MAX));
        floor.max(ceiling.mul_f64(fraction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_and_honour_the_floor() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut backoff = Backoff::new(min, max);
        for attempt in 0..10 {
            let ceiling = (min * (1 << attempt)).min(max);
            assert!(backoff.next(Duration::ZERO) <= ceiling);
        }
        let floor = Duration::from_secs(3);
        assert!(backoff.next(floor) >= floor);
        backoff.reset();
        assert!(backoff.next(Duration::ZERO) <= min);
    }
}
