//! A WebSocket echo on one route of an axum application: switchboard checks the request and
//! prepares the answer, axum sends it, and hyper hands over the connection.
//!
//! Both kinds of request reach the route: an HTTP/1.1 `GET` upgrade (answered `101`) and an
//! HTTP/2 extended CONNECT (RFC 8441, answered `200`), which `axum::serve` enables with axum's
//! `http2` feature: several WebSockets then share one connection. `axum::serve` speaks HTTP/2
//! with prior knowledge (h2c); behind TLS (hyper's `http2::Builder` with
//! `enable_connect_protocol`, ALPN `h2`), browsers use it too. [`upgrade`] is plain hyper and
//! serves an application's own hyper server as well (see `tests/embedding.rs`).
//!
//! ```text
//! cargo run -p switchboard --example axum_upgrade -- 127.0.0.1:3000
//! switchboard connect ws://127.0.0.1:3000/ws
//! ```

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use hyper_util::rt::TokioIo;
use switchboard::{AcceptOptions, DeflateConfig, PreparedUpgrade};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:3000"));
    let app = Router::new().route("/ws", websocket_route());
    axum::serve(listener.await?, app).await
}

/// The route of a WebSocket: `GET` for HTTP/1.1, `CONNECT` for HTTP/2.
pub(crate) fn websocket_route() -> MethodRouter {
    on(
        MethodFilter::GET.or(MethodFilter::CONNECT),
        |mut request: Request| async move { upgrade(&mut request).into_response() },
    )
}

/// Answers an upgrade request of either HTTP version and runs its echo in a task of its own.
pub(crate) fn upgrade<B>(
    request: &mut switchboard::http::Request<B>,
) -> switchboard::http::Response<String> {
    let options = AcceptOptions {
        protocols: vec!["echo".into()],
        deflate: Some(DeflateConfig::default()),
        ..AcceptOptions::default()
    };
    let prepared = match PreparedUpgrade::new(request, &options) {
        Ok(prepared) => prepared,
        // 400, or 426 naming the version spoken (400 over HTTP/2), for this request only.
        Err(e) => return PreparedUpgrade::refusal(request, &e),
    };
    let (response, upgraded) = (prepared.response(), hyper::upgrade::on(request));
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
