//! The HTTP proxies against a backend written for the test (hyper on loopback) that decides
//! from the client's session cookie: connects allowed with a user, info and a channel, or
//! refused; subscribes refused per namespace; publishes rewritten or refused; and a backend
//! that never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchboard::{ConnectOptions, MaybeTlsStream, Message, WebSocket};
use switchboard_hub::{
    ChannelRule, HttpProxy, Hub, HubConfig, OnFailure, Policy, ProxyEndpoint, ProxyMetrics,
};
use tokio::net::TcpListener;

mod support;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(5);

/// The backend's answer to one proxy call.
fn decide(path: &str, call: &Value) -> Value {
    match path {
        "/connect" => match call["headers"]["cookie"].as_str() {
            Some(cookies) if cookies.contains("session=ann") => json!({"result": {
                "user": "ann",
                "info": {"name": "Ann"},
                "channels": ["news"],
            }}),
            _ => json!({"disconnect": {"code": 4403, "reason": "no session"}}),
        },
        "/subscribe" => {
            if call["channel"] == format!("secret:{}", call["user"].as_str().unwrap_or("")) {
                json!({"result": {}})
            } else {
                json!({"error": {"code": 403, "message": "not your secret"}})
            }
        }
        "/publish" => match call["data"]["text"].as_str() {
            Some("bad") => json!({"error": {"code": 403, "message": "no bad words"}}),
            Some(text) => json!({"result": {"data": {"text": text, "by": call["user"]}}}),
            None => json!({"result": {}}),
        },
        _ => json!({}),
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let call: Value = serde_json::from_slice(&body).unwrap();
    let answer = decide(&path, &call).to_string();
    Ok(Response::new(Full::new(Bytes::from(answer))))
}

/// Serves the backend on loopback; counts the connections it accepts.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counting = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counting.fetch_add(1, Ordering::Relaxed);
            let service = hyper::service::service_fn(answer);
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (addr, accepted)
}

/// A backend that accepts connections and never answers.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

fn endpoint(addr: SocketAddr, path: &str, timeout: Duration) -> ProxyEndpoint {
    ProxyEndpoint::new(&format!("http://{addr}{path}"), timeout).unwrap()
}

/// A hub whose proxies ask `backend`; `slow:*` publishes go to a silent one.
async fn hub_with_proxies() -> (SocketAddr, Hub, Arc<ProxyMetrics>) {
    let (addr, hub, metrics, _) = hub_with_counted_proxies().await;
    (addr, hub, metrics)
}

/// As [`hub_with_proxies`], with the count of connections the backend accepted.
async fn hub_with_counted_proxies() -> (SocketAddr, Hub, Arc<ProxyMetrics>, Arc<AtomicUsize>) {
    let (backend, accepted) = backend().await;
    let silent = silent_backend().await;
    let proxy = HttpProxy::new()
        .connect(endpoint(backend, "/connect", STEP))
        .subscribe("secret:*", endpoint(backend, "/subscribe", STEP))
        .publish("chat:*", endpoint(backend, "/publish", STEP))
        .publish(
            "slow:*",
            endpoint(silent, "/publish", Duration::from_millis(300)),
        );
    let metrics = proxy.metrics();
    let mut config = HubConfig::default();
    config.rules = vec![ChannelRule::new("user:*", Policy::Personal)];
    config.hooks = Some(Arc::new(proxy));
    let (hub, addr) = support::hub_and_addr(config).await;
    (addr, hub, metrics, accepted)
}

async fn connect(addr: SocketAddr, cookie: &str) -> WebSocket<MaybeTlsStream> {
    let mut options = ConnectOptions::default();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::COOKIE, cookie.parse().unwrap());
    options.headers = headers;
    let url = format!("ws://{addr}/ws");
    let (ws, _) = tokio::time::timeout(STEP, switchboard::connect_with(&url, &options))
        .await
        .unwrap()
        .unwrap();
    ws
}

/// Ann, connected and subscribed to the connect proxy's channel.
async fn connected_ann(addr: SocketAddr) -> WebSocket<MaybeTlsStream> {
    let mut ann = connect(addr, "session=ann").await;
    assert_eq!(next(&mut ann).await["type"], "connected");
    assert_eq!(next(&mut ann).await["type"], "subscribed");
    ann
}

/// The next text frame, skipping joins and leaves; panics on a close.
async fn next(ws: &mut WebSocket<MaybeTlsStream>) -> Value {
    loop {
        let message = tokio::time::timeout(STEP, ws.recv())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "join" && frame["type"] != "leave" {
                return frame;
            }
        }
    }
}

async fn request(ws: &mut WebSocket<MaybeTlsStream>, request: Value) -> Value {
    ws.send(Message::text(request.to_string())).await.unwrap();
    next(ws).await
}

async fn subscribe(ws: &mut WebSocket<MaybeTlsStream>, channel: &str, id: u64) -> Value {
    request(ws, json!({"op": "subscribe", "channel": channel, "id": id})).await
}

async fn publish(ws: &mut WebSocket<MaybeTlsStream>, channel: &str, data: Value, id: u64) -> Value {
    request(
        ws,
        json!({"op": "publish", "channel": channel, "data": data, "id": id}),
    )
    .await
}

