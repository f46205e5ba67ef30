//! What a subscriber that stopped reading finds once it reads again.

use std::time::Duration;

use serde_json::Value;
use switchboard::{CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a laggard was sent, read to the end: the last offset of the gap-free prefix of the
/// channel's messages (asserted gap-free), the `disconnect` hint after them (asserted last
/// before the Close), and the server's Close.
pub(crate) async fn read_to_the_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> (u64, Value, Option<CloseFrame>) {
    let mut last = 0;
    let mut hint = Value::Null;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("a frame within 5 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(hint, Value::Null, "{frame} after the hint");
                match frame["type"].as_str() {
                    Some("message") => {
                        assert_eq!(frame["offset"], last + 1);
                        last += 1;
                    }
                    Some("disconnect") => hint = frame,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => return (last, hint, frame),
            other => panic!("{other:?}"),
        }
    }
}
