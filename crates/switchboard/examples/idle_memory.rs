//! Heap held per idle connection: an echo server that counts its allocations.
//!
//! ```text
//! cargo run --release -p switchboard --example idle_memory -- 127.0.0.1:9001 [event-loop]
//! switchboard bench ws://127.0.0.1:9001/ --mode idle -c 10000 --duration 5
//! ```
//!
//! With `event-loop`, the connections are served from an [`EventLoop`] instead of a task each.
//!
//! Every second the connections open change, and once more 3 s after the last change, it prints
//! the live heap (bytes and blocks) above
//! what it held with no connection, divided by the connections open: what RSS per connection
//! is made of, beside the kernel's socket buffers (not in RSS) and the allocator's overhead.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard::event_loop::{EventLoop, Handler, Socket};
use switchboard::http::Request;
use switchboard::{Message, Server};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let event_loop = std::env::args().nth(2).as_deref() == Some("event-loop");
    let server = Server::builder().bind(addr).await?;
    println!("echo server on ws://{}", server.local_addr()?);
    let metrics = server.metrics().clone();
    tokio::spawn(async move {
        let mut heap = alloc_count::PerConnection::start();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(line) = heap.report(metrics.connections_open() as usize) {
                println!("{line}");
            }
        }
    });
    // The same loop as `switchboard serve --mode echo` (switchboard_hub::echo), as a future
    // of its own: the connection's task is the socket and nothing more.
    if event_loop {
        let echo = EventLoop::new(LoopEcho);
        return server
            .serve(move |ws, request| echo.serve(ws, request))
            .await;
    }
    server.serve(|ws, _request| Echo { ws }).await
}

struct LoopEcho;

impl Handler for LoopEcho {
    type State = ();
    fn open(&self, _: &mut Socket<'_>, _: &Request<()>) {}
    fn message(&self, (): &mut (), socket: &mut Socket<'_>, message: Message) {
        let _ = socket.send(message);
    }
}

struct Echo {
    ws: switchboard::WebSocket<switchboard::MaybeTlsStream>,
}

impl Future for Echo {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ws = &mut self.get_mut().ws;
        loop {
            let Some(Ok(message)) = std::task::ready!(ws.poll_recv(cx)) else {
                return Poll::Ready(());
            };
            if message.is_data() && ws.feed(message).is_err() {
                return Poll::Ready(());
            }
        }
    }
}
