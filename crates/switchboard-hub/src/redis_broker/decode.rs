//! What the Redis broker reads back: publication bodies, Pub/Sub events and history replies,
//! each checked (another program, or another version of the broker, may have written there).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::broker::{ClientInfo, Publication};

/// A publication's body as stored and published.
#[derive(Serialize)]
pub(super) struct Body<'a> {
    pub(super) from: &'a ClientInfo,
    pub(super) data: &'a RawValue,
}

#[derive(Deserialize)]
struct OwnedBody {
    from: ClientInfo,
    data: Box<RawValue>,
}

/// Why something read from Redis could not be used (another program wrote there, or a
/// different version of the broker).
#[derive(Debug, thiserror::Error)]
#[error("unexpected data in redis: {0}")]
pub(super) struct Malformed(String);

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

pub(super) fn publication(offset: u64, time: u64, body: &str) -> Result<Publication, Malformed> {
    let body: OwnedBody =
        serde_json::from_str(body).map_err(|e| malformed(format!("publication body: {e}")))?;
    Ok(Publication {
        offset,
        time,
        from: body.from,
        data: body.data,
    })
}

fn number(text: &str, what: &str) -> Result<u64, Malformed> {
    text.parse()
        .map_err(|_| malformed(format!("{what} {text:?} is not a number")))
}

/// What arrived on a channel's Pub/Sub.
#[derive(Debug)]
pub(super) enum Event {
    /// Publications with consecutive offsets (one, or a batch the pipeline sent together).
    Publications {
        epoch: String,
        publications: Vec<Arc<Publication>>,
    },
    Join(ClientInfo),
    Leave(ClientInfo),
}

/// Decodes a Pub/Sub payload (see the module docs).
pub(super) fn event(payload: &[u8]) -> Result<Event, Malformed> {
    let text = std::str::from_utf8(payload).map_err(|_| malformed("payload is not utf-8"))?;
    let client = |json: &str| {
        serde_json::from_str::<ClientInfo>(json).map_err(|e| malformed(format!("client: {e}")))
    };
    match text.split_at_checked(1) {
        Some(("m", rest)) => {
            let mut parts = rest.splitn(4, ' ');
            let (Some(epoch), Some(offset), Some(time), Some(body)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed("publication without its four parts"));
            };
            let offset = number(offset, "offset")?;
            let time = number(time, "time")?;
            Ok(Event::Publications {
                epoch: epoch.to_owned(),
                publications: vec![Arc::new(publication(offset, time, body)?)],
            })
        }
        Some(("b", rest)) => {
            let mut parts = rest.splitn(5, ' ');
            let (Some(epoch), Some(first), Some(time), Some(lengths), Some(mut bodies)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(malformed("batch without its five parts"));
            };
            let first = number(first, "offset")?;
            let time = number(time, "time")?;
            let mut publications = Vec::new();
            for (length, offset) in lengths.split(',').zip(first..) {
                let length = usize::try_from(number(length, "length")?)
                    .map_err(|_| malformed("batch length too large"))?;
                let (Some(body), Some(rest)) = (bodies.get(..length), bodies.get(length..)) else {
                    return Err(malformed("batch shorter than its lengths"));
                };
                publications.push(Arc::new(publication(offset, time, body)?));
                bodies = rest;
            }
            if !bodies.is_empty() {
                return Err(malformed("batch longer than its lengths"));
            }
            Ok(Event::Publications {
                epoch: epoch.to_owned(),
                publications,
            })
        }
        Some(("j", json)) => Ok(Event::Join(client(json)?)),
        Some(("l", json)) => Ok(Event::Leave(client(json)?)),
        _ => Err(malformed("unknown event kind")),
    }
}

/// The reply of the history script: the position, then the entries asked for.
#[derive(Clone, Debug)]
pub(super) struct Stream {
    pub(super) epoch: String,
    pub(super) top: u64,
    pub(super) publications: Vec<Arc<Publication>>,
}

/// Decodes the history script's reply.
pub(super) fn stream(reply: Vec<String>) -> Result<Stream, Malformed> {
    let mut items = reply.into_iter();
    let (Some(epoch), Some(top)) = (items.next(), items.next()) else {
        return Err(malformed("history reply without a position"));
    };
    let top = number(&top, "offset")?;
    let mut publications = Vec::new();
    while let Some(id) = items.next() {
        let (Some(time), Some(body)) = (items.next(), items.next()) else {
            return Err(malformed("history entry without time or body"));
        };
        let offset = id
            .strip_prefix("0-")
            .ok_or_else(|| malformed(format!("history entry id {id:?}")))?;
        let offset = number(offset, "entry offset")?;
        let time = number(&time, "time")?;
        publications.push(Arc::new(publication(offset, time, &body)?));
    }
    Ok(Stream {
        epoch,
        top,
        publications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_and_garbage_is_an_error() {
        let Event::Publications {
            epoch,
            publications,
        } = event(br#"m9f2c 7 1700000000000 {"from":{"user":"ann","conn":"c1"},"data":{"a": 1}}"#)
            .unwrap()
        else {
            panic!("not a publication")
        };
        assert_eq!(epoch, "9f2c");
        let [publication] = &publications[..] else {
            panic!("not one publication")
        };
        assert_eq!(publication.offset, 7);
        assert_eq!(publication.time, 1_700_000_000_000);
        assert_eq!(publication.from.user, "ann");
        assert_eq!(
            publication.data.get(),
            r#"{"a": 1}"#,
            "data keeps its exact text"
        );
        assert!(matches!(
            event(br#"j{"user":"bob","conn":"c2"}"#),
            Ok(Event::Join(c)) if c.conn == "c2"
        ));
        assert!(matches!(
            event(br#"l{"user":"bob","conn":"c2"}"#),
            Ok(Event::Leave(_))
        ));
        let one = r#"{"from":{"user":"a","conn":"c"},"data":"x y"}"#;
        let two = r#"{"from":{"user":"b","conn":"d"},"data":[1, 2]}"#;
        let batch = format!("be1 5 1000 {},{} {one}{two}", one.len(), two.len());
        let Ok(Event::Publications { publications, .. }) = event(batch.as_bytes()) else {
            panic!("not a batch")
        };
        let offsets: Vec<u64> = publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [5, 6]);
        assert_eq!(publications[1].data.get(), "[1, 2]");
        assert_eq!(publications[1].from.user, "b");
        let short = format!("be1 5 1000 {},{} {one}", one.len(), two.len());
        let long = format!("be1 5 1000 {} {one}{two}", one.len());
        for bad in [
            short.as_bytes(),
            long.as_bytes(),
            b"be1 5 1000 x {}",
            &b""[..],
            b"x{}",
            b"m9f2c 7",
            b"m9f2c seven 1 {}",
            b"m9f2c 7 1 {not json",
            b"j[]",
            b"\xff\xfe",
        ] {
            assert!(event(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn history_replies_decode() {
        let body = r#"{"from":{"user":"u","conn":"c"},"data":"x"}"#;
        let s = stream(vec![
            "e1".into(),
            "5".into(),
            "0-4".into(),
            "10".into(),
            body.into(),
            "0-5".into(),
            "11".into(),
            body.into(),
        ])
        .unwrap();
        assert_eq!((s.epoch.as_str(), s.top), ("e1", 5));
        let offsets: Vec<u64> = s.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [4, 5]);
        assert!(stream(vec!["e1".into()]).is_err());
        assert!(stream(vec!["e1".into(), "5".into(), "4".into()]).is_err());
        assert!(stream(vec!["e1".into(), "x".into()]).is_err());
    }
}
