//! The classic broadcast server: every message goes to every other open client.
//!
//! ```text
//! cargo run -p switchboard --example broadcast -- 127.0.0.1:9001
//! ```

use switchboard::{Server, Topics};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::builder().bind(addr).await?;
    println!("broadcast server on ws://{}", server.local_addr()?);
    let everyone = Topics::new();
    server
        .serve(move |ws, _request| {
            let everyone = everyone.clone();
            async move {
                let (sender, mut receiver) = ws.split();
                let _subscription = everyone.subscribe("all", &sender);
                while let Some(Ok(message)) = receiver.recv().await {
                    // Encoded once, shared by every recipient.
                    everyone.publish("all", &message, Some(&sender));
                }
            }
        })
        .await
}
