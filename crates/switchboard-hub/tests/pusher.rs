//! The Pusher protocol on `/app/{key}` over real WebSocket connections: the connection's
//! socket id, public, private, presence and cache channels, client events, user sign-in and
//! watchlists, liveness, limits and bad frames, the hub's own protocol kept out of Pusher's
//! channels, and presence, client events, sign-in, watchlists and cache channels across two
//! nodes on one `redis-server`; and Pusher's HTTP API ([`PusherApi`]) called as the official
//! server libraries call it, its events received by those connections; and an app's webhooks
//! in Pusher's format.

#[path = "support/client.rs"]
mod client;
mod support;

#[path = "support/pusher.rs"]
mod pusher_support;
use pusher_support::{Pusher, STEP, api_request, app, apps, call, data_of, hook_receiver, now};

#[cfg(feature = "redis")]
#[path = "support/ports.rs"]
mod ports;

#[path = "support/redis_server.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::hub_and_addr;
use switchboard::{Message, WebSocket};
use switchboard_hub::pusher::signature::{channel_auth, user_auth};
use switchboard_hub::pusher::{PusherApp, PusherApps};
use switchboard_hub::{Hub, HubConfig, MessageRate, PusherApi};

async fn start() -> (Hub, SocketAddr) {
    start_with(HubConfig::default()).await
}

async fn start_with(mut config: HubConfig) -> (Hub, SocketAddr) {
    config.pusher = apps();
    hub_and_addr(config).await
}

#[tokio::test]
async fn a_connection_gets_a_socket_id_and_answers_pings() {
    let (_hub, addr) = start().await;
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (node, n) = a.socket_id.split_once('.').unwrap();
    assert!(digits(node) && digits(n), "{}", a.socket_id);
    assert_ne!(a.socket_id, b.socket_id);
    assert!(a.sync().await.is_empty());
    b.send(json!({"event": "pusher:nope", "data": {}})).await;
    let error = b.next().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("pusher:nope")
    );
}

#[tokio::test]
async fn an_unknown_app_key_is_refused_with_4001() {
    let (_hub, addr) = start().await;
    let url = format!("ws://{addr}/app/nope?protocol=7");
    let (ws, _) = switchboard::connect(&url).await.unwrap();
    let mut client = Pusher {
        ws,
        socket_id: String::new(),
    };
    let error = client.next().await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4001);
    assert_eq!(client.next().await, json!({"closed": 4001}));
}

#[tokio::test]
async fn a_public_channel_gets_what_the_server_publishes() {
    let (hub, addr) = start().await;
    let mut a = Pusher::connect(addr, "app-key").await;
    let ok = a.subscribe("news", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "news");
    let data = RawValue::from_string(r#"{"event":"update","data":"{\"n\":1}"}"#.into()).unwrap();
    hub.publish("pusher:1:news", data, None).await.unwrap();
    let event = a.next().await;
    assert_eq!(
        event,
        json!({"event": "update", "channel": "news", "data": "{\"n\":1}"})
    );
    // Another app's channel of the same name is another channel.
    let other = RawValue::from_string(r#"{"event":"x","data":1}"#.into()).unwrap();
    hub.publish("pusher:2:news", other, None).await.unwrap();
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}))
        .await;
    assert!(a.sync().await.is_empty());
    let data = RawValue::from_string(r#"{"event":"update","data":"2"}"#.into()).unwrap();
    hub.publish("pusher:1:news", data, None).await.unwrap();
    assert!(a.sync().await.is_empty(), "nothing after unsubscribing");
    let not_an_event = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
    let refused = hub.publish("pusher:1:news", not_an_event, None).await;
    assert_eq!(refused.unwrap_err().code(), "bad_request");
}

