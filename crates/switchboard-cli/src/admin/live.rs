//! `/admin/live`: the dashboard's own WebSocket, one JSON frame a second with the node's
//! figures (from the server's [`Metrics`] and the hub, not from parsing `/metrics`) turned into
//! rates, and every node of the deployment with its connections. The upgrade needs the session
//! cookie and an origin of this server (see `guard.rs`); the socket closes when the session
//! ends.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::{Map, Value, json};
use switchboard::{CloseCode, HandshakeFailure, MaybeTlsStream, Message, Metrics, WebSocket};
use tokio::time::Instant;

use super::Admin;
use super::guard;
use super::respond::forbidden;

/// How often a frame goes out.
const EVERY: Duration = Duration::from_secs(1);

/// The close code of a socket whose session ended (logout or expiry): a private-use code the
/// page knows to mean "log in again".
const SESSION_ENDED: u16 = 4001;

/// The checks of the upgrade: `None` lets it through, else the refusal (401, 403).
pub(super) fn check(admin: &Admin, request: &Request<()>) -> Option<Response<Bytes>> {
    if !guard::same_origin(request.headers(), request.uri()) {
        return Some(forbidden("a WebSocket from another site"));
    }
    guard::session(&admin.sessions, request.headers())
        .err()
        .map(guard::Refused::response)
}

/// The counters a frame is computed from.
#[derive(Clone, Copy)]
struct Counts {
    at: Instant,
    connections: u64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    failures: u64,
}

impl Counts {
    fn read(metrics: &Metrics) -> Self {
        Self {
            at: Instant::now(),
            connections: metrics.connections_open(),
            messages_in: metrics.messages_received(),
            messages_out: metrics.messages_sent(),
            bytes_in: metrics.bytes_received(),
            bytes_out: metrics.bytes_sent(),
            failures: HandshakeFailure::all()
                .iter()
                .map(|reason| metrics.handshake_failures(*reason))
                .sum(),
        }
    }
}

/// Serves the socket until the client leaves or the session ends.
pub(super) async fn serve(admin: &Admin, ws: WebSocket<MaybeTlsStream>, request: &Request<()>) {
    let Some(id) = guard::cookie(request.headers()).map(str::to_owned) else {
        return;
    };
    let (sender, mut receiver) = ws.split();
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Counts::read(&admin.metrics);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if admin.sessions.get(&id).is_none() {
                    let _ = sender.close(CloseCode::from(SESSION_ENDED), "session ended");
                    return;
                }
                let now = Counts::read(&admin.metrics);
                let frame = frame(admin, &last, &now).await;
                last = now;
                if sender.send(Message::text(frame.to_string())).await.is_err() {
                    return;
                }
            }
            message = receiver.recv() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// One frame: rates over the time since `last`, totals, and the nodes.
async fn frame(admin: &Admin, last: &Counts, now: &Counts) -> Value {
    let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-3);
    let rate = |before: u64, after: u64| after.saturating_sub(before) as f64 / secs;
    let mut failures = Map::new();
    for reason in HandshakeFailure::all() {
        failures.insert(
            reason.as_str().to_owned(),
            json!(admin.metrics.handshake_failures(*reason)),
        );
    }
    // Asking every node is a round trip through the broker (none with one node in memory).
    let asked = Instant::now();
    let info = admin.hub.info().await;
    let broker_ms = asked.elapsed().as_secs_f64() * 1e3;
    let (nodes, unanswered) = match &info {
        Ok(info) => (
            serde_json::to_value(&info.nodes).unwrap_or_default(),
            info.unanswered,
        ),
        Err(_) => (Value::Array(Vec::new()), 0),
    };
    json!({
        "type": "tick",
        "time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "connections": now.connections,
        "connections_rate": (now.connections as f64 - last.connections as f64) / secs,
        "messages_in": rate(last.messages_in, now.messages_in),
        "messages_out": rate(last.messages_out, now.messages_out),
        "bytes_in": rate(last.bytes_in, now.bytes_in),
        "bytes_out": rate(last.bytes_out, now.bytes_out),
        "handshake_failures": failures,
        "handshake_failures_rate": rate(last.failures, now.failures),
        "broker_ms": info.is_ok().then_some(broker_ms),
        "broker_error": info.as_ref().err().map(ToString::to_string),
        "nodes": nodes,
        "unanswered": unanswered,
    })
}
