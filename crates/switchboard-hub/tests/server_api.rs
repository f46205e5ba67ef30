//! The hub's server-side API on one node over the local broker: publish (idempotent too),
//! broadcast, history, presence, channels, info, and what it does to live WebSocket clients
//! (server-side subscribe, unsubscribe, disconnect).

use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;
use switchboard::{CloseCode, Message};
use switchboard_hub::{HubConfig, HubError, Target};

#[path = "support/client.rs"]
mod client;
mod support;

use client::{frame, join};
use support::hub_and_addr;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.into()).unwrap()
}

#[tokio::test]
async fn server_side_subscribe_publish_and_unsubscribe_reach_every_connection_of_the_user() {
    let (hub, addr) = hub_and_addr(HubConfig::default()).await;
    let mut ann1 = join(addr, "ann").await;
    let mut ann2 = join(addr, "ann").await;
    let mut bob = join(addr, "bob").await;
    assert_eq!(hub.subscribe("ann", "user:ann").await.unwrap(), 2);
    for ws in [&mut ann1, &mut ann2] {
        let subscribed = frame(ws).await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        assert_eq!(subscribed["channel"], "user:ann");
        assert!(subscribed.get("id").is_none());
    }
    assert_eq!(hub.subscribe("ann", "user:ann").await.unwrap(), 2, "again");
    assert_eq!(hub.subscribe("nobody", "user:ann").await.unwrap(), 0);

    let position = hub
        .publish("user:ann", raw(r#"{"shipped":true}"#), None)
        .await
        .unwrap();
    assert_eq!(position.offset, 1);
    for ws in [&mut ann1, &mut ann2] {
        let message = frame(ws).await;
        assert_eq!(message["type"], "message");
        assert_eq!(message["data"], json!({"shipped": true}));
        assert_eq!(
            message["from"],
            json!({"user": "", "conn": "", "authenticated": true})
        );
    }
    let channels = hub.channels(Some("user:*")).await.unwrap().channels;
    assert_eq!((channels.len(), channels[0].subscribers), (1, 2));
    // The node's own figures: one channel, one publication fanned out to its two subscribers,
    // and the three presence joins they were sent between them.
    let node = hub.info().await.unwrap().nodes.remove(0);
    let figures = (node.channels, node.publications, node.deliveries);
    assert_eq!(figures, (1, 1, 2 + 3), "{node:?}");
    assert!(node.started > 0 && node.lagged == 0, "{node:?}");
    assert!(
        hub.channels(Some("room*"))
            .await
            .unwrap()
            .channels
            .is_empty()
    );
    let present = hub.presence("user:ann").await.unwrap();
    assert_eq!(present.len(), 2);
    let history = hub.history("user:ann", None, None).await.unwrap();
    assert_eq!(history.publications.len(), 1);
    assert_eq!(history.position, position);

    assert_eq!(hub.unsubscribe("ann", "user:ann").await.unwrap(), 2);
    for ws in [&mut ann1, &mut ann2] {
        assert_eq!(frame(ws).await["type"], "unsubscribed");
    }
    assert!(hub.channels(None).await.unwrap().channels.is_empty());
    assert_eq!(hub.unsubscribe("ann", "user:ann").await.unwrap(), 0);

    let info = hub.info().await.unwrap();
    assert_eq!(info.connections, 3);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.nodes.len(), 1, "one node: {info:?}");
    assert_eq!(info.nodes[0].connections, 3);
    let bye = CloseCode::from(4001);
    let closed = hub.disconnect(Target::User("ann"), bye, "bye").await;
    assert_eq!(closed.unwrap(), 2);
    for ws in [&mut ann1, &mut ann2] {
        assert_eq!(frame(ws).await, json!({"closed": 4001}));
    }
    assert!(hub.channels(None).await.unwrap().channels.is_empty());
    assert!(matches!(
        hub.disconnect(Target::User("bob"), CloseCode::from(1005), "")
            .await,
        Err(HubError::Invalid { field: "code", .. })
    ));
    bob.send(Message::text(r#"{"op":"presence","channel":"x","id":1}"#))
        .await
        .unwrap();
    assert_eq!(
        frame(&mut bob).await["type"],
        "presence",
        "bob is still served"
    );
}

#[tokio::test]
async fn an_idempotent_publish_is_delivered_once_within_its_window() {
    let mut config = HubConfig::default();
    config.idempotency_window = Duration::from_millis(200);
    let (hub, addr) = hub_and_addr(config).await;
    let mut ann = join(addr, "ann").await;
    hub.subscribe("ann", "orders").await.unwrap();
    assert_eq!(frame(&mut ann).await["type"], "subscribed");
    let first = hub.publish("orders", raw("1"), Some("k")).await.unwrap();
    let again = hub.publish("orders", raw("1"), Some("k")).await.unwrap();
    assert_eq!(again, first);
    let other = hub.publish("orders", raw("2"), Some("k2")).await.unwrap();
    assert_eq!(other.offset, 2);
    assert_eq!(frame(&mut ann).await["offset"], 1);
    assert_eq!(
        frame(&mut ann).await["offset"],
        2,
        "the repeat was not delivered"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = hub.publish("orders", raw("1"), Some("k")).await.unwrap();
    assert_eq!(later.offset, 3, "the window has ended");
    assert!(matches!(
        hub.publish("orders", raw("1"), Some("")).await,
        Err(HubError::Invalid {
            field: "idempotency_key",
            ..
        })
    ));
}

#[tokio::test]
async fn broadcast_checks_every_channel_first_and_answers_one_result_each() {
    let mut config = HubConfig::default();
    config.max_data_size = 8;
    let (hub, _) = hub_and_addr(config).await;
    let channels = ["a".to_owned(), "b".to_owned()];
    let results = hub.broadcast(&channels, raw("true")).await.unwrap();
    let offsets: Vec<u64> = results.into_iter().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, [1, 1]);
    let bad = ["a".to_owned(), "has space".to_owned()];
    assert!(matches!(
        hub.broadcast(&bad, raw("1")).await,
        Err(HubError::InvalidChannel { .. })
    ));
    assert_eq!(
        hub.history("a", None, None).await.unwrap().position.offset,
        1
    );
    assert!(matches!(
        hub.publish("a", raw(r#""123456789""#), None).await,
        Err(HubError::TooLarge { size: 11, limit: 8 })
    ));
    let since = hub.history("a", Some(10), Some(1)).await.unwrap();
    assert!(since.publications.is_empty());
}

#[tokio::test]
async fn clients_lists_each_connection_with_its_channels_searchable_by_user() {
    let (hub, addr) = hub_and_addr(HubConfig::default()).await;
    let _ann = join(addr, "Ann").await;
    let mut joanna = join(addr, "joanna").await;
    let _bob = join(addr, "bob").await;
    let subscribe = json!({"op": "subscribe", "channel": "room", "id": 1});
    joanna
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    assert_eq!(frame(&mut joanna).await["type"], "subscribed");

    let all = hub.clients(None, 100).await.unwrap();
    assert_eq!(all.clients.len(), 3);
    assert_eq!(all.unanswered, 0);
    let found = hub.clients(Some("ANN"), 100).await.unwrap().clients;
    let mut users: Vec<&str> = found.iter().map(|c| c.user.as_str()).collect();
    users.sort_unstable();
    assert_eq!(users, ["Ann", "joanna"], "a part of the name, any case");
    let joanna = found.iter().find(|c| c.user == "joanna").unwrap();
    assert_eq!(
        joanna.subscriptions.as_deref(),
        Some(&["room".to_owned()][..])
    );
    assert!(joanna.conn.starts_with(&joanna.node));
    let address = joanna.address.as_deref().unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(!joanna.compression, "the test client offers no deflate");
    assert!(joanna.since > 0);
    assert_eq!(hub.clients(Some("ann"), 1).await.unwrap().clients.len(), 1);
    assert!(
        hub.clients(Some("zed"), 100)
            .await
            .unwrap()
            .clients
            .is_empty()
    );

    // What the listing finds, disconnect reaches.
    let conn = joanna.conn.clone();
    assert_eq!(
        hub.disconnect(Target::Conn(&conn), CloseCode::from(4002), "bye")
            .await
            .unwrap(),
        1
    );
}
