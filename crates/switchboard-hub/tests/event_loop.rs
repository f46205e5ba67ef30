//! What serving from the event loop (`Hub::serve_on_event_loop`) changes for a client, and
//! what it must not: an idle one holds no task, one that sends more than its session can hold
//! while busy is closed with 1013, and one too slow for its send queue is ended as in a task.
//! The rest of the hub's tests run on the loop too (see `support/serving.rs`).

#[path = "support/laggard.rs"]
mod laggard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchboard::{CloseCode, MaybeTlsStream, Message, Server, ServerBuilder, WebSocket};
use switchboard_hub::{
    BoxFuture, ClientInfo, HistoryConfig, Hooks, Hub, HubConfig, LocalBroker, PublishDecision,
};
use tokio::sync::Semaphore;

const STEP: Duration = Duration::from_secs(5);

/// A hub with `config` served on a free loopback port, from the loop or in tasks.
async fn serve(config: HubConfig, on_loop: bool) -> (Hub, SocketAddr) {
    serve_on(
        Server::builder(),
        Arc::new(LocalBroker::default()),
        config,
        on_loop,
    )
    .await
}

async fn serve_on(
    builder: ServerBuilder,
    broker: Arc<LocalBroker>,
    config: HubConfig,
    on_loop: bool,
) -> (Hub, SocketAddr) {
    let hub = Hub::new(broker, config).await.unwrap();
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let serving = hub.clone();
    tokio::spawn(server.serve(move |ws, request| {
        let hub = serving.clone();
        async move {
            if on_loop {
                hub.serve_on_event_loop(ws, request).await;
            } else {
                hub.serve(ws, request).await;
            }
        }
    }));
    (hub, addr)
}

type Client = WebSocket<MaybeTlsStream>;

async fn connect(addr: SocketAddr, name: &str) -> Client {
    let url = format!("ws://{addr}/ws?name={name}");
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "connected");
    ws
}

async fn send(ws: &mut Client, request: Value) {
    ws.send(Message::text(request.to_string())).await.unwrap();
}

/// The next frame that is not a join.
async fn next(ws: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(STEP, ws.recv()).await.unwrap();
        let Some(Ok(Message::Text(text))) = message else {
            panic!("{message:?}");
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] != "join" {
            return frame;
        }
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The tasks that `CLIENTS` subscribed clients hold once they got a publication and went
/// quiet.
async fn tasks_of_idle_clients(on_loop: bool) -> usize {
    let (_hub, addr) = serve(HubConfig::default(), on_loop).await;
    let before = alive_tasks();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut ws = connect(addr, &format!("c{i}")).await;
        send(
            &mut ws,
            json!({"op": "subscribe", "channel": "room", "id": 1}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "subscribed");
        clients.push(ws);
    }
    send(
        &mut clients[0],
        json!({"op": "publish", "channel": "room", "data": 1}),
    )
    .await;
    for ws in &mut clients {
        assert_eq!(next(ws).await["data"], 1);
    }
    // A session's task ends soon after its last reply: wait for them, boundedly.
    for _ in 0..100 {
        if alive_tasks().saturating_sub(before) < CLIENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alive_tasks().saturating_sub(before)
}

const CLIENTS: usize = 40;

#[tokio::test]
async fn an_idle_subscribed_client_on_the_event_loop_holds_no_task() {
    let tasks = tasks_of_idle_clients(true).await;
    // The loop's own.
    assert!(
        tasks <= 2,
        "{tasks} tasks for {CLIENTS} idle clients on the loop"
    );
}

/// What the test above would see in tasks: each client's session and socket.
#[tokio::test]
async fn in_tasks_an_idle_subscribed_client_holds_two() {
    let tasks = tasks_of_idle_clients(false).await;
    assert!(
        tasks >= 2 * CLIENTS,
        "{tasks} tasks for {CLIENTS} clients in tasks"
    );
}

/// Holds each publish until a permit lets it through, so that a session stays busy.
#[derive(Debug)]
struct HeldPublishes(Semaphore);

impl Hooks for HeldPublishes {
    fn publish<'a>(
        &'a self,
        _: &'a ClientInfo,
        _: &'a str,
        _: &'a RawValue,
    ) -> BoxFuture<'a, PublishDecision> {
        Box::pin(async {
            if let Ok(permit) = self.0.acquire().await {
                permit.forget();
            }
            PublishDecision::Allow
        })
    }
}

