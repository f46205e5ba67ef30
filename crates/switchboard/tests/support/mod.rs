//! What the integration tests share.

use std::net::SocketAddr;

use switchboard::{Metrics, ServerBuilder};

/// Starts `builder`'s server running an echo handler; returns its address and metrics.
pub(crate) async fn echo_server(builder: ServerBuilder) -> (SocketAddr, Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    (addr, metrics)
}
