//! Raw modes, as in the classic examples: [`echo`] sends every message back, [`Broadcast`]
//! sends every message to every other client. No protocol on top of WebSocket messages.

use switchboard::{Message, Topics, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// Output that may pile up for a peer that does not read before `echo` waits for it.
const ECHO_HIGH_WATER: usize = 1 << 20;

/// Echoes every text and binary message back to its sender until the connection ends.
///
/// Echoes of messages that arrived together leave together, in one write.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Some(Ok(message)) = ws.recv().await {
        if !message.is_data() {
            continue;
        }
        if ws.feed(message).is_err() {
            break;
        }
        // `recv` writes what is queued before it waits for input; wait here only when the
        // peer has stopped reading.
        if ws.buffered_amount() > ECHO_HIGH_WATER && ws.flush().await.is_err() {
            break;
        }
    }
}

/// Sends every message of every client to every other connected client.
#[derive(Clone, Debug, Default)]
pub struct Broadcast {
    everyone: Topics,
}

const ALL: &str = "all";

impl Broadcast {
    /// A broadcast group with no clients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves one client until it leaves: what it sends goes to the others, what they send
    /// comes to it. Each message is encoded once for all recipients.
    pub async fn serve<S>(&self, ws: WebSocket<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut receiver) = ws.split();
        self.everyone.subscribe(ALL, &sender);
        while let Some(Ok(message)) = receiver.recv().await {
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                self.everyone.publish(ALL, &message, Some(&sender));
            }
        }
        self.everyone.unsubscribe_all(&sender);
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.everyone.subscriber_count(ALL)
    }
}
