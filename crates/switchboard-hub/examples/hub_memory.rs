//! Heap held per idle hub connection: the hub on a server that counts its allocations.
//!
//! ```text
//! cargo run --release -p switchboard-hub --example hub_memory -- 127.0.0.1:9001
//! switchboard bench ws://127.0.0.1:9001/ws --mode hub -c 10000 --rate 1 --duration 10
//! ```
//!
//! With `--event-loop` after the address, the hub serves from the event loop
//! (`Hub::serve_on_event_loop`).
//!
//! Every second the connections open change, and once more 3 s after the last change, it prints
//! the live heap (bytes and blocks) above
//! what it held with no connection, divided by the connections open.

use std::sync::Arc;
use std::time::Duration;

use switchboard::Server;
use switchboard_hub::{Broker, Hub, HubConfig, LocalBroker};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let on_loop = std::env::args().nth(2).as_deref() == Some("--event-loop");
    let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(Default::default()));
    let hub = Hub::new(broker, HubConfig::default())
        .await
        .map_err(std::io::Error::other)?;
    let server = Server::builder().bind(addr).await?;
    println!("hub on ws://{}/ws", server.local_addr()?);
    let watched = hub.clone();
    tokio::spawn(async move {
        let mut heap = alloc_count::PerConnection::start();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(line) = heap.report(watched.connections()) {
                println!("{line}");
            }
        }
    });
    if on_loop {
        server
            .serve(move |ws, request| hub.serve_on_event_loop(ws, request))
            .await
    } else {
        server
            .serve(move |ws, request| hub.serve(ws, request))
            .await
    }
}
