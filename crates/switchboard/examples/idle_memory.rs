//! Heap held per idle connection: an echo server that counts its allocations.
//!
//! ```text
//! cargo run --release -p switchboard --example idle_memory -- 127.0.0.1:9001
//! switchboard bench ws://127.0.0.1:9001/ --mode idle -c 10000 --duration 5
//! ```
//!
//! Every second the connections open change, it prints the live heap (bytes and blocks) above
//! what it held with no connection, divided by the connections open: what RSS per connection
//! is made of, beside the kernel's socket buffers (not in RSS) and the allocator's overhead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard::Server;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::builder().bind(addr).await?;
    println!("echo server on ws://{}", server.local_addr()?);
    let metrics = server.metrics().clone();
    tokio::spawn(async move {
        let base = (
            LIVE_BYTES.load(Ordering::Relaxed),
            LIVE_BLOCKS.load(Ordering::Relaxed),
        );
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let open = metrics.connections_open();
            if open == last || open == 0 {
                last = open;
                continue;
            }
            last = open;
            let bytes = LIVE_BYTES.load(Ordering::Relaxed) - base.0;
            let blocks = LIVE_BLOCKS.load(Ordering::Relaxed) - base.1;
            println!(
                "{open} connections: {:.0} bytes in {:.2} blocks per connection",
                bytes as f64 / open as f64,
                blocks as f64 / open as f64
            );
        }
    });
    // The same loop as `switchboard serve --mode echo` (switchboard_hub::echo), as a future
    // of its own: the connection's task is the socket and nothing more.
    server.serve(|ws, _request| Echo { ws }).await
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
