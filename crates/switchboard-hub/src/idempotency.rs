//! What the in-process broker remembers of idempotent publishes: the position each
//! `(channel, key)` was given, until its window ends, for a bounded number of keys.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::StreamPosition;

/// The most keys remembered; past it the oldest is forgotten first.
pub(crate) const MAX_KEYS: usize = 100_000;

/// Positions of idempotent publishes by channel and key, each until its deadline.
#[derive(Debug, Default)]
pub(crate) struct Remembered {
    positions: HashMap<(String, String), (Instant, StreamPosition)>,
    /// Keys in the order they were stored, with their deadline, for expiry and the bound.
    order: VecDeque<(Instant, (String, String))>,
}

impl Remembered {
    /// The position stored for `key` on `channel`, if its window is still open at `now`.
    pub(crate) fn get(&mut self, channel: &str, key: &str, now: Instant) -> Option<StreamPosition> {
        self.expire(now);
        let id = (channel.to_owned(), key.to_owned());
        match self.positions.get(&id) {
            Some((deadline, position)) if *deadline > now => Some(position.clone()),
            _ => None,
        }
    }

    /// Remembers `position` for `key` on `channel` for `window` from `now`.
    pub(crate) fn insert(
        &mut self,
        channel: &str,
        key: &str,
        position: StreamPosition,
        now: Instant,
        window: Duration,
    ) {
        while self.order.len() >= MAX_KEYS {
            self.forget_oldest();
        }
        let id = (channel.to_owned(), key.to_owned());
        let deadline = now + window;
        self.positions.insert(id.clone(), (deadline, position));
        self.order.push_back((deadline, id));
    }

    /// How many keys are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.positions.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(deadline, _)| *deadline <= now)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((deadline, id)) = self.order.pop_front() {
            // A key stored again after it expired has a later deadline: keep that one.
            if self.positions.get(&id).is_some_and(|(d, _)| *d == deadline) {
                self.positions.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: "e".into(),
            offset,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_remembered_per_channel_until_their_window_ends() {
        let mut remembered = Remembered::default();
        let window = Duration::from_secs(10);
        remembered.insert("a", "k", position(1), Instant::now(), window);
        assert_eq!(remembered.get("a", "k", Instant::now()), Some(position(1)));
        assert_eq!(remembered.get("b", "k", Instant::now()), None);
        tokio::time::advance(window).await;
        assert_eq!(remembered.get("a", "k", Instant::now()), None);
        assert_eq!(remembered.len(), 0);
    }

    #[test]
    fn the_oldest_key_goes_first_past_the_bound() {
        let mut remembered = Remembered::default();
        let now = Instant::now();
        let window = Duration::from_secs(60);
        for i in 0..=MAX_KEYS {
            remembered.insert("c", &i.to_string(), position(i as u64), now, window);
        }
        assert_eq!(remembered.len(), MAX_KEYS);
        assert_eq!(remembered.get("c", "0", now), None);
        assert_eq!(remembered.get("c", "1", now), Some(position(1)));
    }
}
