//! A WebSocket client of the hub, for tests that watch what it receives.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{MaybeTlsStream, Message, WebSocket};

/// Every wait for a frame is bounded by this.
const STEP: Duration = Duration::from_secs(5);

/// A client named `name`, past its `connected` frame.
pub(crate) async fn join(addr: SocketAddr, name: &str) -> WebSocket<MaybeTlsStream> {
    let url = format!("ws://{addr}/ws?name={name}");
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    assert_eq!(frame(&mut ws).await["type"], "connected");
    ws
}

/// The next JSON frame other than presence events, or `{"closed": code}`.
pub(crate) async fn frame(ws: &mut WebSocket<MaybeTlsStream>) -> Value {
    loop {
        match tokio::time::timeout(STEP, ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "join" && value["type"] != "leave" {
                    return value;
                }
            }
            Some(Ok(Message::Close(close))) => {
                return json!({"closed": close.map(|c| c.code.0)});
            }
            Some(Ok(_)) => {}
            other => return json!({"closed": format!("{other:?}")}),
        }
    }
}
