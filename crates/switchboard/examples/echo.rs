//! The classic echo server: every message comes back to its sender.
//!
//! ```text
//! cargo run -p switchboard --example echo -- 127.0.0.1:9001
//! ```

use switchboard::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::builder().bind(addr).await?;
    println!("echo server on ws://{}", server.local_addr()?);
    server
        .serve(|mut ws, _request| async move {
            while let Some(Ok(message)) = ws.recv().await {
                // Pings are answered by the library; only data comes back.
                if message.is_data() && ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .await
}
