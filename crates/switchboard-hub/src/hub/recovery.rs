//! Recovery: whether a client that subscribes again with `since` can be given every
//! publication it missed, from what history still holds.

use crate::broker::{History, HistoryRange, StreamPosition};
use crate::protocol::RecoveryFailure;

/// What a subscription reads from history: what a client that saw `since` missed (at most
/// `max_replay` publications), or just the channel's position.
pub(super) fn range(since: Option<&StreamPosition>, max_replay: usize) -> HistoryRange {
    match since {
        Some(since) => HistoryRange::After {
            offset: since.offset,
            limit: max_replay,
        },
        None => HistoryRange::Latest(0),
    }
}

/// Whether `history` (read for a client that saw `since`) holds every publication it missed.
pub(super) fn recover(
    since: &StreamPosition,
    history: &History,
) -> Result<(), (RecoveryFailure, String)> {
    let position = &history.position;
    if since.epoch != position.epoch {
        return Err((
            RecoveryFailure::EpochChanged,
            format!(
                "the channel's history was reset (epoch {} is now {})",
                since.epoch, position.epoch
            ),
        ));
    }
    if since.offset > position.offset {
        return Err((
            RecoveryFailure::OffsetAhead,
            format!(
                "offset {} is ahead of the channel's latest, {}",
                since.offset, position.offset
            ),
        ));
    }
    let missed = position.offset - since.offset;
    let publications = &history.publications;
    let contiguous_from_since = publications
        .first()
        .is_none_or(|first| first.offset == since.offset + 1);
    if !contiguous_from_since || (publications.is_empty() && missed > 0) {
        return Err((
            RecoveryFailure::HistoryTruncated,
            format!(
                "some of the {missed} messages after offset {} are no longer in history",
                since.offset
            ),
        ));
    }
    if publications.len() as u64 != missed {
        return Err((
            RecoveryFailure::TooManyMissed,
            format!(
                "{missed} messages were missed; at most {} are replayed",
                publications.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::broker::{ClientInfo, Publication};

    fn history(epoch: &str, top: u64, offsets: &[u64]) -> History {
        History {
            position: StreamPosition {
                epoch: epoch.into(),
                offset: top,
            },
            publications: offsets
                .iter()
                .map(|&offset| {
                    Arc::new(Publication {
                        offset,
                        time: 0,
                        from: ClientInfo {
                            user: "u".into(),
                            conn: "c".into(),
                            authenticated: false,
                            info: None,
                        },
                        data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
                    })
                })
                .collect(),
        }
    }

    fn since(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn recovery_needs_the_same_epoch_and_every_missed_offset() {
        assert_eq!(recover(&since("e", 5), &history("e", 5, &[])), Ok(()));
        assert_eq!(recover(&since("e", 3), &history("e", 5, &[4, 5])), Ok(()));
        let code = |r: Result<(), (RecoveryFailure, String)>| r.unwrap_err().0;
        assert_eq!(
            code(recover(&since("old", 3), &history("e", 5, &[4, 5]))),
            RecoveryFailure::EpochChanged
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[4, 5]))),
            RecoveryFailure::HistoryTruncated
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[]))),
            RecoveryFailure::HistoryTruncated
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[3, 4]))),
            RecoveryFailure::TooManyMissed
        );
        assert_eq!(
            code(recover(&since("e", 9), &history("e", 5, &[]))),
            RecoveryFailure::OffsetAhead
        );
    }
}