/// A loop cannot stop reading one connection: what arrives while the session is busy waits
/// in its seat, up to a MiB, and a client past that is closed with 1013, saying why.
#[tokio::test]
async fn a_client_sending_over_a_mib_while_its_session_is_busy_is_closed_with_1013() {
    let hooks = Arc::new(HeldPublishes(Semaphore::new(0)));
    let mut config = HubConfig::default();
    config.hooks = Some(hooks.clone());
    let (_hub, addr) = serve(config, true).await;
    let mut ws = connect(addr, "flooder").await;
    let data = "x".repeat(60 * 1024);
    // The first waits on the hook; the 18 after it (over a MiB) wait in the seat.
    for id in 0..19 {
        let request = json!({"op": "publish", "channel": "room", "data": data, "id": id});
        if ws.send(Message::text(request.to_string())).await.is_err() {
            break;
        }
    }
    let close = loop {
        match tokio::time::timeout(STEP, ws.recv()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(
        close.reason.as_str(),
        "requests arrive faster than they are answered"
    );

    // Under the MiB, the requests wait and are answered in order once the hook lets go.
    let hooks = Arc::new(HeldPublishes(Semaphore::new(0)));
    let mut config = HubConfig::default();
    config.hooks = Some(hooks.clone());
    let (_hub, addr) = serve(config, true).await;
    let mut ws = connect(addr, "patient").await;
    for id in 0..10 {
        send(
            &mut ws,
            json!({"op": "publish", "channel": "room", "data": data, "id": id}),
        )
        .await;
    }
    hooks.0.add_permits(10);
    for id in 0..10 {
        let ack = next(&mut ws).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["id"], id);
    }
}

/// A subscriber that stops reading is ended as in a task: a gap-free prefix, the retry hint
/// past its full queue, then 1013, and the hub counts it as lagging.
#[tokio::test]
async fn a_subscriber_that_stops_reading_gets_the_retry_hint_and_1013() {
    const TOTAL: u64 = 10_000;
    let history = HistoryConfig {
        size: TOTAL as usize,
        ttl: None,
    };
    let builder = Server::builder().max_send_queue(64 << 10);
    let broker = Arc::new(LocalBroker::new(history));
    let (hub, addr) = serve_on(builder, broker, HubConfig::default(), true).await;
    let mut slow = connect(addr, "slow").await;
    send(
        &mut slow,
        json!({"op": "subscribe", "channel": "firehose", "id": 1}),
    )
    .await;
    assert_eq!(next(&mut slow).await["type"], "subscribed");

    // Past what the kernel's socket buffers hold on loopback, and the 64 KiB queue.
    let mut writer = connect(addr, "writer").await;
    let payload = "x".repeat(4000);
    for i in 1..=TOTAL {
        let request = json!({"op": "publish", "channel": "firehose", "data": payload, "id": i});
        send(&mut writer, request).await;
        if i % 100 == 0 {
            // Acks in order: the publications so far were fanned out.
            while next(&mut writer).await["id"] != i {}
            if hub.lagged() > 0 {
                break;
            }
        }
    }
    assert_eq!(hub.lagged(), 1);

    let (last, hint, close) = laggard::read_to_the_close(&mut slow).await;
    let close = close.unwrap();
    assert_eq!(close.code, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(close.reason.as_str(), "too slow");
    assert_eq!(hint["code"], 1013, "{hint}");
    assert!(
        hint["retry_after_ms"].as_u64().is_some_and(|ms| ms < 1000),
        "{hint}"
    );
    assert!(last > 0, "received {last}");
}
