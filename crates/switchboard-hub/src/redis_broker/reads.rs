//! History and recovery reads coalesced: callers asking for the same channel and range at the
//! same moment (thousands of clients reconnecting at once) share one read of Redis.
//!
//! A read may be shared only by callers that asked before it was sent: one that joined a read
//! already sent could miss a publish acknowledged after the read ran but before the caller
//! asked, which [`Broker::history`](crate::Broker::history) promises to see. So callers gather
//! in a round; the first one spawns the read, which closes the round when it starts (a caller
//! after that opens the next round) and answers every caller of it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::decode::Stream;
use super::shared::{Shared, unavailable};
use crate::broker::{BrokerError, HistoryRange};

type Answer = oneshot::Sender<Result<Stream, String>>;

/// The rounds not yet sent, by channel and range.
#[derive(Debug, Default)]
pub(super) struct Reads(Mutex<HashMap<(String, HistoryRange), Vec<Answer>>>);

impl Reads {
    fn rounds(&self) -> MutexGuard<'_, HashMap<(String, HistoryRange), Vec<Answer>>> {
        // Every update is one insert or remove: a poisoned lock still holds a consistent map.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `range` of `channel`'s stream, sharing the read with callers asking the same now.
    pub(super) async fn read(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        channel: &str,
        range: HistoryRange,
    ) -> Result<Stream, BrokerError> {
        read(self, shared, channel, range).await
    }
}

async fn read(
    reads: &Arc<Reads>,
    shared: &Arc<Shared>,
    channel: &str,
    range: HistoryRange,
) -> Result<Stream, BrokerError> {
    let (answer, answered) = oneshot::channel();
    let key = (channel.to_owned(), range);
    let first = match reads.rounds().entry(key.clone()) {
        Entry::Occupied(mut round) => {
            round.get_mut().push(answer);
            false
        }
        Entry::Vacant(round) => {
            round.insert(vec![answer]);
            true
        }
    };
    if first {
        // A task of its own: the read goes on for the others if this caller stops waiting.
        let (shared, reads) = (shared.clone(), reads.clone());
        tokio::spawn(async move {
            let callers = reads.rounds().remove(&key).unwrap_or_default();
            shared.metrics.read();
            let result = shared.stream(&key.0, key.1).await;
            for caller in callers {
                let result = match &result {
                    Ok(stream) => Ok(stream.clone()),
                    Err(BrokerError::Unavailable(why)) => Err(why.clone()),
                };
                let _ = caller.send(result);
            }
        });
    } else {
        shared.metrics.coalesced();
    }
    match answered.await {
        Ok(result) => result.map_err(BrokerError::Unavailable),
        Err(_) => Err(unavailable("the broker is not running")),
    }
}
