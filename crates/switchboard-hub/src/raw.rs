//! Raw modes, as in the classic examples: [`echo`] sends every message back, [`Broadcast`]
//! sends every message to every other client; [`EchoHandler`] and [`BroadcastHandler`] do the
//! same from an [`EventLoop`](switchboard::event_loop::EventLoop). No protocol on top of
//! WebSocket messages.

use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use switchboard::event_loop::{Handler, Recipients, Remote, Socket};
use switchboard::http::Request;
use switchboard::{EncodedFrame, Error, Message, Topics, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// Output that may pile up for a peer that does not read before `echo` waits for it.
const ECHO_HIGH_WATER: usize = 1 << 20;

/// Echoes every text and binary message back to its sender until the connection ends.
///
/// Echoes of messages that arrived together leave together, in one write.
pub fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>) -> Echo<S> {
    Echo { ws }
}

/// The future of [`echo`]: the socket and nothing else. Written out rather than as an `async`
/// block, whose state would take room beside the socket's (and hide the niches that let the
/// server's task hold it without a tag of its own): an idle connection's memory is mostly this
/// future.
#[derive(Debug)]
pub struct Echo<S> {
    ws: WebSocket<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Echo<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ws = &mut self.get_mut().ws;
        loop {
            // `poll_recv` writes what is queued before it waits for input; wait here only when
            // the peer has stopped reading.
            if ws.buffered_amount() > ECHO_HIGH_WATER && ready!(ws.poll_flush(cx)).is_err() {
                return Poll::Ready(());
            }
            let Some(Ok(message)) = ready!(ws.poll_recv(cx)) else {
                return Poll::Ready(());
            };
            if message.is_data() && ws.feed(message).is_err() {
                return Poll::Ready(());
            }
        }
    }
}

/// [`echo`] as an [`EventLoop`](switchboard::event_loop::EventLoop)'s handler: every text and
/// binary message goes back to its sender, and the echoes of one read leave together.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    type State = ();

    fn open(&self, _: &mut Socket<'_>, _: &Request<()>) {}

    fn message(&self, (): &mut (), socket: &mut Socket<'_>, message: Message) {
        // Fails only once closing; a peer that stops reading stops being read from at the
        // send limit, in the engine's driver.
        let _ = socket.send(message);
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
    pub fn serve<S>(&self, ws: WebSocket<S>) -> impl Future<Output = ()> + Send + '_
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Split here, not in an `async fn`: its future would keep room for the socket (twice)
        // for the connection's whole life, though the socket's own task owns it.
        let (sender, mut receiver) = ws.split();
        async move {
            let _subscription = self.everyone.subscribe(ALL, &sender);
            while let Some(Ok(message)) = receiver.recv().await {
                if matches!(message, Message::Text(_) | Message::Binary(_)) {
                    self.everyone.publish(ALL, &message, Some(&sender));
                }
            }
        }
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.everyone.subscriber_count(ALL)
    }
}

/// [`Broadcast`] as an [`EventLoop`](switchboard::event_loop::EventLoop)'s handler: every text
/// and binary message of a client goes to every other connected client, encoded once.
///
/// The clients are [`Recipients`] shared by the loops of every thread (clones share them), so
/// one message takes each loop's mailbox lock once, whatever the number of clients there.
#[derive(Clone, Debug, Default)]
pub struct BroadcastHandler {
    everyone: Arc<RwLock<Recipients>>,
}

impl BroadcastHandler {
    /// A broadcast group with no clients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.everyone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Handler for BroadcastHandler {
    /// The client's own address among the recipients.
    type State = Remote;

    fn open(&self, socket: &mut Socket<'_>, _: &Request<()>) -> Remote {
        let me = socket.remote();
        self.everyone
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(&me);
        me
    }

    fn message(&self, me: &mut Remote, _: &mut Socket<'_>, message: Message) {
        let Some(frame) = EncodedFrame::from_message(&message) else {
            return;
        };
        self.everyone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .send_encoded(&frame, Some(me));
    }

    fn close(&self, me: Remote, _: Option<Result<Message, Error>>) {
        self.everyone
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&me);
    }
}

#[cfg(test)]
mod tests {
    use switchboard::{Config, Role};
    use tokio::io::DuplexStream;

    use super::*;

    /// An idle echo connection is its task: the future must not hold the socket twice.
    #[test]
    fn the_echo_future_is_little_more_than_its_socket() {
        let (io, _peer) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(io, Role::Server, Config::default(), Default::default());
        let socket = size_of::<WebSocket<DuplexStream>>();
        let future = size_of_val(&echo(ws));
        assert!(
            future <= socket + 32,
            "{future} bytes for a {socket}-byte socket"
        );
    }
}
