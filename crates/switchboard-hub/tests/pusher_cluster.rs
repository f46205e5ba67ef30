//! Pusher apps served by three nodes sharing one `redis-server` (started here on a free
//! loopback port): client events and the HTTP API's events cross nodes and skip the socket
//! excluded wherever it is; a presence member is its user once across nodes; the HTTP API on
//! any node answers for the whole deployment, and ends a user's connections on every node;
//! and the app's webhooks tell occupancy and members once for the deployment.
#![cfg(feature = "redis")]

mod support;

#[path = "support/pusher.rs"]
mod pusher_support;
use pusher_support::{Pusher, STEP, app, apps, call, data_of, hook_receiver};

#[path = "support/ports.rs"]
mod ports;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::Redis;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_hub::pusher::PusherApps;
use switchboard_hub::pusher::signature::channel_auth;
use switchboard_hub::{Hub, HubConfig, PusherApi, RedisBroker, RedisConfig};

/// A node on `redis` serving `apps`, and its HTTP API.
async fn node(redis: &Redis, apps: PusherApps) -> (PusherApi, SocketAddr) {
    let (hub, addr) = node_hub(redis, apps).await;
    (PusherApi::new(hub).unwrap(), addr)
}

async fn node_hub(redis: &Redis, apps: PusherApps) -> (Hub, SocketAddr) {
    let broker = RedisBroker::connect(RedisConfig::new(redis.url()))
        .await
        .unwrap();
    let mut config = HubConfig::default();
    config.pusher = apps;
    support::hub_on(Arc::new(broker), config).await
}

