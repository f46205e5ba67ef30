//! A cache channel's subscription: the last event the app published to it, read from the
//! channel's history so that every node sends the same one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Session;
use crate::broker::{BrokerError, HistoryRange};
use crate::hub::pusher_wire::{event_text, from_the_app};

/// How long a cache channel's last event is sent to new subscribers (Pusher's "up to 30
/// minutes").
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

impl Session<'_> {
    /// The text and offset of the last event the app published to cache channel `name` (hub
    /// channel `channel`) within [`CACHE_TTL`], from the channel's history; client events
    /// are passed over, as Pusher does not cache them.
    pub(super) async fn cached(
        &self,
        name: &str,
        channel: &str,
    ) -> Result<Option<(u64, String)>, BrokerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let ttl = CACHE_TTL.as_millis();
        // The newest publication is the app's but after client events: then up to
        // `max_replay` are read to find it.
        let mut limit = 1;
        loop {
            let range = HistoryRange::Latest(limit);
            let history = self.hub.broker.history(channel, range).await?;
            for publication in history.publications.iter().rev() {
                if now.saturating_sub(u128::from(publication.time)) > ttl {
                    return Ok(None);
                }
                if from_the_app(publication) {
                    let text = event_text(name, publication);
                    return Ok(text.map(|text| (publication.offset, text)));
                }
            }
            let max = self.hub.config.max_replay;
            if history.publications.len() < limit || limit >= max {
                return Ok(None);
            }
            limit = max;
        }
    }
}
