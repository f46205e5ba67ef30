//! Heap held per idle hub connection: the hub on a server that counts its allocations.
//!
//! ```text
//! cargo run --release -p switchboard-hub --example hub_memory -- 127.0.0.1:9001
//! switchboard bench ws://127.0.0.1:9001/ws --mode hub -c 10000 --rate 1 --duration 10
//! ```
//!
//! Every second the connections open change, it prints the live heap (bytes and blocks) above
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
    let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(Default::default()));
    let hub = Hub::new(broker, HubConfig::default())
        .await
        .map_err(std::io::Error::other)?;
    let server = Server::builder().bind(addr).await?;
    println!("hub on ws://{}/ws", server.local_addr()?);
    let watched = hub.clone();
    tokio::spawn(async move {
        let base = alloc_count::snapshot();
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let open = watched.connections();
            if open == last || open == 0 {
                last = open;
                continue;
            }
            last = open;
            let held = alloc_count::snapshot().since(&base);
            println!(
                "{open} connections: {:.0} bytes in {:.2} blocks per connection",
                held.live_bytes as f64 / open as f64,
                held.live_blocks as f64 / open as f64
            );
        }
    });
    server
        .serve(move |ws, request| {
            let hub = hub.clone();
            async move { hub.serve(ws, &request).await }
        })
        .await
}