/// Waits until `presence` of app 1's `channel` on `hub`'s deployment has `n` connections.
async fn until_present(hub: &Hub, channel: &str, n: usize) {
    let channel = format!("pusher:1:{channel}");
    let deadline = tokio::time::Instant::now() + STEP;
    while hub.presence(&channel).await.unwrap().len() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} present on {channel}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_cross_nodes_and_skip_the_socket_excluded_wherever_it_is() {
    let redis = Redis::start();
    let (api_a, _) = node(&redis, apps()).await;
    let (_, addr_b) = node(&redis, apps()).await;
    let (_, addr_c) = node(&redis, apps()).await;
    let mut on_b = Pusher::connect(addr_b, "app-key").await;
    let mut on_c = Pusher::connect(addr_c, "app-key").await;
    assert_ne!(
        on_b.socket_id.split_once('.').unwrap().0,
        on_c.socket_id.split_once('.').unwrap().0,
        "each node numbers its own socket ids"
    );
    for client in [&mut on_b, &mut on_c] {
        client.subscribe("news", None).await;
        client.subscribe("private-room", None).await;
    }

    // Through the API on a node with no subscriber at all.
    let body = json!({"name": "update", "data": "1", "channels": ["news", "private-room"]});
    let answer = call(&api_a, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(answer, (200, json!({})));
    for client in [&mut on_b, &mut on_c] {
        let expected = json!({"event": "update", "channel": "news", "data": "1"});
        assert_eq!(client.next().await, expected);
        assert_eq!(client.next().await["channel"], "private-room");
    }
    let body = json!({"name": "skip", "data": "2", "channel": "news", "socket_id": on_b.socket_id});
    call(&api_a, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(on_c.next().await["event"], "skip");
    let batch = json!({"batch": [
        {"name": "one", "data": "3", "channel": "news", "socket_id": on_c.socket_id},
        {"name": "two", "data": "4", "channel": "private-room", "info": "subscription_count"},
    ]});
    let (code, answer) = call(
        &api_a,
        "POST",
        "/apps/1/batch_events",
        &[],
        &batch.to_string(),
    )
    .await;
    assert_eq!(
        (code, answer),
        (200, json!({"batch": [{}, {"subscription_count": 2}]})),
        "counted on both nodes"
    );
    assert_eq!(on_b.next().await["event"], "one", "not the skipped one");
    assert_eq!(on_b.next().await["event"], "two");
    assert_eq!(on_c.next().await["event"], "two", "not its own skipped one");

    // A client event from node C reaches node B and is not echoed to its sender.
    let hi = json!({"event": "client-hi", "channel": "private-room", "data": {"from": "c"}});
    on_c.send(hi.clone()).await;
    assert_eq!(on_b.next().await, hi);
    assert!(on_c.sync().await.is_empty(), "not echoed");
    assert!(on_b.sync().await.is_empty());
}

#[tokio::test]
async fn a_presence_member_is_its_user_once_across_nodes() {
    let redis = Redis::start();
    let (hub_a, addr_a) = node_hub(&redis, apps()).await;
    let (_, addr_b) = node_hub(&redis, apps()).await;
    let (_, addr_c) = node_hub(&redis, apps()).await;
    let ann = Some(r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#);
    let mut watcher = Pusher::connect(addr_c, "app-key").await;
    watcher
        .subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    let mut ann_a = Pusher::connect(addr_a, "app-key").await;
    ann_a.subscribe("presence-room", ann).await;
    let added = watcher.next().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id": "ann", "user_info": {"name": "Ann"}})
    );
    let mut ann_b = Pusher::connect(addr_b, "app-key").await;
    let ok = ann_b.subscribe("presence-room", ann).await;
    let mut members = data_of(&ok)["presence"].take();
    let ids = members["ids"].as_array_mut().unwrap();
    // Ordered by connection id, which begins with each node's random name.
    ids.sort_by_key(ToString::to_string);
    assert_eq!(
        members,
        json!({
            "ids": ["ann", "bob"],
            "hash": {"bob": null, "ann": {"name": "Ann"}},
            "count": 2,
        }),
        "ann once, with her user_info"
    );
    until_present(&hub_a, "presence-room", 3).await;
    assert!(
        watcher.sync().await.is_empty(),
        "no second member_added for ann's connection on another node"
    );
    let mut late = Pusher::connect(addr_a, "app-key").await;
    let ok = late
        .subscribe("presence-room", Some(r#"{"user_id":"cy"}"#))
        .await;
    assert_eq!(data_of(&ok)["presence"]["count"], 3);
    let added = watcher.next().await;
    assert_eq!(data_of(&added)["user_id"], "cy");

    // Ann's connection on node A leaves: her connection on node B keeps her a member.
    drop(ann_a);
    until_present(&hub_a, "presence-room", 3).await;
    assert!(watcher.sync().await.is_empty(), "no member_removed yet");
    drop(ann_b);
    let removed = watcher.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id": "ann"}));
    let removed = late.next().await;
    assert_eq!(
        data_of(&removed),
        json!({"user_id": "ann"}),
        "on node A too"
    );
}

#[tokio::test]
async fn the_http_api_of_any_node_answers_for_every_node() {
    let redis = Redis::start();
    let (api_a, _) = node(&redis, apps()).await;
    let (_, addr_b) = node(&redis, apps()).await;
    let (_, addr_c) = node(&redis, apps()).await;
    let mut ann_b = Pusher::connect(addr_b, "app-key").await;
    let mut ann_c = Pusher::connect(addr_c, "app-key").await;
    let mut bob_c = Pusher::connect(addr_c, "app-key").await;
    let ann = Some(r#"{"user_id":"ann"}"#);
    ann_b.subscribe("presence-room", ann).await;
    ann_c.subscribe("presence-room", ann).await;
    bob_c
        .subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    ann_b.subscribe("news", None).await;
    bob_c.subscribe("news", None).await;
    bob_c.subscribe("private-c", None).await;

    let (code, all) = call(&api_a, "GET", "/apps/1/channels", &[], "").await;
    assert_eq!(
        (code, all),
        (
            200,
            json!({"channels": {"news": {}, "presence-room": {}, "private-c": {}}})
        )
    );
    let counted = [
        ("filter_by_prefix", "presence-"),
        ("info", "user_count,subscription_count"),
    ];
    let (_, presence) = call(&api_a, "GET", "/apps/1/channels", &counted, "").await;
    assert_eq!(
        presence,
        json!({"channels": {"presence-room": {"user_count": 2, "subscription_count": 3}}})
    );
    let info = [("info", "subscription_count")];
    let (_, news) = call(&api_a, "GET", "/apps/1/channels/news", &info, "").await;
    assert_eq!(news, json!({"occupied": true, "subscription_count": 2}));
    let (_, users) = call(
        &api_a,
        "GET",
        "/apps/1/channels/presence-room/users",
        &[],
        "",
    )
    .await;
    let mut ids: Vec<Value> = users["users"].as_array().unwrap().clone();
    ids.sort_by_key(|user| user["id"].to_string());
    assert_eq!(ids, [json!({"id": "ann"}), json!({"id": "bob"})]);

    bob_c
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "private-c"}}))
        .await;
    bob_c.sync().await;
    let (_, gone) = call(&api_a, "GET", "/apps/1/channels/private-c", &[], "").await;
    assert_eq!(gone, json!({"occupied": false}));
}

#[tokio::test]
async fn terminating_a_user_on_one_node_closes_its_connections_on_every_node() {
    let redis = Redis::start();
    let (api_a, _) = node(&redis, apps()).await;
    let (_, addr_b) = node(&redis, apps()).await;
    let (_, addr_c) = node(&redis, apps()).await;
    let ann = Some(r#"{"user_id":"ann"}"#);
    let mut ann_b = Pusher::connect(addr_b, "app-key").await;
    let mut ann_c = Pusher::connect(addr_c, "app-key").await;
    let mut bob = Pusher::connect(addr_c, "app-key").await;
    ann_b.subscribe("presence-room", ann).await;
    ann_c.subscribe("presence-x", ann).await;
    bob.subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    let (code, answer) = call(
        &api_a,
        "POST",
        "/apps/1/users/ann/terminate_connections",
        &[],
        "",
    )
    .await;
    assert_eq!((code, answer), (200, json!({})));
    for ann in [&mut ann_b, &mut ann_c] {
        let mut frame = ann.next().await;
        // Bob's arrival, when it came before the end.
        while frame["event"] == "pusher_internal:member_added" {
            frame = ann.next().await;
        }
        assert_eq!(frame, json!({"closed": 4009}));
    }
    let removed = bob.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert!(bob.sync().await.is_empty(), "bob stays");
}

/// Waits for webhook events until `done` holds for those received so far.
async fn hooks_until(
    hooks: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: &mut Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) {
    while !done(seen) {
        let hook = tokio::time::timeout(STEP, hooks.recv()).await;
        let hook = hook.unwrap_or_else(|_| panic!("timed out; webhooks so far: {seen:?}"));
        seen.push(hook.unwrap());
    }
}

/// The `name` hooks of `user` (none: of no user) on `presence-room`.
fn count(seen: &[Value], name: &str, user: Option<&str>) -> usize {
    let user = user.map_or(Value::Null, |user| json!(user));
    (seen.iter())
        .filter(|hook| hook["channel"] == "presence-room" && hook["name"] == name)
        .filter(|hook| hook.get("user_id").unwrap_or(&Value::Null) == &user)
        .count()
}

/// The client events told so far.
fn marks(seen: &[Value]) -> usize {
    (seen.iter())
        .filter(|hook| hook["name"] == "client_event")
        .count()
}

/// A client of each node on `private-mark`: once a client event from each is told, each
/// node's earlier hooks were (a node sends its hooks in order).
struct Markers(Vec<Pusher>);

impl Markers {
    /// Markers on `addrs`, subscribed all at once: the first subscribers of a channel on
    /// several nodes.
    async fn on(addrs: &[SocketAddr]) -> Self {
        let mut markers = Vec::new();
        for addr in addrs {
            markers.push(Pusher::connect(*addr, "app-key").await);
        }
        for marker in &mut markers {
            let auth = channel_auth(&app(), &marker.socket_id, "private-mark", None);
            let data = json!({"channel": "private-mark", "auth": auth});
            marker
                .send(json!({"event": "pusher:subscribe", "data": data}))
                .await;
        }
        for marker in &mut markers {
            let ok = marker.next().await;
            assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        }
        Self(markers)
    }

    async fn mark(
        &mut self,
        hooks: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
        seen: &mut Vec<Value>,
    ) {
        let wanted = marks(seen) + self.0.len();
        for marker in &mut self.0 {
            let mark = json!({"event": "client-mark", "channel": "private-mark", "data": {}});
            marker.send(mark).await;
        }
        hooks_until(hooks, seen, |s| marks(s) == wanted).await;
    }
}

#[tokio::test]
async fn webhooks_tell_occupancy_and_members_once_for_the_deployment() {
    let (url, mut hooks) = hook_receiver().await;
    let hooked = || PusherApps::new(vec![app().with_webhook(url.parse().unwrap())]).unwrap();
    let redis = Redis::start();
    let (hub_a, addr_a) = node_hub(&redis, hooked()).await;
    let (_, addr_b) = node_hub(&redis, hooked()).await;
    let (_, addr_c) = node_hub(&redis, hooked()).await;
    let mut markers = Markers::on(&[addr_a, addr_b, addr_c]).await;
    let ann = Some(r#"{"user_id":"ann"}"#);
    let mut seen = Vec::new();

    let mut ann_a = Pusher::connect(addr_a, "app-key").await;
    ann_a.subscribe("presence-room", ann).await;
    hooks_until(&mut hooks, &mut seen, |s| {
        count(s, "member_added", Some("ann")) == 1
    })
    .await;
    let mut ann_b = Pusher::connect(addr_b, "app-key").await;
    ann_b.subscribe("presence-room", ann).await;
    let mut bob_c = Pusher::connect(addr_c, "app-key").await;
    bob_c
        .subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    until_present(&hub_a, "presence-room", 3).await;
    markers.mark(&mut hooks, &mut seen).await;
    let marks_occupied = (seen.iter())
        .filter(|hook| hook["name"] == "channel_occupied" && hook["channel"] == "private-mark")
        .count();
    // At once on three nodes: told, perhaps more than once, never not at all.
    assert!(marks_occupied >= 1, "{seen:?}");
    assert_eq!(count(&seen, "channel_occupied", None), 1, "{seen:?}");
    assert_eq!(count(&seen, "member_added", Some("ann")), 1, "{seen:?}");
    assert_eq!(count(&seen, "member_added", Some("bob")), 1, "{seen:?}");

    // Ann's connection on node A leaves, and node C's only subscriber: the channel is still
    // occupied, and ann still a member, on node B.
    drop(ann_a);
    drop(bob_c);
    until_present(&hub_a, "presence-room", 1).await;
    markers.mark(&mut hooks, &mut seen).await;
    assert_eq!(count(&seen, "member_removed", Some("bob")), 1, "{seen:?}");
    assert_eq!(count(&seen, "member_removed", Some("ann")), 0, "{seen:?}");
    assert_eq!(count(&seen, "channel_vacated", None), 0, "{seen:?}");

    drop(ann_b);
    hooks_until(&mut hooks, &mut seen, |s| {
        count(s, "channel_vacated", None) == 1
    })
    .await;
    markers.mark(&mut hooks, &mut seen).await;
    assert_eq!(count(&seen, "member_removed", Some("ann")), 1, "{seen:?}");
    assert_eq!(count(&seen, "channel_vacated", None), 1, "{seen:?}");

    // Ann on two nodes again, both connections ended at once: one member_removed.
    let mut ann_a = Pusher::connect(addr_a, "app-key").await;
    let mut ann_b = Pusher::connect(addr_b, "app-key").await;
    let mut bob_c = Pusher::connect(addr_c, "app-key").await;
    ann_a.subscribe("presence-room", ann).await;
    ann_b.subscribe("presence-room", ann).await;
    bob_c
        .subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    until_present(&hub_a, "presence-room", 3).await;
    let api = PusherApi::new(hub_a.clone()).unwrap();
    let path = "/apps/1/users/ann/terminate_connections";
    assert_eq!(call(&api, "POST", path, &[], "").await.0, 200);
    until_present(&hub_a, "presence-room", 1).await;
    markers.mark(&mut hooks, &mut seen).await;
    assert_eq!(count(&seen, "member_added", Some("ann")), 2, "{seen:?}");
    assert_eq!(count(&seen, "member_removed", Some("ann")), 2, "{seen:?}");
}
