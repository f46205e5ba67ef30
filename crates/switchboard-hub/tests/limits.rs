//! The limits on what one client may do, as a client sees them: its message rate, its channels,
//! and the hint a restarting hub gives it before closing (a Pusher client, the Close alone).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{CloseCode, Message, Server};
use switchboard_hub::pusher::{PusherApp, PusherApps};
use switchboard_hub::{Hub, HubConfig, LocalBroker, MessageRate, RESTART_REASON, restart_hint};
use tokio::sync::oneshot;

#[path = "support/client.rs"]
mod client;
mod support;
use client::{frame, join};
use support::hub_and_addr;

fn rate(per_second: f64, burst: u32) -> HubConfig {
    let mut config = HubConfig::default();
    config.message_rate = Some(MessageRate { per_second, burst });
    config
}

fn metrics(hub: &Hub) -> String {
    let mut out = String::new();
    hub.render_metrics(&mut out);
    out
}

#[tokio::test]
async fn a_client_over_its_rate_is_told_and_its_message_dropped_then_closed_if_it_goes_on() {
    // Almost no refill while the test runs: 3 allowed, 3 refused, then the close.
    let (hub, addr) = hub_and_addr(rate(0.01, 3)).await;
    let mut flood = join(addr, "flood").await;
    let mut watcher = join(addr, "watcher").await;
    let subscribe = json!({"op": "subscribe", "id": 1, "channel": "news"}).to_string();
    watcher.send(Message::text(subscribe)).await.unwrap();
    assert_eq!(frame(&mut watcher).await["type"], "subscribed");

    for n in 0..6 {
        let publish = json!({"op": "publish", "id": n, "channel": "news", "data": n});
        flood
            .send(Message::text(publish.to_string()))
            .await
            .unwrap();
    }
    let mut acked = Vec::new();
    let mut limited = Vec::new();
    for _ in 0..6 {
        let reply = frame(&mut flood).await;
        match reply["type"].as_str() {
            Some("ack") => acked.push(reply["id"].clone()),
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited.push(reply["id"].clone());
            }
            _ => panic!("unexpected {reply}"),
        }
    }
    assert_eq!(acked, [0, 1, 2]);
    assert_eq!(limited, [3, 4, 5]);
    // Only what was acked reached the channel.
    for n in 0..3 {
        let message = frame(&mut watcher).await;
        assert_eq!(message["type"], "message");
        assert_eq!(message["data"], n);
    }

    flood.send(Message::text("{}")).await.unwrap();
    assert_eq!(frame(&mut flood).await, json!({"closed": 1008}));
    let text = metrics(&hub);
    assert!(
        text.contains("switchboard_hub_rate_limited_total 3"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_hub_rate_limit_closes_total 1"),
        "{text}"
    );

    // The others are served as before.
    let ping = json!({"op": "publish", "id": 9, "channel": "news", "data": "still here"});
    watcher.send(Message::text(ping.to_string())).await.unwrap();
    let mut seen: Vec<Value> = Vec::new();
    for _ in 0..2 {
        seen.push(frame(&mut watcher).await);
    }
    assert!(seen.iter().any(|f| f["type"] == "ack"), "{seen:?}");
}

#[tokio::test]
async fn without_a_rate_a_fast_client_is_never_refused() {
    let (hub, addr) = hub_and_addr(HubConfig::default()).await;
    let mut fast = join(addr, "fast").await;
    for n in 0..200 {
        let publish = json!({"op": "publish", "id": n, "channel": "c", "data": n});
        fast.send(Message::text(publish.to_string())).await.unwrap();
    }
    for _ in 0..200 {
        assert_eq!(frame(&mut fast).await["type"], "ack");
    }
    assert!(metrics(&hub).contains("switchboard_hub_rate_limited_total 0"));
}

#[tokio::test]
async fn a_subscribe_past_the_limit_is_refused_and_counted() {
    let mut config = HubConfig::default();
    config.max_subscriptions = 2;
    let (hub, addr) = hub_and_addr(config).await;
    let mut ws = join(addr, "ann").await;
    for (id, channel) in ["a", "b", "c"].iter().enumerate() {
        let subscribe = json!({"op": "subscribe", "id": id, "channel": channel});
        ws.send(Message::text(subscribe.to_string())).await.unwrap();
    }
    assert_eq!(frame(&mut ws).await["type"], "subscribed");
    assert_eq!(frame(&mut ws).await["type"], "subscribed");
    let refused = frame(&mut ws).await;
    assert_eq!(refused["code"], "too_many_subscriptions", "{refused}");
    assert_eq!(refused["id"], 2);
    assert!(metrics(&hub).contains("switchboard_hub_subscription_limit_total 1"));
}

#[tokio::test]
async fn a_restarting_hub_tells_each_client_when_to_come_back_then_closes_with_1012() {
    let mut config = HubConfig::default();
    config.pusher = PusherApps::new(vec![PusherApp::new("1", "app-key", "app-secret")]).unwrap();
    let hub = Hub::new(Arc::new(LocalBroker::default()), config)
        .await
        .unwrap();
    let floor = Duration::from_millis(2000);
    let spread = Duration::from_millis(3000);
    let server = Server::builder()
        .shutdown_close(CloseCode::SERVICE_RESTART, RESTART_REASON)
        .shutdown_message(restart_hint(floor, spread))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = hub.clone();
    let task = tokio::spawn(server.serve_with_shutdown(
        move |ws, request| {
            let hub = serving.clone();
            async move {
                if request.uri().path().starts_with("/app/") {
                    hub.serve_pusher(ws, request).await;
                } else {
                    support::serving::serve(hub, ws, request).await;
                }
            }
        },
        async {
            let _ = stopped.await;
        },
    ));
    let mut clients = Vec::new();
    for n in 0..20 {
        clients.push(join(addr, &format!("c{n}")).await);
    }
    let (mut pusher, _) = switchboard::connect(&format!("ws://{addr}/app/app-key?protocol=7"))
        .await
        .unwrap();
    let established = frame(&mut pusher).await;
    assert_eq!(established["event"], "pusher:connection_established");
    stop.send(()).unwrap();
    // A Pusher client gets the Close alone: the hint is not a Pusher frame, and pusher-js
    // throws on a frame without an event.
    assert_eq!(frame(&mut pusher).await, json!({"closed": 1012}));
    let mut waits = Vec::new();
    for ws in &mut clients {
        let hint = frame(ws).await;
        assert_eq!(hint["type"], "disconnect", "{hint}");
        assert_eq!(hint["code"], 1012);
        let wait = hint["retry_after_ms"].as_u64().unwrap();
        assert!((2000..5000).contains(&wait), "{wait}");
        waits.push(wait);
        assert_eq!(frame(ws).await, json!({"closed": 1012}));
    }
    // Spread out: 20 draws over 3 s are not all within one 300 ms window (the odds of that by
    // chance are below 1e-15).
    let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(max - min > 300, "{waits:?}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
