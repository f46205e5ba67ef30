//! The bodies of `POST events` and `POST batch_events`, parsed and checked as Pusher does:
//! an event's name, its data (a string, at most [`MAX_EVENT_DATA`] bytes), its channels (at
//! most [`MAX_CHANNELS`]; one in a batch), the socket id it skips and the `info` asked back.

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::names::{Info, MAX_NAME, check_channel, check_socket_id};
use super::refusal::Refusal;

/// The most channels one event goes to (Pusher's limit).
pub(super) const MAX_CHANNELS: usize = 100;

/// The most events in one batch (Pusher's limit).
pub(super) const MAX_BATCH: usize = 10;

/// The largest data of one event, in bytes (Pusher's 10 KB); the hub's
/// [`max_data_size`](crate::HubConfig::max_data_size) applies too, when smaller.
pub(super) use crate::pusher::frames::MAX_EVENT_DATA;

/// One event to trigger.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Trigger {
    pub(super) name: String,
    pub(super) data: String,
    pub(super) channels: Vec<String>,
    pub(super) socket_id: Option<String>,
    pub(super) info: Info,
}

#[derive(Deserialize)]
struct Body {
    name: Option<Value>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Body>,
}

/// The event of a `POST events` body.
pub(super) fn parse_event(body: &[u8]) -> Result<Trigger, Refusal> {
    let body: Body = serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("{e}")))?;
    check(body, MAX_CHANNELS)
}

/// The events of a `POST batch_events` body, each to one channel.
pub(super) fn parse_batch(body: &[u8]) -> Result<Vec<Trigger>, Refusal> {
    let batch: Batch = serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("{e}")))?;
    if batch.batch.len() > MAX_BATCH {
        let reason = format!("a batch has at most {MAX_BATCH} events");
        return Err(Refusal::bad(reason));
    }
    batch.batch.into_iter().map(|body| check(body, 1)).collect()
}

fn check(body: Body, max_channels: usize) -> Result<Trigger, Refusal> {
    let name = match body.name {
        Some(Value::String(name)) if !name.is_empty() && name.len() <= MAX_NAME => name,
        _ => {
            return Err(Refusal::bad(format!(
                "name: a string of 1 to {MAX_NAME} bytes"
            )));
        }
    };
    let Some(Value::String(data)) = body.data else {
        return Err(Refusal::bad("data: a string (JSON encoded by the library)"));
    };
    if data.len() > MAX_EVENT_DATA {
        let reason = format!("data is {} bytes, limit is {MAX_EVENT_DATA}", data.len());
        return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, reason));
    }
    let channels = match (body.channels, body.channel) {
        (Some(channels), None) => channels,
        (None, Some(channel)) => vec![channel],
        _ => return Err(Refusal::bad("give channels or channel, not both")),
    };
    if channels.is_empty() || channels.len() > max_channels {
        let reason = format!("channels: 1 to {max_channels}");
        return Err(Refusal::bad(reason));
    }
    let info = Info::parse(body.info.as_deref())?;
    for channel in &channels {
        check_channel(channel)?;
    }
    if let Some(socket_id) = &body.socket_id {
        check_socket_id(socket_id)?;
    }
    Ok(Trigger {
        name,
        data,
        channels,
        socket_id: body.socket_id,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_goes_to_its_channels_skipping_its_socket() {
        let body = br#"{"name":"e","data":"{\"a\":1}","channels":["a","b"],"socket_id":"1.2"}"#;
        let event = parse_event(body).unwrap();
        assert_eq!(event.channels, ["a", "b"]);
        assert_eq!(
            (event.data.as_str(), event.socket_id.as_deref()),
            (r#"{"a":1}"#, Some("1.2"))
        );
        let one =
            parse_event(br#"{"name":"e","data":"x","channel":"a","info":"subscription_count"}"#);
        assert!(one.unwrap().info.subscriptions);
    }

    #[test]
    fn bad_events_are_refused_with_their_status() {
        let status = |body: &str| parse_event(body.as_bytes()).unwrap_err().status;
        assert_eq!(status("{"), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(r#"{"data":"x","channel":"a"}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(r#"{"name":"e","data":{},"channel":"a"}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(r#"{"name":"e","data":"x"}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(r#"{"name":"e","data":"x","channel":"a","channels":["b"]}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(r#"{"name":"e","data":"x","channel":"a b"}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(r#"{"name":"e","data":"x","channel":"a","socket_id":"x"}"#),
            StatusCode::BAD_REQUEST
        );
        let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("c{i}")).collect();
        let body = serde_json::json!({"name": "e", "data": "x", "channels": many}).to_string();
        assert_eq!(status(&body), StatusCode::BAD_REQUEST);
        let big = "x".repeat(MAX_EVENT_DATA + 1);
        let body = serde_json::json!({"name": "e", "data": big, "channel": "a"}).to_string();
        assert_eq!(status(&body), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_batch_is_at_most_ten_events_of_one_channel_each() {
        let event = serde_json::json!({"name": "e", "data": "x", "channel": "a"});
        let batch = |n: usize| serde_json::json!({ "batch": vec![event.clone(); n] }).to_string();
        assert_eq!(parse_batch(batch(10).as_bytes()).unwrap().len(), 10);
        assert!(parse_batch(batch(11).as_bytes()).is_err());
        let two = br#"{"batch":[{"name":"e","data":"x","channels":["a","b"]}]}"#;
        assert!(parse_batch(two).is_err());
    }
}
