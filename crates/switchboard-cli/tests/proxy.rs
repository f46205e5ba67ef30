//! `switchboard serve` with proxies to a backend on loopback (hyper) and no JWT: the session
//! cookie names the user, whose personal channel is then its own; a silent publish proxy
//! refuses after `--proxy-timeout`.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::Serve;
use switchboard::{ConnectOptions, MaybeTlsStream, Message, WebSocket};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Every wait is bounded by this.
const STEP: Duration = Duration::from_secs(10);

/// The connect proxy: `session=42` is user 42; no session is refused.
async fn connect_proxy(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let call: Value = serde_json::from_slice(&body).unwrap();
    let cookie = call["headers"]["cookie"].as_str().unwrap_or("");
    let answer = match cookie.strip_prefix("session=") {
        Some(user) => json!({"result": {"user": user}}),
        None => json!({"disconnect": {"code": 4401, "reason": "log in first"}}),
    };
    Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
}

/// Serves the connect proxy, and a publish proxy that accepts and never answers.
async fn backends() -> (SocketAddr, SocketAddr) {
    let answering = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (
        answering.local_addr().unwrap(),
        silent.local_addr().unwrap(),
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = answering.accept().await {
            let service = hyper::service::service_fn(connect_proxy);
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    addrs
}

async fn connect(url: &str, cookie: Option<&str>) -> WebSocket<MaybeTlsStream> {
    let mut options = ConnectOptions::default();
    let mut headers = HeaderMap::new();
    if let Some(cookie) = cookie {
        headers.insert(header::COOKIE, cookie.parse().unwrap());
    }
    options.headers = headers;
    switchboard::connect_with(url, &options).await.unwrap().0
}

/// The next frame that is not a join or leave.
async fn next(ws: &mut WebSocket<MaybeTlsStream>) -> Value {
    loop {
        match tokio::time::timeout(STEP, ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] != "join" && frame["type"] != "leave" {
                    return frame;
                }
            }
            Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn ask(ws: &mut WebSocket<MaybeTlsStream>, request: Value) -> Value {
    ws.send(Message::text(request.to_string())).await.unwrap();
    next(ws).await
}

#[tokio::test]
async fn a_session_cookie_is_enough_to_use_the_hub() {
    let (backend, silent) = backends().await;
    let serve = Serve::start(&[
        "--mode",
        "hub",
        "--rule",
        "user:*=personal",
        "--connect-proxy",
        &format!("http://{backend}/connect"),
        "--publish-proxy",
        &format!("chat:*=http://{silent}/publish"),
        "--proxy-timeout",
        "300ms",
    ]);
    let url = serve.url();

    let mut user = connect(&url, Some("session=42")).await;
    let hello = next(&mut user).await;
    assert_eq!(hello["client"]["user"], "42", "{hello}");
    assert_eq!(hello["client"]["authenticated"], true);
    let own = ask(
        &mut user,
        json!({"op": "subscribe", "channel": "user:42", "id": 1}),
    )
    .await;
    assert_eq!(own["type"], "subscribed", "{own}");
    let other = ask(
        &mut user,
        json!({"op": "subscribe", "channel": "user:43", "id": 2}),
    )
    .await;
    assert_eq!(other["code"], "forbidden", "{other}");

    let started = Instant::now();
    let publish = json!({"op": "publish", "channel": "chat:1", "data": "hi", "id": 3});
    let refused = ask(&mut user, publish).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(refused["code"], "forbidden", "{refused}");

    let mut stranger = connect(&url, None).await;
    assert_eq!(next(&mut stranger).await["reason"], "log in first");
    let close = loop {
        match tokio::time::timeout(STEP, stranger.recv()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(close.code.0, 4401);

    // Each call is counted by proxy and outcome on the server's /metrics.
    let host = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).await.unwrap();
    for line in [
        "switchboard_proxy_requests_total{proxy=\"connect\",outcome=\"allowed\"} 1\n",
        "switchboard_proxy_requests_total{proxy=\"connect\",outcome=\"refused\"} 1\n",
        "switchboard_proxy_requests_total{proxy=\"publish\",outcome=\"timeout\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing in {metrics}");
    }
    serve.terminate();
}
