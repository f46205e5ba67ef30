//! Webhooks reach a local HTTP receiver: signed, in order, and retried after a failure.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::Message;
use switchboard_hub::{Hub, HubConfig, WebhookConfig, WebhookMetrics};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(5);
const SECRET: &str = "webhook secret";

/// One request the receiver got, and the status it answered.
struct Received {
    status: StatusCode,
    events: Vec<Value>,
}

/// An HTTP server on loopback that checks each request's signature, answers with the
/// statuses of `script` in turn (then 200), and reports every request.
async fn receiver(script: Vec<StatusCode>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks?app=1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (tx, script) = (tx.clone(), script.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (tx, script) = (tx.clone(), script.clone());
                async move {
                    let status = script.lock().unwrap().pop_front().unwrap_or(StatusCode::OK);
                    let events = check(request).await;
                    tx.send(Received { status, events }).unwrap();
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, rx)
}

/// The events of a request, after checking it as a backend would.
async fn check(request: Request<Incoming>) -> Vec<Value> {
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri().path(), "/hooks");
    assert_eq!(request.uri().query(), Some("app=1"));
    assert_eq!(request.headers()["content-type"], "application/json");
    let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
    let timestamp = header("x-switchboard-timestamp");
    let signature = header("x-switchboard-signature");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        timestamp.parse::<u64>().unwrap().abs_diff(now) <= 5,
        "{timestamp}"
    );
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let expected = format!("sha256={:x}", mac.finalize().into_bytes());
    assert_eq!(signature, expected, "the signature verifies");
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["events"].as_array().unwrap().clone()
}

/// Webhooks to `url`, retried quickly.
fn webhooks(url: &str) -> WebhookConfig {
    let mut webhooks = WebhookConfig::new(url.parse().unwrap(), SECRET);
    webhooks.backoff = Duration::from_millis(50);
    webhooks.timeout = Duration::from_secs(2);
    webhooks
}

/// A hub with `webhooks`, and the address of its WebSocket server.
async fn hub(webhooks: WebhookConfig) -> (Hub, std::net::SocketAddr) {
    let mut config = HubConfig::default();
    config.webhooks = Some(webhooks);
    support::hub_and_addr(config).await
}

/// Connects as `ann`, subscribes to `room` and closes.
async fn visit(addr: std::net::SocketAddr) -> String {
    let url = format!("ws://{addr}/ws?name=ann");
    let (mut ws, _) = tokio::time::timeout(STEP, switchboard::connect(&url))
        .await
        .unwrap()
        .unwrap();
    let request = json!({"op": "subscribe", "channel": "room", "id": 1});
    ws.send(Message::text(request.to_string())).await.unwrap();
    let mut conn = String::new();
    loop {
        let message = tokio::time::timeout(STEP, ws.recv()).await.unwrap();
        let Some(Ok(Message::Text(text))) = message else {
            panic!("connection ended: {message:?}");
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "connected" {
            conn = frame["client"]["conn"].as_str().unwrap().to_owned();
        }
        if frame["type"] == "subscribed" {
            break;
        }
    }
    ws.close(switchboard::CloseCode::NORMAL, "bye")
        .await
        .unwrap();
    conn
}

/// The events of accepted requests, until `count` of them.
async fn accepted(rx: &mut mpsc::UnboundedReceiver<Received>, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        let received = tokio::time::timeout(STEP, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if received.status.is_success() {
            events.extend(received.events);
        }
    }
    events
}

/// Waits until `metrics` count `sent` events delivered: the sender counts a batch once it has
/// read the answer, after the receiver reported it.
async fn until_sent(metrics: &WebhookMetrics, sent: u64) {
    tokio::time::timeout(STEP, async {
        while metrics.sent() < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sender counts what was accepted");
}

/// The events of [`visit`], in order.
const VISIT: [&str; 4] = [
    "channel_occupied",
    "member_added",
    "member_removed",
    "channel_vacated",
];

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_visit_is_occupied_join_leave_vacated_signed() {
    let (url, mut rx) = receiver(Vec::new()).await;
    let (hub, addr) = hub(webhooks(&url)).await;
    let conn = visit(addr).await;
    let events = accepted(&mut rx, 4).await;
    assert_eq!(kinds(&events), VISIT);
    for event in &events {
        assert_eq!(event["channel"], "room");
        assert!(event["time"].as_u64().unwrap() > 0);
    }
    assert_eq!(events[1]["user"], "ann");
    assert_eq!(events[2]["user"], "ann");
    assert_eq!(events[1]["conn"], conn.as_str());
    assert_eq!(events[2]["conn"], conn.as_str());
    assert_eq!(events[0].get("user"), None);
    let metrics = hub.webhook_metrics().unwrap();
    until_sent(metrics, 4).await;
    assert_eq!(
        (metrics.sent(), metrics.failed(), metrics.dropped()),
        (4, 0, 0)
    );
}

#[tokio::test]
async fn a_batch_answered_500_is_retried_and_arrives_once() {
    let (url, mut rx) = receiver(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let (hub, addr) = hub(webhooks(&url)).await;
    visit(addr).await;
    let first = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    let failed = first.events.clone();
    assert!(!failed.is_empty());
    let events = accepted(&mut rx, 4).await;
    assert_eq!(
        kinds(&events),
        VISIT,
        "the failed batch comes again, first, and nothing twice"
    );
    assert_eq!(events[..failed.len()], failed[..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "nothing more is sent");
    let metrics = hub.webhook_metrics().unwrap();
    until_sent(metrics, 4).await;
    assert_eq!(
        (metrics.sent(), metrics.failed(), metrics.dropped()),
        (4, 1, 0)
    );
}

#[tokio::test]
async fn a_backend_that_keeps_failing_has_its_events_dropped_after_the_retry_time() {
    let (url, mut rx) = receiver(vec![StatusCode::SERVICE_UNAVAILABLE; 100]).await;
    let mut webhooks = webhooks(&url);
    webhooks.backoff = Duration::from_millis(20);
    webhooks.retry_for = Duration::from_millis(200);
    webhooks.max_batch = 1;
    let (hub, addr) = hub(webhooks).await;
    visit(addr).await;
    let metrics = hub.webhook_metrics().unwrap();
    tokio::time::timeout(STEP, async {
        while metrics.dropped() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every event dropped in time");
    assert_eq!(metrics.sent(), 0);
    assert!(metrics.failed() >= 4, "{}", metrics.failed());
    assert!(rx.recv().await.is_some());
}
