//! The JSON the HTTP proxies send the backend and read from its answers (the README's
//! "Proxies" shows each).

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::hooks::{ConnectRequest, Refusal};

/// What the connect proxy POSTs.
#[derive(Serialize)]
pub(super) struct ConnectCall<'a> {
    pub(super) transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) remote_addr: Option<String>,
    pub(super) query: &'a str,
    pub(super) headers: BTreeMap<String, String>,
}

impl<'a> ConnectCall<'a> {
    pub(super) fn of(request: &'a ConnectRequest) -> Self {
        Self {
            transport: "websocket",
            remote_addr: request.remote_addr.map(|a| a.to_string()),
            query: &request.query,
            headers: headers(&request.headers),
        }
    }
}

/// The headers as an object: lowercase names, a repeated header's values joined with `, `
/// (with `; ` for `cookie`, as cookie headers join); values that are not text are left out.
fn headers(map: &HeaderMap) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in map {
        let Ok(value) = value.to_str() else { continue };
        let separator = if name == http::header::COOKIE {
            "; "
        } else {
            ", "
        };
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(separator);
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    headers
}

/// What the subscribe and publish proxies POST; `data` only for a publish.
#[derive(Serialize)]
pub(super) struct ChannelCall<'a> {
    pub(super) client: &'a str,
    pub(super) user: &'a str,
    pub(super) authenticated: bool,
    pub(super) channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<&'a RawValue>,
}

/// The connect proxy's answer: `result` lets the client in, `disconnect` refuses it.
#[derive(Deserialize)]
pub(super) struct ConnectAnswer {
    pub(super) result: Option<ConnectResult>,
    pub(super) disconnect: Option<Disconnect>,
}

#[derive(Deserialize)]
pub(super) struct ConnectResult {
    pub(super) user: String,
    pub(super) info: Option<Box<RawValue>>,
    #[serde(default)]
    pub(super) channels: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct Disconnect {
    pub(super) code: u16,
    #[serde(default)]
    pub(super) reason: String,
}

impl From<Disconnect> for Refusal {
    fn from(d: Disconnect) -> Self {
        Self::new(d.code, d.reason)
    }
}

/// The subscribe and publish proxies' answer: `result` allows (a publish's `result.data`
/// replaces what is published), `error` refuses.
#[derive(Deserialize)]
pub(super) struct ChannelAnswer {
    pub(super) result: Option<ChannelResult>,
    pub(super) error: Option<ChannelError>,
}

#[derive(Deserialize)]
pub(super) struct ChannelResult {
    pub(super) data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
pub(super) struct ChannelError {
    #[serde(default)]
    pub(super) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_and_cookies_join_as_cookies() {
        let mut map = HeaderMap::new();
        map.append("cookie", "a=1".parse().unwrap());
        map.append("cookie", "b=2".parse().unwrap());
        map.append("accept", "x".parse().unwrap());
        map.append("accept", "y".parse().unwrap());
        map.append("x-bin", http::HeaderValue::from_bytes(b"\xff").unwrap());
        let headers = headers(&map);
        assert_eq!(headers["cookie"], "a=1; b=2");
        assert_eq!(headers["accept"], "x, y");
        assert!(!headers.contains_key("x-bin"));
    }

    #[test]
    fn answers_are_read_as_documented() {
        let a: ConnectAnswer =
            serde_json::from_str(r#"{"result":{"user":"42","info":{"n":1},"channels":["c"]}}"#)
                .unwrap();
        let r = a.result.unwrap();
        assert_eq!((r.user.as_str(), r.channels.len()), ("42", 1));
        assert_eq!(r.info.unwrap().get(), r#"{"n":1}"#);
        let a: ConnectAnswer =
            serde_json::from_str(r#"{"disconnect":{"code":4403,"reason":"no"}}"#).unwrap();
        assert_eq!(
            Refusal::from(a.disconnect.unwrap()),
            Refusal::new(4403, "no")
        );
        let a: ChannelAnswer = serde_json::from_str(r#"{"result":{}}"#).unwrap();
        assert!(a.result.unwrap().data.is_none());
        let a: ChannelAnswer = serde_json::from_str(r#"{"error":{"message":"m"}}"#).unwrap();
        assert_eq!(a.error.unwrap().message, "m");
    }
}
