//! What the server sends a Pusher client: each function returns the JSON text of one frame.
//!
//! The server sends the `data` of its own `pusher:`/`pusher_internal:` events as a JSON string
//! holding JSON (a protocol quirk the clients decode), except `pusher:error`, `pusher:pong`,
//! `pusher:subscription_error`, `pusher:signin_success` and `pusher:cache_miss`, whose data is
//! an object. An event's data goes out as it was given: the string an app triggered, or the
//! value a client event carried.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::frames::PusherCode;

fn frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    let mut frame = json!({ "event": event, "data": data });
    if let Some(channel) = channel {
        frame["channel"] = json!(channel);
    }
    frame.to_string()
}

/// `pusher:connection_established`, the first frame of every connection.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    let data = json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs });
    frame(
        "pusher:connection_established",
        None,
        &json!(data.to_string()),
    )
}

/// `pusher:error`, with Pusher's code when there is one.
pub fn error(code: Option<PusherCode>, message: &str) -> String {
    let data = json!({ "code": code.map(PusherCode::code), "message": message });
    frame("pusher:error", None, &data)
}

/// `pusher:ping`, the server's keepalive.
pub fn ping() -> String {
    frame("pusher:ping", None, &json!({}))
}

/// `pusher:pong`, the answer to a client's ping.
pub fn pong() -> String {
    frame("pusher:pong", None, &json!({}))
}

/// A presence channel's members as `subscription_succeeded` lists them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Members {
    /// Each member once: its `user_id` and `user_info` (null for none).
    pub members: Vec<(String, Value)>,
}

/// `pusher_internal:subscription_succeeded`; for a presence channel, with its members.
pub fn subscription_succeeded(channel: &str, members: Option<&Members>) -> String {
    let data = match members {
        None => json!({}),
        Some(members) => {
            let ids: Vec<&str> = members.members.iter().map(|(id, _)| id.as_str()).collect();
            let hash: serde_json::Map<String, Value> = members.members.iter().cloned().collect();
            json!({ "presence": { "ids": ids, "hash": hash, "count": ids.len() } })
        }
    };
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher:subscription_error`: why a subscription was refused, with an HTTP-like status.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    let data = json!({ "type": kind, "error": error, "status": status });
    frame("pusher:subscription_error", Some(channel), &data)
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, user_id: &str, user_info: &Value) -> String {
    let data = json!({ "user_id": user_id, "user_info": user_info });
    frame(
        "pusher_internal:member_added",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = json!({ "user_id": user_id });
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher:signin_success`, with the signed user data.
pub fn signin_success(user_data: &str) -> String {
    frame(
        "pusher:signin_success",
        None,
        &json!({ "user_data": user_data }),
    )
}

/// `pusher_internal:watchlist_events`: which watched users are `online` and which `offline`
/// (each list left out when empty).
pub fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
    let events: Vec<Value> = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, users)| !users.is_empty())
        .map(|(name, users)| json!({ "name": name, "user_ids": users }))
        .collect();
    let data = json!({ "events": events });
    frame(
        "pusher_internal:watchlist_events",
        None,
        &json!(data.to_string()),
    )
}

/// `pusher:cache_miss`: a cache channel with no event yet.
pub fn cache_miss(channel: &str) -> String {
    frame("pusher:cache_miss", Some(channel), &json!({}))
}

/// An app's or a client's event on a channel; a client event on a presence channel names its
/// sender's `user_id`.
pub fn event(channel: &str, event: &str, data: &RawValue, user_id: Option<&str>) -> String {
    // By hand: `data` goes out byte for byte as given (an encrypted payload must not change).
    let mut out = String::with_capacity(data.get().len() + channel.len() + event.len() + 48);
    out.push_str("{\"event\":");
    out.push_str(&json!(event).to_string());
    out.push_str(",\"channel\":");
    out.push_str(&json!(channel).to_string());
    out.push_str(",\"data\":");
    out.push_str(data.get());
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        out.push_str(&json!(user_id).to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn server_frames_are_what_the_clients_decode() {
        let established = parsed(&connection_established("1.2", 120));
        assert_eq!(established["event"], "pusher:connection_established");
        // A string holding JSON.
        let data = parsed(established["data"].as_str().unwrap());
        assert_eq!(data, json!({"socket_id": "1.2", "activity_timeout": 120}));

        let members = Members {
            members: vec![
                ("1".into(), json!({"name": "Ann"})),
                ("2".into(), Value::Null),
            ],
        };
        let ok = parsed(&subscription_succeeded("presence-r", Some(&members)));
        assert_eq!(ok["channel"], "presence-r");
        let data = parsed(ok["data"].as_str().unwrap());
        assert_eq!(
            data,
            json!({"presence": {"ids": ["1", "2"], "hash": {"1": {"name": "Ann"}, "2": null}, "count": 2}})
        );
        assert_eq!(parsed(&subscription_succeeded("a", None))["data"], "{}");

        let added = parsed(&member_added("presence-r", "3", &json!({"n": 1})));
        assert_eq!(
            parsed(added["data"].as_str().unwrap()),
            json!({"user_id": "3", "user_info": {"n": 1}})
        );
        let removed = parsed(&member_removed("presence-r", "3"));
        assert_eq!(
            parsed(removed["data"].as_str().unwrap()),
            json!({"user_id": "3"})
        );

        assert_eq!(
            parsed(&error(Some(PusherCode::AppNotFound), "no app")),
            json!({"event": "pusher:error", "data": {"code": 4001, "message": "no app"}})
        );
        assert_eq!(parsed(&error(None, "x"))["data"]["code"], Value::Null);
        assert_eq!(parsed(&pong()), json!({"event": "pusher:pong", "data": {}}));
        assert_eq!(
            parsed(&signin_success(r#"{"id":"ann"}"#)),
            json!({"event": "pusher:signin_success", "data": {"user_data": r#"{"id":"ann"}"#}})
        );
        let watched = parsed(&watchlist_events(&["bob"], &[]));
        assert_eq!(watched["event"], "pusher_internal:watchlist_events");
        assert_eq!(
            parsed(watched["data"].as_str().unwrap()),
            json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
        );
        assert_eq!(
            parsed(&cache_miss("cache-a")),
            json!({"event": "pusher:cache_miss", "channel": "cache-a", "data": {}})
        );
        let refused = parsed(&subscription_error("private-a", "AuthError", "bad", 401));
        assert_eq!(refused["data"]["status"], 401);
    }

    #[test]
    fn an_event_keeps_its_data_byte_for_byte() {
        let data = RawValue::from_string(r#""{\"a\": 1}""#.to_owned()).unwrap();
        let text = event("news", "update", &data, None);
        assert_eq!(
            text,
            r#"{"event":"update","channel":"news","data":"{\"a\": 1}"}"#
        );
        let object = RawValue::from_string(r#"{ "x" : [1,2] }"#.to_owned()).unwrap();
        let text = event("presence-r", "client-t", &object, Some("u\"1"));
        assert!(text.contains(r#""data":{ "x" : [1,2] }"#), "{text}");
        assert_eq!(parsed(&text)["user_id"], "u\"1");
    }
}
