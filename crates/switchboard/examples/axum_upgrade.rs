//! Embedding: WebSocket on one route of an axum application. axum (hyper underneath) answers
//! the request with the `101` that switchboard prepared, then hands over the upgraded
//! connection; everything else stays ordinary axum, and switchboard knows nothing of it.
//!
//! ```text
//! cargo run -p switchboard --example axum_upgrade -- 127.0.0.1:3000
//! switchboard connect ws://127.0.0.1:3000/ws
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use switchboard::proto::handshake::server::reject_response;
use switchboard::{AcceptOptions, DeflateConfig, PreparedUpgrade, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = Router::new()
        .route(
            "/",
            get(|| async { "an axum app; WebSocket echo at /ws\n" }),
        )
        .route("/ws", get(upgrade));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("axum on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// Validates the upgrade, answers `101` through axum, and runs the WebSocket once hyper
/// hands the connection over.
async fn upgrade(mut request: Request) -> Response {
    // switchboard checks the request head (RFC 6455 §4.2.1); the body plays no part.
    let mut head = switchboard::http::Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    let options = AcceptOptions {
        protocols: vec!["echo".into()],
        // permessage-deflate for clients that offer it; the 101 names what was agreed.
        deflate: Some(DeflateConfig::default()),
        ..AcceptOptions::default()
    };
    let prepared = match PreparedUpgrade::new(&head, &options) {
        Ok(prepared) => prepared,
        Err(e) => {
            // 400, or 426 with the version this server speaks.
            let (head, body) = reject_response(&e);
            let (parts, ()) = head.into_parts();
            return Response::from_parts(parts, Body::from(body));
        }
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = prepared.response().status();
    *response.headers_mut() = prepared.response().headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = prepared.into_websocket(TokioIo::new(upgraded), BytesMut::new());
                echo(ws).await;
            }
            Err(e) => eprintln!("upgrade failed: {e}"),
        }
    });
    response
}

/// The application's part: the same code as for a connection of switchboard's own server.
async fn echo<S>(mut ws: WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
}
