//! A WebSocket echo on one route of an axum application: switchboard checks the request and
//! prepares the `101`, axum sends it, and hyper hands over the connection.
//!
//! ```text
//! cargo run -p switchboard --example axum_upgrade -- 127.0.0.1:3000
//! switchboard connect ws://127.0.0.1:3000/ws
//! ```

use axum::{Router, extract::Request, response::Response, routing::get};
use hyper_util::rt::TokioIo;
use switchboard::{AcceptOptions, DeflateConfig, PreparedUpgrade};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:3000"));
    let app = Router::new().route("/ws", get(upgrade));
    axum::serve(listener.await?, app).await
}

pub(crate) async fn upgrade(mut request: Request) -> Response {
    let options = AcceptOptions {
        protocols: vec!["echo".into()],
        deflate: Some(DeflateConfig::default()),
        ..AcceptOptions::default()
    };
    let prepared = match PreparedUpgrade::new(&request, &options) {
        Ok(prepared) => prepared,
        Err(e) => return e.to_response(), // 400, or 426 naming the version spoken
    };
    let (response, upgraded) = (prepared.response(), hyper::upgrade::on(&mut request));
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let mut ws = prepared.into_websocket(TokioIo::new(upgraded), Default::default());
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    response
}
