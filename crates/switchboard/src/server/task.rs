//! A connection's task: the opening handshake (on the fast path, or after plain HTTP requests),
//! then the application's handler; or an HTTP/2 connection, whose WebSockets get tasks of their
//! own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Version};
use tokio::net::TcpStream;

use super::admission::{Admitted, Handshake};
use super::handshake::{self, First};
use super::{Shared, http2, plain};
use crate::hook::ClientAddr;
use crate::link::{Link, Remote};
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

/// The task of one admitted connection: the handshake, then the handler. `pending` holds its
/// place among the handshakes under way until the first request is read (an HTTP/2
/// connection's streams and a keep-alive connection's later requests do not count). The count
/// under the limit per address lasts as long as the connection: the handshake's future holds
/// it, then the WebSocket.
pub(super) fn connection<H, F>(
    admitted: Admitted,
    pending: Handshake,
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    handler: Arc<H>,
) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    // The handshake runs boxed, and is freed before the handler runs: its state (TLS, the
    // request being parsed, the hook, hyper's connection) is several times a connection's, and
    // the task would otherwise keep room for it, and for what it captures, for the
    // connection's whole life.
    let Admitted { member, address } = admitted;
    ConnectionTask::Starting {
        start: Box::pin(async move {
            let first = handshake::first_request(tcp, peer, &shared).await;
            let started = pending.started();
            drop(pending);
            let (mut ws, request) = match first? {
                First::WebSocket(ws, request) => {
                    shared.group.metrics().handshake_took(started.elapsed());
                    (ws, request)
                }
                First::Plain(stream, read) => plain::serve(stream, read, peer, &shared).await?,
                First::Http2(stream, read) => {
                    // Its WebSockets run in tasks of their own; this one serves the connection.
                    http2::serve(stream, read, peer, shared, handler).await;
                    return None;
                }
            };
            shared.group.metrics().websocket_opened(Version::HTTP_11);
            drop(shared);
            let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
            ws.attach(Link::new(member, &Remote::of(peer, client)));
            if let Some(ticket) = address {
                ws.hold(ticket);
            }
            Some(handler(ws, request))
        }),
    }
}

pin_project_lite::pin_project! {
    /// A connection's task, written out rather than as an `async` block, which would keep
    /// room for its state beside the handler's: the task is the handler's size, and an idle
    /// connection's memory is mostly its task.
    #[project = ConnectionTaskProj]
    enum ConnectionTask<St, F> {
        Starting { start: Pin<Box<St>> },
        Handling { #[pin] handling: F },
    }
}

impl<St, F> Future for ConnectionTask<St, F>
where
    St: Future<Output = Option<F>>,
    F: Future<Output = ()>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                ConnectionTaskProj::Starting { start } => {
                    let Some(handling) = ready!(start.as_mut().poll(cx)) else {
                        return Poll::Ready(());
                    };
                    self.set(Self::Handling { handling });
                }
                ConnectionTaskProj::Handling { handling } => return handling.poll(cx),
            }
        }
    }
}

/// A connection's task as a server makes it, for `footprint.rs` to measure: over a loopback
/// connection that is never answered.
#[cfg(test)]
pub(crate) async fn sample<H, F>(handler: H) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let server = super::Server::builder().bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpStream::connect(server.local_addr().unwrap())
        .await
        .unwrap();
    let peer = tcp.local_addr().unwrap();
    let shared = server.shared.clone();
    let member = shared.group.admit().unwrap();
    let admitted = Admitted {
        member,
        address: None,
    };
    let permit = shared.gate.ready(shared.group.metrics()).await;
    let pending = Handshake::new(permit, shared.group.metrics());
    connection(admitted, pending, tcp, peer, shared, Arc::new(handler))
}