#[tokio::test]
async fn the_connect_proxy_names_the_user_and_subscribes_it() {
    let (addr, hub, metrics) = hub_with_proxies().await;
    let mut ann = connect(addr, "theme=dark; session=ann").await;
    let hello = next(&mut ann).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["client"]["user"], "ann");
    assert_eq!(hello["client"]["authenticated"], true);
    assert_eq!(hello["client"]["info"], json!({"name": "Ann"}));
    let subscribed = next(&mut ann).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["channel"], "news");
    let present = hub.presence("news").await.unwrap();
    assert_eq!(present.len(), 1);
    assert_eq!(present[0].info.as_ref().unwrap().get(), r#"{"name":"Ann"}"#);
    // The proxy's user is authenticated: its personal channel is its own, no one else's.
    let own = subscribe(&mut ann, "user:ann", 1).await;
    assert_eq!(own["type"], "subscribed", "{own}");
    let other = subscribe(&mut ann, "user:bob", 2).await;
    assert_eq!(other["code"], "forbidden", "{other}");
    assert_eq!(metrics.get("connect", "allowed"), 1);
}

#[tokio::test]
async fn calls_to_the_backend_reuse_one_connection() {
    let (addr, _hub, metrics, accepted) = hub_with_counted_proxies().await;
    for _ in 0..5 {
        let mut ann = connected_ann(addr).await;
        let published = publish(&mut ann, "chat:lobby", json!({"text": "hi"}), 1).await;
        assert_eq!(published["type"], "ack", "{published}");
    }
    assert_eq!(metrics.get("connect", "allowed"), 5);
    assert_eq!(metrics.get("publish", "allowed"), 5);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "ten calls, one after another, on one kept-alive connection"
    );
}

#[tokio::test]
async fn a_refused_connect_gets_the_backends_code_and_reason() {
    let (addr, hub, metrics) = hub_with_proxies().await;
    let mut stranger = connect(addr, "session=mallory").await;
    let error = next(&mut stranger).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "unauthorized");
    assert_eq!(error["reason"], "no session");
    let close = loop {
        match tokio::time::timeout(STEP, stranger.recv()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!((close.code.0, &*close.reason), (4403, "no session"));
    assert_eq!(hub.connections(), 0);
    assert_eq!(metrics.get("connect", "refused"), 1);
}

#[tokio::test]
async fn the_subscribe_proxy_decides_its_namespace_only() {
    let (addr, _hub, metrics) = hub_with_proxies().await;
    let mut ann = connected_ann(addr).await;
    let refused = subscribe(&mut ann, "secret:bob", 1).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(refused["reason"], "not your secret");
    let own = subscribe(&mut ann, "secret:ann", 2).await;
    assert_eq!(own["type"], "subscribed", "{own}");
    let elsewhere = subscribe(&mut ann, "lobby", 3).await;
    assert_eq!(elsewhere["type"], "subscribed", "{elsewhere}");
    assert_eq!(metrics.get("subscribe", "refused"), 1);
    assert_eq!(
        metrics.get("subscribe", "allowed"),
        1,
        "lobby is not asked about"
    );
}

#[tokio::test]
async fn the_publish_proxy_rewrites_and_refuses() {
    let (addr, hub, metrics) = hub_with_proxies().await;
    let mut ann = connected_ann(addr).await;
    let ack = publish(&mut ann, "chat:1", json!({"text": "hi"}), 1).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let refused = publish(&mut ann, "chat:1", json!({"text": "bad"}), 2).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(refused["reason"], "no bad words");
    let history = hub.history("chat:1", None, None).await.unwrap();
    let published: Vec<Value> = history
        .publications
        .iter()
        .map(|p| serde_json::from_str(p.data.get()).unwrap())
        .collect();
    assert_eq!(published, [json!({"text": "hi", "by": "ann"})]);
    assert_eq!(metrics.get("publish", "allowed"), 1);
    assert_eq!(metrics.get("publish", "refused"), 1);
}

#[tokio::test]
async fn a_backend_that_never_answers_refuses_after_the_timeout() {
    let (addr, _hub, metrics) = hub_with_proxies().await;
    let mut ann = connected_ann(addr).await;
    let started = Instant::now();
    let refused = publish(&mut ann, "slow:1", json!(1), 1).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(
        refused["reason"],
        "the publish proxy failed: no answer in time"
    );
    assert_eq!(metrics.get("publish", "timeout"), 1);
}

#[tokio::test]
async fn failures_let_the_client_through_when_told_to() {
    // A port with no listener: every call fails at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = HttpProxy::new()
        .connect(endpoint(closed, "/connect", STEP))
        .publish("*", endpoint(closed, "/publish", STEP))
        .on_failure(OnFailure::Allow);
    let metrics = proxy.metrics();
    let mut config = HubConfig::default();
    config.hooks = Some(Arc::new(proxy));
    let (_hub, addr) = support::hub_and_addr(config).await;
    let url = format!("ws://{addr}/ws?name=guest");
    let (mut guest, _) = switchboard::connect(&url).await.unwrap();
    let hello = next(&mut guest).await;
    assert_eq!(
        hello["client"]["user"], "guest",
        "the name counts, as without a proxy"
    );
    assert_ne!(hello["client"]["authenticated"], true);
    let ack = publish(&mut guest, "lobby", json!(1), 1).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(metrics.get("connect", "failed"), 1);
    assert_eq!(metrics.get("publish", "failed"), 1);
}
