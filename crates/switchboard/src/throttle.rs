//! [`LogThrottle`]: at most one log line per interval for an event that an attacker can repeat
//! at will, so that a flood does not fill the disk with log lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one line through per interval and counts the ones held back, for the next line to say.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line every `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Calls `log` with the number of lines held back since the last one, unless a line went
    /// out less than the interval ago.
    pub fn log(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let suppressed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state
                .last
                .is_some_and(|last| now.duration_since(last) < self.every)
            {
                state.suppressed += 1;
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        log(suppressed);
    }
}

impl Default for LogThrottle {
    /// One line a second.
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_line_through_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        let mut lines = Vec::new();
        for _ in 0..1000 {
            throttle.log(|suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, [0]);
        let throttle = LogThrottle::new(Duration::ZERO);
        for _ in 0..3 {
            throttle.log(|suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, [0, 0, 0, 0]);
    }

    #[test]
    fn the_next_line_says_how_many_were_held_back() {
        let throttle = LogThrottle::new(Duration::from_millis(50));
        let mut lines = Vec::new();
        for _ in 0..5 {
            throttle.log(|suppressed| lines.push(suppressed));
        }
        std::thread::sleep(Duration::from_millis(60));
        throttle.log(|suppressed| lines.push(suppressed));
        assert_eq!(lines, [0, 4]);
    }
}