#[tokio::test]
async fn a_private_channel_needs_the_apps_signature() {
    let (_hub, addr) = start().await;
    let mut a = Pusher::connect(addr, "app-key").await;
    let wrong = PusherApp::new("1", "app-key", "not-the-secret");
    let auth = channel_auth(&wrong, &a.socket_id, "private-a", None);
    a.send(json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": auth}}))
        .await;
    let refused = a.next().await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(refused["channel"], "private-a");
    assert_eq!(refused["data"]["status"], 401);
    assert_eq!(refused["data"]["type"], "AuthError");
    // Signed for another connection.
    let stolen = channel_auth(&app(), "1.1", "private-a", None);
    a.send(json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": stolen}}))
        .await;
    assert_eq!(a.next().await["event"], "pusher:subscription_error");
    a.send(json!({"event": "pusher:subscribe", "data": {"channel": "private-a"}}))
        .await;
    assert_eq!(a.next().await["event"], "pusher:subscription_error");
    let ok = a.subscribe("private-a", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn presence_members_are_users_added_on_their_first_connection_and_removed_after_the_last() {
    let (hub, addr) = start().await;
    let ann = r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#;
    let bob = r#"{"user_id":7}"#;
    let mut a = Pusher::connect(addr, "app-key").await;
    let ok = a.subscribe("presence-room", Some(ann)).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        data_of(&ok),
        json!({"presence": {"ids": ["ann"], "hash": {"ann": {"name": "Ann"}}, "count": 1}})
    );
    let mut b = Pusher::connect(addr, "app-key").await;
    let ok = b.subscribe("presence-room", Some(bob)).await;
    let members = data_of(&ok);
    assert_eq!(members["presence"]["count"], 2);
    assert_eq!(members["presence"]["hash"]["7"], Value::Null);
    let added = a.next().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(data_of(&added), json!({"user_id": "7", "user_info": null}));
    // Ann's second connection: a member already.
    let mut a2 = Pusher::connect(addr, "app-key").await;
    let ok = a2.subscribe("presence-room", Some(ann)).await;
    assert_eq!(data_of(&ok)["presence"]["count"], 2);
    assert!(
        b.sync().await.is_empty(),
        "no member_added for a known user"
    );
    let presence = hub.presence("pusher:1:presence-room").await.unwrap();
    assert_eq!(presence.len(), 3, "the hub sees each connection");
    drop(a2);
    drop(a);
    let removed = b.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id": "ann"}));
    assert!(b.sync().await.is_empty(), "one member_removed for ann");
    let mut c = Pusher::connect(addr, "app-key").await;
    let bad = c
        .subscribe("presence-room", Some(r#"{"user_info":{}}"#))
        .await;
    assert_eq!(bad["event"], "pusher:subscription_error");
}

#[tokio::test]
async fn client_events_reach_the_others_on_the_channel_but_not_the_sender() {
    let (_hub, addr) = start().await;
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;
    a.subscribe("presence-chat", Some(r#"{"user_id":"ann"}"#))
        .await;
    b.subscribe("presence-chat", Some(r#"{"user_id":"bob"}"#))
        .await;
    assert_eq!(a.next().await["event"], "pusher_internal:member_added");
    let typing = json!({"event": "client-typing", "channel": "presence-chat", "data": {"x": [1]}});
    a.send(typing).await;
    assert_eq!(
        b.next().await,
        json!({"event": "client-typing", "channel": "presence-chat", "data": {"x": [1]}, "user_id": "ann"})
    );
    assert!(a.sync().await.is_empty(), "not echoed to the sender");

    // Refused: on a public channel, on a channel it is not on, over the rate.
    a.subscribe("lobby", None).await;
    a.send(json!({"event": "client-x", "channel": "lobby", "data": {}}))
        .await;
    assert_eq!(a.next().await["event"], "pusher:error");
    a.send(json!({"event": "client-x", "channel": "private-elsewhere", "data": {}}))
        .await;
    assert_eq!(a.next().await["event"], "pusher:error");
    for _ in 0..11 {
        a.send(json!({"event": "client-x", "channel": "presence-chat", "data": {}}))
            .await;
    }
    let errors = a.sync().await;
    assert!(
        errors.iter().any(|e| e["data"]["code"] == 4301),
        "{errors:?}"
    );
    // An app without client events.
    let mut quiet = Pusher::connect(addr, "quiet-key").await;
    quiet
        .send(json!({"event": "client-x", "channel": "private-a", "data": {}}))
        .await;
    let error = quiet.next().await;
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled")
    );
}

#[tokio::test]
async fn the_hubs_own_clients_cannot_reach_pusher_channels() {
    let (_hub, addr) = start().await;
    let mut native = client::join(addr, "eve").await;
    for op in ["subscribe", "publish", "history"] {
        let request = json!({"op": op, "channel": "pusher:1:news", "data": {"event": "x", "data": 1}, "id": 1});
        native
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        let refused = client::frame(&mut native).await;
        assert_eq!(refused["type"], "error", "{op}");
        assert_eq!(refused["code"], "invalid_channel", "{op}");
    }
}

#[tokio::test]
async fn a_client_over_the_hubs_message_rate_is_refused_then_closed() {
    let mut config = HubConfig::default();
    // Next to no refill: the burst is all a client gets.
    config.message_rate = Some(MessageRate {
        per_second: 0.001,
        burst: 2,
    });
    let (_hub, addr) = start_with(config).await;
    let mut a = Pusher::connect(addr, "app-key").await;
    for _ in 0..5 {
        a.send(json!({"event": "pusher:ping", "data": {}})).await;
    }
    assert_eq!(a.next().await["event"], "pusher:pong");
    assert_eq!(a.next().await["event"], "pusher:pong");
    let refused = a.next().await;
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("too many messages"),
        "{refused}"
    );
    assert_eq!(
        a.next().await["data"]["message"],
        refused["data"]["message"]
    );
    let closing = a.next().await;
    assert_eq!(closing["data"]["code"], 4100, "{closing}");
    assert_eq!(a.next().await, json!({"closed": 4100}));
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    use switchboard::{Config, Role};
    let mut config = HubConfig::default();
    config.pusher = PusherApps::new(vec![app()]).unwrap();
    let hub = Hub::new(
        std::sync::Arc::new(switchboard_hub::LocalBroker::default()),
        config,
    )
    .await
    .unwrap();
    // In memory, so that paused time only moves when both ends wait.
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = WebSocket::from_raw(
        server_io,
        Role::Server,
        Config::default(),
        Default::default(),
    );
    let mut client = WebSocket::from_raw(
        client_io,
        Role::Client,
        Config::default(),
        Default::default(),
    );
    let request = http::Request::builder()
        .uri("/app/app-key?protocol=7")
        .body(())
        .unwrap();
    let serving = tokio::spawn(async move { hub.serve_pusher(server, request).await });
    async fn next(client: &mut WebSocket<tokio::io::DuplexStream>) -> Value {
        match client.recv().await {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Close(close))) => json!({"closed": close.map(|c| c.code.0)}),
            other => json!({"other": format!("{other:?}")}),
        }
    }
    assert_eq!(
        next(&mut client).await["event"],
        "pusher:connection_established"
    );
    let started = tokio::time::Instant::now();
    assert_eq!(next(&mut client).await["event"], "pusher:ping");
    assert!(
        started.elapsed() >= Duration::from_secs(120),
        "the activity timeout"
    );
    let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
    client.send(Message::text(pong)).await.unwrap();
    // Answered: the next ping comes a whole activity timeout later, and this one is not.
    assert_eq!(next(&mut client).await["event"], "pusher:ping");
    assert!(started.elapsed() >= Duration::from_secs(240));
    let error = next(&mut client).await;
    assert_eq!(error["data"]["code"], 4201, "{error}");
    assert!(
        started.elapsed() >= Duration::from_secs(270),
        "and the pong's"
    );
    assert_eq!(next(&mut client).await, json!({"closed": 4201}));
    serving.await.unwrap();
}

#[tokio::test]
async fn the_http_api_refuses_what_is_not_signed_by_the_app() {
    let (hub, _addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let body = r#"{"name":"e","data":"{}","channel":"news"}"#;
    let status = |request| async { api.handle(request).await.status().as_u16() };
    let at = now();
    let good = api_request("POST", "/apps/1/events", &[], body, "app-secret", at);
    assert_eq!(status(good).await, 200);
    let wrong = api_request("POST", "/apps/1/events", &[], body, "not-the-secret", at);
    let response = api.handle(wrong).await;
    assert_eq!(response.status(), 401);
    let reason = String::from_utf8_lossy(response.body()).into_owned();
    assert!(reason.contains("invalid signature"), "{reason}");
    let stale = api_request("POST", "/apps/1/events", &[], body, "app-secret", at - 601);
    assert_eq!(status(stale).await, 401);
    // The body changed after signing: body_md5 no longer matches.
    let mut tampered = api_request("POST", "/apps/1/events", &[], body, "app-secret", at);
    *tampered.body_mut() = bytes::Bytes::from(body.replace("news", "other"));
    assert_eq!(status(tampered).await, 401);
    let unsigned = http::Request::post("/apps/1/events")
        .body(bytes::Bytes::from(body))
        .unwrap();
    assert_eq!(status(unsigned).await, 401);
    let unknown = api_request("POST", "/apps/9/events", &[], body, "app-secret", at);
    assert_eq!(status(unknown).await, 404);
    // App 2's key signs nothing of app 1.
    let other_app = api_request("POST", "/apps/2/events", &[], body, "app-secret", at);
    assert_eq!(status(other_app).await, 401);
    let (code, _) = call(&api, "POST", "/apps/1/events", &[], "{not json").await;
    assert_eq!(code, 400);
    let big = json!({"name": "e", "data": "x".repeat(10 * 1024 + 1), "channel": "news"});
    let (code, _) = call(&api, "POST", "/apps/1/events", &[], &big.to_string()).await;
    assert_eq!(code, 413);
    let (code, _) = call(&api, "GET", "/apps/1/events", &[], "").await;
    assert_eq!(code, 405);
    let mut small = HubConfig::default();
    small.max_data_size = 100;
    let (small_hub, _) = start_with(small).await;
    let small_api = PusherApi::new(small_hub).unwrap();
    let over = json!({"name": "e", "data": "x".repeat(200), "channel": "news"});
    let (code, _) = call(&small_api, "POST", "/apps/1/events", &[], &over.to_string()).await;
    assert_eq!(code, 413, "the hub's data limit when smaller");
}

#[tokio::test]
async fn triggered_events_reach_subscribers_except_the_socket_excluded() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;
    a.subscribe("news", None).await;
    b.subscribe("news", None).await;
    b.subscribe("private-b", None).await;
    let body = json!({"name": "update", "data": "{\"n\":1}", "channels": ["news", "private-b"]});
    assert_eq!(
        call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await,
        (200, json!({}))
    );
    let event = json!({"event": "update", "channel": "news", "data": "{\"n\":1}"});
    assert_eq!(a.next().await, event);
    assert_eq!(b.next().await, event);
    assert_eq!(b.next().await["channel"], "private-b");
    let body = json!({"name": "e", "data": "2", "channel": "news", "socket_id": a.socket_id});
    call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(b.next().await["data"], "2");
    assert!(
        a.sync().await.is_empty(),
        "the excluded socket gets nothing"
    );

    let batch = json!({"batch": [
        {"name": "one", "data": "1", "channel": "news"},
        {"name": "two", "data": "2", "channel": "private-b", "info": "subscription_count"},
    ]});
    let (code, answer) = call(
        &api,
        "POST",
        "/apps/1/batch_events",
        &[],
        &batch.to_string(),
    )
    .await;
    assert_eq!(
        (code, answer),
        (200, json!({"batch": [{}, {"subscription_count": 1}]}))
    );
    assert_eq!(b.next().await["event"], "one");
    assert_eq!(b.next().await["event"], "two");
    assert_eq!(a.next().await["event"], "one");
    let body = json!({"name": "e", "data": "3", "channel": "news", "info": "subscription_count"});
    let (_, answer) = call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(
        answer,
        json!({"channels": {"news": {"subscription_count": 2}}})
    );
}

#[tokio::test]
async fn the_http_api_lists_occupied_channels_and_presence_users() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut a2 = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;
    a.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    a2.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    b.subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    b.subscribe("news", None).await;
    let mut quiet = Pusher::connect(addr, "quiet-key").await;
    quiet.subscribe("elsewhere", None).await;
    let mut gone = Pusher::connect(addr, "app-key").await;
    gone.subscribe("left", None).await;
    gone.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "left"}}))
        .await;
    gone.sync().await;

    let (code, all) = call(&api, "GET", "/apps/1/channels", &[], "").await;
    assert_eq!(
        (code, all),
        (200, json!({"channels": {"news": {}, "presence-room": {}}}))
    );
    let presence = [
        ("filter_by_prefix", "presence-"),
        ("info", "user_count,subscription_count"),
    ];
    let (_, counted) = call(&api, "GET", "/apps/1/channels", &presence, "").await;
    assert_eq!(
        counted,
        json!({"channels": {"presence-room": {"user_count": 2, "subscription_count": 3}}})
    );
    let (code, _) = call(
        &api,
        "GET",
        "/apps/1/channels",
        &[("info", "user_count")],
        "",
    )
    .await;
    assert_eq!(code, 400, "user_count needs the presence- prefix");

    let info = [("info", "subscription_count,user_count")];
    let (_, room) = call(&api, "GET", "/apps/1/channels/presence-room", &info, "").await;
    assert_eq!(
        room,
        json!({"occupied": true, "subscription_count": 3, "user_count": 2})
    );
    let (_, left) = call(&api, "GET", "/apps/1/channels/left", &[], "").await;
    assert_eq!(left, json!({"occupied": false}));
    let (code, _) = call(
        &api,
        "GET",
        "/apps/1/channels/news",
        &[("info", "user_count")],
        "",
    )
    .await;
    assert_eq!(code, 400);
    let (code, users) = call(&api, "GET", "/apps/1/channels/presence-room/users", &[], "").await;
    assert_eq!(
        (code, users),
        (200, json!({"users": [{"id": "ann"}, {"id": "bob"}]}))
    );
    let (code, _) = call(&api, "GET", "/apps/1/channels/news/users", &[], "").await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn terminating_a_users_connections_closes_each_of_them() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut a2 = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;
    // The same user id on another app is another user.
    let mut other = Pusher::connect(addr, "quiet-key").await;
    a.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    a2.subscribe("presence-x", Some(r#"{"user_id":"ann"}"#))
        .await;
    b.subscribe("presence-room", Some(r#"{"user_id":"bob"}"#))
        .await;
    let auth = channel_auth(
        &PusherApp::new("2", "quiet-key", "s2"),
        &other.socket_id,
        "presence-q",
        Some(r#"{"user_id":"ann"}"#),
    );
    other.send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-q", "auth": auth, "channel_data": r#"{"user_id":"ann"}"#}})).await;
    assert_eq!(
        other.next().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    // Past bob's member_added.
    a.sync().await;
    let (code, answer) = call(
        &api,
        "POST",
        "/apps/1/users/ann/terminate_connections",
        &[],
        "",
    )
    .await;
    assert_eq!((code, answer), (200, json!({})));
    assert_eq!(a.next().await, json!({"closed": 4009}));
    assert_eq!(a2.next().await, json!({"closed": 4009}));
    let removed = b.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert!(b.sync().await.is_empty(), "bob stays");
    assert!(other.sync().await.is_empty(), "another app's ann stays");
}

#[tokio::test]
async fn bad_frames_get_pushers_errors_and_the_connection_stays() {
    let mut config = HubConfig::default();
    config.max_data_size = 1 << 20;
    let (_hub, addr) = start_with(config).await;
    let mut a = Pusher::connect(addr, "app-key").await;
    a.subscribe("lobby", None).await;
    a.subscribe("private-room", None).await;
    let over = "x".repeat(10 * 1024);
    let frames = [
        ("not json".to_owned(), "invalid frame"),
        ("[1,2]".to_owned(), "invalid frame"),
        (r#"{"data":{}}"#.to_owned(), "invalid frame"),
        (
            r#"{"event":"pusher:nope","data":{}}"#.to_owned(),
            "pusher:nope",
        ),
        (
            r#"{"event":"pusher:subscribe","data":{}}"#.to_owned(),
            "no channel",
        ),
        (
            r#"{"event":"pusher:subscribe","data":5}"#.to_owned(),
            "data must be an object",
        ),
        (
            r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#.to_owned(),
            "invalid channel",
        ),
        (
            r#"{"event":"pusher:signin","data":{"auth":"app-key:00"}}"#.to_owned(),
            "no user_data",
        ),
        (
            r#"{"event":"client-x","channel":"lobby","data":{}}"#.to_owned(),
            "private and presence",
        ),
        (
            json!({"event": "client-x", "channel": "private-room", "data": over}).to_string(),
            "Payload too large",
        ),
    ];
    for (frame, why) in frames {
        a.ws.send(Message::text(frame.clone())).await.unwrap();
        let error = a.next().await;
        assert_eq!(error["event"], "pusher:error", "{frame}: {error}");
        let message = error["data"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{frame}: {message}");
        assert!(
            a.sync().await.is_empty(),
            "{frame}: the connection answers pings"
        );
    }
    let typing =
        json!({"event": "client-typing", "channel": "private-room", "data": "x".repeat(100)});
    a.send(typing).await;
    assert!(
        a.sync().await.is_empty(),
        "a client event within the limit is taken"
    );
}

#[tokio::test]
async fn a_signed_in_user_gets_what_the_app_sends_it_on_each_of_its_connections() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let ann_data = r#"{"id":"ann","user_info":{"name":"Ann"}}"#;
    let mut a = Pusher::connect(addr, "app-key").await;
    let mut a2 = Pusher::connect(addr, "app-key").await;
    let mut b = Pusher::connect(addr, "app-key").await;

    // Refused: signed by another secret, for another socket, without an id.
    let forged = user_auth(
        &PusherApp::new("1", "app-key", "nope"),
        &a.socket_id,
        ann_data,
    );
    a.send(json!({"event": "pusher:signin", "data": {"auth": forged, "user_data": ann_data}}))
        .await;
    let refused = a.next().await;
    assert_eq!(refused["event"], "pusher:error");
    assert_eq!(refused["data"]["code"], 4009);
    let stolen = user_auth(&app(), &b.socket_id, ann_data);
    a.send(json!({"event": "pusher:signin", "data": {"auth": stolen, "user_data": ann_data}}))
        .await;
    assert_eq!(a.next().await["data"]["code"], 4009);
    assert_eq!(a.signin(r#"{"user_info":{}}"#).await["data"]["code"], 4009);
    assert!(a.sync().await.is_empty(), "the connection stays");
    let user_channel = json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": "#server-to-user-ann"}});
    a.send(user_channel.clone()).await;
    assert_eq!(
        a.next().await["data"]["status"],
        403,
        "not before signing in"
    );

    let ok = a.signin(ann_data).await;
    assert_eq!(
        ok,
        json!({"event": "pusher:signin_success", "data": {"user_data": ann_data}})
    );
    assert_eq!(
        a2.signin(r#"{"id":"ann"}"#).await["event"],
        "pusher:signin_success"
    );
    assert_eq!(
        b.signin(r#"{"id":"bob"}"#).await["event"],
        "pusher:signin_success"
    );
    assert_eq!(
        b.signin(ann_data).await["data"]["code"],
        4009,
        "bob stays bob"
    );
    // pusher-js subscribes to its user's channel after signing in.
    a.send(user_channel.clone()).await;
    assert_eq!(
        a.next().await,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "#server-to-user-ann", "data": "{}"})
    );
    b.send(user_channel).await;
    assert_eq!(b.next().await["event"], "pusher:subscription_error");

    // sendToUser: the Node library triggers to the user's channel.
    let body = json!({"name": "notice", "data": "{\"n\":1}", "channels": ["#server-to-user-ann"]});
    let (code, _) = call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(code, 200);
    let notice = json!({"event": "notice", "channel": "#server-to-user-ann", "data": "{\"n\":1}"});
    assert_eq!(a.next().await, notice);
    assert_eq!(a2.next().await, notice);
    assert!(b.sync().await.is_empty(), "bob gets nothing of ann's");
    let (_, listed) = call(&api, "GET", "/apps/1/channels", &[], "").await;
    assert_eq!(
        listed,
        json!({"channels": {}}),
        "users' channels are not listed"
    );
    // A client cannot send to a user.
    a.send(json!({"event": "client-x", "channel": "#server-to-user-bob", "data": {}}))
        .await;
    assert_eq!(a.next().await["event"], "pusher:error");
    assert!(b.sync().await.is_empty());

    // A signed-in user's connections are its user's for terminate_connections.
    let (code, _) = call(
        &api,
        "POST",
        "/apps/1/users/ann/terminate_connections",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(a.next().await, json!({"closed": 4009}));
    assert_eq!(a2.next().await, json!({"closed": 4009}));
    assert!(b.sync().await.is_empty(), "bob stays");
}

#[tokio::test]
async fn a_watchlist_is_told_when_its_users_come_online_and_go_offline() {
    let (hub, addr) = start().await;
    let mut bob = Pusher::connect(addr, "app-key").await;
    bob.signin(r#"{"id":"bob"}"#).await;
    let mut ann = Pusher::connect(addr, "app-key").await;
    let ok = ann
        .signin(r#"{"id":"ann","watchlist":["bob","cat"]}"#)
        .await;
    assert_eq!(ok["event"], "pusher:signin_success");
    let first = ann.next().await;
    assert_eq!(first["event"], "pusher_internal:watchlist_events");
    assert_eq!(
        data_of(&first),
        json!({"events": [{"name": "online", "user_ids": ["bob"]}, {"name": "offline", "user_ids": ["cat"]}]})
    );
    let cat = r#"{"id":"cat"}"#;
    let mut cat1 = Pusher::connect(addr, "app-key").await;
    cat1.signin(cat).await;
    let online = json!({"events": [{"name": "online", "user_ids": ["cat"]}]});
    assert_eq!(data_of(&ann.next().await), online);
    let mut cat2 = Pusher::connect(addr, "app-key").await;
    cat2.signin(cat).await;
    assert!(ann.sync().await.is_empty(), "cat is online already");

    // One of cat's connections leaves: cat stays online.
    drop(cat1);
    let deadline = tokio::time::Instant::now() + STEP;
    while hub.presence("pusher:1:#online-cat").await.unwrap().len() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "cat1's leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ann.sync().await.is_empty(),
        "no offline while cat has a connection"
    );
    drop(cat2);
    let offline = json!({"events": [{"name": "offline", "user_ids": ["cat"]}]});
    assert_eq!(data_of(&ann.next().await), offline);
    assert!(bob.sync().await.is_empty(), "bob watches nobody");
    let api = PusherApi::new(hub).unwrap();
    let (_, listed) = call(&api, "GET", "/apps/1/channels", &[], "").await;
    assert_eq!(
        listed,
        json!({"channels": {}}),
        "users' channels are not listed"
    );

    // A watchlist over Pusher's 100 users is refused.
    let many: Vec<String> = (0..=100).map(|i| format!("u{i}")).collect();
    let mut eve = Pusher::connect(addr, "app-key").await;
    let refused = eve
        .signin(&json!({"id": "eve", "watchlist": many}).to_string())
        .await;
    assert_eq!(refused["data"]["code"], 4009);
}

#[tokio::test]
async fn a_cache_channel_sends_its_last_event_from_the_app_to_new_subscribers() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let trigger = async |channel: &str, name: &str, data: &str| {
        let body = json!({"name": name, "data": data, "channel": channel});
        let (code, _) = call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
        assert_eq!(code, 200);
    };
    let mut a = Pusher::connect(addr, "app-key").await;
    assert_eq!(
        a.subscribe("cache-scores", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        a.next().await,
        json!({"event": "pusher:cache_miss", "channel": "cache-scores", "data": {}})
    );
    trigger("cache-scores", "score", "1-0").await;
    trigger("cache-scores", "score", "{\"home\": 2}").await;
    let live = a.sync().await;
    assert_eq!(live.len(), 2);

    let mut b = Pusher::connect(addr, "app-key").await;
    b.subscribe("cache-scores", None).await;
    let cached = b.sync().await;
    assert_eq!(cached, [live[1].clone()], "the last event, as it was sent");

    // Client events are not cached; a private cache channel is signed as a private one.
    a.subscribe("private-cache-room", None).await;
    assert_eq!(a.next().await["event"], "pusher:cache_miss");
    trigger("private-cache-room", "state", "\"open\"").await;
    a.send(json!({"event": "client-x", "channel": "private-cache-room", "data": {}}))
        .await;
    assert_eq!(a.sync().await.len(), 1, "the app's event");
    let mut c = Pusher::connect(addr, "app-key").await;
    c.subscribe("private-cache-room", None).await;
    assert_eq!(
        c.sync().await,
        [json!({"event": "state", "channel": "private-cache-room", "data": "\"open\""})]
    );
    let members = r#"{"user_id":"ann"}"#;
    c.subscribe("presence-cache-lobby", Some(members)).await;
    assert_eq!(c.next().await["event"], "pusher:cache_miss");
    // A channel that is not a cache channel sends no miss.
    c.subscribe("scores", None).await;
    assert!(c.sync().await.is_empty());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn sign_in_watchlists_and_cache_channels_span_nodes_on_redis() {
    use std::sync::Arc;
    use switchboard_hub::{RedisBroker, RedisConfig};

    let redis = redis_server::Redis::start();
    let node = async || {
        let broker = RedisBroker::connect(RedisConfig::new(redis.url()))
            .await
            .unwrap();
        let mut config = HubConfig::default();
        config.pusher = apps();
        support::hub_on(Arc::new(broker), config).await
    };
    let ((hub1, addr1), (_hub2, addr2)) = (node().await, node().await);
    let api = PusherApi::new(hub1).unwrap();
    let mut ann = Pusher::connect(addr2, "app-key").await;
    let signin = ann.signin(r#"{"id":"ann","watchlist":["bob"]}"#).await;
    assert_eq!(signin["event"], "pusher:signin_success");
    assert_eq!(
        ann.next().await["event"],
        "pusher_internal:watchlist_events"
    );
    let mut bob = Pusher::connect(addr1, "app-key").await;
    bob.signin(r#"{"id":"bob"}"#).await;
    let online = json!({"events": [{"name": "online", "user_ids": ["bob"]}]});
    assert_eq!(
        data_of(&ann.next().await),
        online,
        "bob signed in on the other node"
    );
    let body = json!({"name": "notice", "data": "1", "channel": "#server-to-user-ann"});
    let (code, _) = call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
    assert_eq!(code, 200);
    assert_eq!(
        ann.next().await["event"],
        "notice",
        "sent on one node, to the other's user"
    );

    let body = json!({"name": "moved", "data": "{\"at\":2}", "channel": "cache-location"});
    call(&api, "POST", "/apps/1/events", &[], &body.to_string()).await;
    ann.subscribe("cache-location", None).await;
    assert_eq!(
        ann.next().await,
        json!({"event": "moved", "channel": "cache-location", "data": "{\"at\":2}"}),
        "the last event, triggered on the other node"
    );
}

#[tokio::test]
async fn a_cache_miss_is_told_to_the_apps_webhooks() {
    let (url, mut hooks) = hook_receiver().await;
    let mut config = HubConfig::default();
    let hooked = app().with_webhook(url.parse().unwrap());
    config.pusher = PusherApps::new(vec![hooked]).unwrap();
    let (hub, addr) = hub_and_addr(config).await;
    let mut a = Pusher::connect(addr, "app-key").await;
    a.subscribe("cache-scores", None).await;
    let mut told = Vec::new();
    while told.len() < 2 {
        let hook = tokio::time::timeout(STEP, hooks.recv()).await.unwrap();
        told.push(hook.unwrap());
    }
    assert!(
        told.contains(&json!({"name": "cache_miss", "channel": "cache-scores"})),
        "{told:?}"
    );
    // With an event to start from, no miss: only the occupancy of the next channel is told.
    let event = RawValue::from_string(r#"{"event":"score","data":"1"}"#.into()).unwrap();
    hub.publish("pusher:1:cache-goals", event, None)
        .await
        .unwrap();
    a.subscribe("cache-goals", None).await;
    a.subscribe("news", None).await;
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let hook = tokio::time::timeout(STEP, hooks.recv()).await.unwrap();
        rest.push(hook.unwrap()["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        rest,
        ["cache-goals", "news"],
        "channel_occupied of each, no cache_miss"
    );
}

#[tokio::test]
async fn terminate_connections_is_served_where_the_python_library_posts_it() {
    let (hub, addr) = start().await;
    let api = PusherApi::new(hub).unwrap();
    let mut a = Pusher::connect(addr, "app-key").await;
    a.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    // No /apps/ID prefix: the app is the one auth_key names.
    let path = "/users/ann/terminate_connections";
    assert_eq!(call(&api, "POST", path, &[], "").await, (200, json!({})));
    assert_eq!(a.next().await, json!({"closed": 4009}));
    let wrong = api_request("POST", path, &[], "", "not-the-secret", now());
    assert_eq!(api.handle(wrong).await.status(), 401);
}

#[tokio::test]
async fn an_apps_webhooks_tell_occupancy_members_and_client_events_in_pushers_format() {
    let (url, mut hooks) = hook_receiver().await;
    let mut config = HubConfig::default();
    let hooked = app().with_webhook(url.parse().unwrap());
    config.pusher = PusherApps::new(vec![hooked, PusherApp::new("2", "quiet-key", "s2")]).unwrap();
    let (_hub, addr) = hub_and_addr(config).await;
    let mut next_hook = async || {
        tokio::time::timeout(STEP, hooks.recv())
            .await
            .unwrap()
            .unwrap()
    };
    let mut a = Pusher::connect(addr, "app-key").await;
    a.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    assert_eq!(
        next_hook().await,
        json!({"name": "channel_occupied", "channel": "presence-room"})
    );
    assert_eq!(
        next_hook().await,
        json!({"name": "member_added", "channel": "presence-room", "user_id": "ann"})
    );
    // Ann's second connection: no second member_added, no second channel_occupied.
    let mut a2 = Pusher::connect(addr, "app-key").await;
    a2.subscribe("presence-room", Some(r#"{"user_id":"ann"}"#))
        .await;
    a.send(json!({"event": "client-typing", "channel": "presence-room", "data": {"x": 1}}))
        .await;
    assert_eq!(
        next_hook().await,
        json!({"name": "client_event", "channel": "presence-room", "event": "client-typing",
               "data": "{\"x\":1}", "socket_id": a.socket_id, "user_id": "ann"})
    );
    drop(a);
    drop(a2);
    assert_eq!(
        next_hook().await,
        json!({"name": "member_removed", "channel": "presence-room", "user_id": "ann"}),
        "once, after ann's last connection"
    );
    assert_eq!(
        next_hook().await,
        json!({"name": "channel_vacated", "channel": "presence-room"})
    );
    // Another app's channels are not this app's business.
    let mut quiet = Pusher::connect(addr, "quiet-key").await;
    quiet
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "news"}}))
        .await;
    quiet.sync().await;
    let mut b = Pusher::connect(addr, "app-key").await;
    b.subscribe("news", None).await;
    assert_eq!(
        next_hook().await,
        json!({"name": "channel_occupied", "channel": "news"})
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn presence_and_client_events_span_nodes_on_redis() {
    use std::sync::Arc;
    use switchboard_hub::{RedisBroker, RedisConfig};

    let redis = redis_server::Redis::start();
    let node = async || {
        let broker = RedisBroker::connect(RedisConfig::new(redis.url()))
            .await
            .unwrap();
        let mut config = HubConfig::default();
        config.pusher = apps();
        support::hub_on(Arc::new(broker), config).await
    };
    let ((hub1, addr1), (hub2, addr2)) = (node().await, node().await);
    let ann = Some(r#"{"user_id":"ann"}"#);
    let mut ann1 = Pusher::connect(addr1, "app-key").await;
    ann1.subscribe("presence-x", ann).await;
    let mut bob = Pusher::connect(addr2, "app-key").await;
    let ok = bob
        .subscribe("presence-x", Some(r#"{"user_id":"bob"}"#))
        .await;
    assert_eq!(data_of(&ok)["presence"]["ids"], json!(["ann", "bob"]));
    let added = ann1.next().await;
    assert_eq!(
        data_of(&added),
        json!({"user_id": "bob", "user_info": null})
    );
    // Ann again, on bob's node: a member already.
    let mut ann2 = Pusher::connect(addr2, "app-key").await;
    let ok = ann2.subscribe("presence-x", ann).await;
    assert_eq!(data_of(&ok)["presence"]["count"], 2);

    bob.send(json!({"event": "client-hi", "channel": "presence-x", "data": "yo"}))
        .await;
    let expected =
        json!({"event": "client-hi", "channel": "presence-x", "data": "yo", "user_id": "bob"});
    assert_eq!(ann1.next().await, expected, "across nodes");
    assert_eq!(ann2.next().await, expected);

    // Ann's first connection leaves; her second keeps her a member. Once the presence shows
    // it and an event published after it reaches bob, no member_removed came before.
    drop(ann1);
    let deadline = tokio::time::Instant::now() + STEP;
    while hub2.presence("pusher:1:presence-x").await.unwrap().len() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "ann1's leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marker = RawValue::from_string(r#"{"event":"mark","data":1}"#.into()).unwrap();
    hub1.publish("pusher:1:presence-x", marker, None)
        .await
        .unwrap();
    assert_eq!(
        bob.next().await["event"],
        "mark",
        "not echoed, and no member_removed"
    );
    drop(ann2);
    let removed = bob.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id": "ann"}));
}
