//! The channels one session subscribes to. A client has few (at most `max_subscriptions`, 100
//! by default), and an idle one's are kept as long as it stays: a vector is a quarter of a
//! hash set's size for one channel, and as quick to search at that length.

/// A session's channels, each once.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Vec<String>);

impl Subscriptions {
    pub(super) fn contains(&self, channel: &str) -> bool {
        self.0.iter().any(|c| c == channel)
    }

    /// Adds `channel` unless it is there.
    pub(super) fn insert(&mut self, channel: String) {
        if self.contains(&channel) {
            return;
        }
        if self.0.is_empty() {
            // Most clients have one channel: room for four would be 72 bytes of nothing.
            self.0.reserve_exact(1);
        }
        self.0.push(channel);
    }

    /// Takes `channel` out; `false` if it was not there.
    pub(super) fn remove(&mut self, channel: &str) -> bool {
        let Some(at) = self.0.iter().position(|c| c == channel) else {
            return false;
        };
        self.0.swap_remove(at);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        true
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Every channel, sorted.
    pub(super) fn sorted(&self) -> Vec<String> {
        let mut channels = self.0.clone();
        channels.sort();
        channels
    }

    /// Takes every channel out.
    pub(super) fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_kept_once_until_removed() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert("b".into());
        subscriptions.insert("a".into());
        subscriptions.insert("b".into());
        assert_eq!(subscriptions.len(), 2);
        assert!(subscriptions.contains("a") && !subscriptions.contains("c"));
        assert_eq!(subscriptions.sorted(), ["a", "b"]);
        assert!(subscriptions.remove("b"));
        assert!(!subscriptions.remove("b"));
        assert_eq!(subscriptions.take(), ["a"]);
        assert_eq!(subscriptions.len(), 0);
    }

    #[test]
    fn one_channel_takes_room_for_one() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert("a".into());
        assert_eq!(subscriptions.0.capacity(), 1);
    }

    #[test]
    fn the_last_removal_frees_the_vector() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert("a".into());
        assert!(subscriptions.remove("a"));
        assert_eq!(subscriptions.0.capacity(), 0);
    }
}
