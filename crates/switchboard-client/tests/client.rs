//! The client against a real hub on loopback: subscribe, publish, presence and history;
//! refusals; a token replaced before it expires; and servers that are not a hub or misbehave,
//! each a clear error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard::{CloseCode, Message, Server};
use switchboard_client::{ClientError, ClientOptions, Event, HubClient, State};
use switchboard_hub::{ChannelRule, Claims, Hub, HubConfig, JwtKey, LocalBroker, Policy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(5);

async fn hub(config: HubConfig) -> SocketAddr {
    let hub = Hub::new(Arc::new(LocalBroker::default()), config)
        .await
        .unwrap();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |ws, request| hub.serve(ws, request)));
    addr
}

async fn next(subscription: &mut switchboard_client::Subscription) -> Event {
    tokio::time::timeout(STEP, subscription.next())
        .await
        .expect("an event in time")
        .expect("the subscription goes on")
}

fn named(name: &str) -> ClientOptions {
    ClientOptions::default().name(name)
}

#[tokio::test]
async fn a_client_subscribes_publishes_and_reads_presence_and_history() {
    let addr = hub(HubConfig::default()).await;
    let url = format!("ws://{addr}/ws");
    let ann = HubClient::connect(&url, named("ann")).await.unwrap();
    let mut lobby = ann.subscribe("lobby").await.unwrap();
    assert_eq!(lobby.channel(), "lobby");
    let offset = ann.publish("lobby", &json!({"text": "hi"})).await.unwrap();
    assert_eq!(offset, 1);
    let message = loop {
        match next(&mut lobby).await {
            Event::Message(message) => break message,
            Event::Join(client) => assert_eq!(client.user, "ann"),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        (message.offset, message.data.get()),
        (1, r#"{"text":"hi"}"#)
    );
    assert_eq!(message.from.user, "ann");
    let present = ann.presence("lobby").await.unwrap();
    assert_eq!(present.len(), 1);
    assert_eq!(present[0].user, "ann");
    let history = ann.history("lobby", Some(10)).await.unwrap();
    assert_eq!(history.position.offset, 1);
    assert_eq!(history.publications.len(), 1);
    assert!(matches!(
        ann.subscribe("lobby").await,
        Err(ClientError::AlreadySubscribed(_))
    ));
    lobby.unsubscribe().await.unwrap();
    assert!(ann.presence("lobby").await.unwrap().is_empty());
    ann.close();
}

#[tokio::test]
async fn refusals_carry_the_hubs_code() {
    let mut config = HubConfig::default();
    config.rules = vec![ChannelRule::new("user:*", Policy::Personal)];
    config.max_data_size = 16;
    let addr = hub(config).await;
    let ann = HubClient::connect(&format!("ws://{addr}/ws"), named("ann"))
        .await
        .unwrap();
    let refused = ann.subscribe("user:bob").await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Refused { code, .. } if code == "forbidden"),
        "{refused:?}"
    );
    let big = ann.publish("lobby", &"x".repeat(100)).await.unwrap_err();
    assert!(
        matches!(&big, ClientError::Refused { code, .. } if code == "too_large"),
        "{big:?}"
    );
    let bad = ann.subscribe("two words").await.unwrap_err();
    assert!(
        matches!(&bad, ClientError::Refused { code, .. } if code == "invalid_channel"),
        "{bad:?}"
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &JwtKey, life: u64) -> String {
    key.sign(&Claims {
        sub: "ann".into(),
        exp: Some(now() + life),
        nbf: None,
        iat: Some(now()),
    })
}

#[tokio::test]
async fn a_token_is_replaced_before_it_expires_and_nothing_is_missed() {
    let key = JwtKey::hs256("client test secret, 32 bytes ...");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    let addr = hub(config).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let source = {
        let (key, asked) = (key.clone(), asked.clone());
        move || {
            asked.fetch_add(1, Ordering::Relaxed);
            let token = token(&key, 7);
            async move { Ok(token) }
        }
    };
    // Seven seconds of life, replaced five before the end: after about two.
    let options = ClientOptions::default().get_token(source);
    let ann = HubClient::connect(&format!("ws://{addr}/ws"), options)
        .await
        .unwrap();
    let mut lobby = ann.subscribe("lobby").await.unwrap();
    assert_eq!(asked.load(Ordering::Relaxed), 1, "the first token");
    let publisher = HubClient::connect(&format!("ws://{addr}/ws"), {
        let token = token(&key, 60);
        ClientOptions::default().token(token)
    })
    .await
    .unwrap();
    let mut offsets = Vec::new();
    let mut recovered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut n = 0;
    while tokio::time::Instant::now() < deadline {
        n += 1;
        publisher.publish("lobby", &json!({"n": n})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(1), lobby.next()).await
        {
            match event {
                Event::Message(p) => offsets.push(p.offset),
                Event::Recovered { .. } => recovered += 1,
                Event::Join(_) | Event::Leave(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    while offsets.len() < n {
        match next(&mut lobby).await {
            Event::Message(p) => offsets.push(p.offset),
            Event::Recovered { .. } => recovered += 1,
            Event::Join(_) | Event::Leave(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        asked.load(Ordering::Relaxed) >= 2,
        "a fresh token was asked for"
    );
    assert!(
        recovered >= 1,
        "the subscription resumed on the new connection"
    );
    let expected: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(offsets, expected, "every message once, in order");
}

#[tokio::test]
async fn a_refused_token_without_a_source_stops_the_client() {
    let key = JwtKey::hs256("client test secret, 32 bytes ...");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    let addr = hub(config).await;
    let url = format!("ws://{addr}/ws");
    let forged = JwtKey::hs256("another secret, thirty-two bytes").sign(&Claims {
        sub: "ann".into(),
        exp: None,
        nbf: None,
        iat: None,
    });
    let refused = HubClient::connect(&url, ClientOptions::default().token(forged)).await;
    let Err(ClientError::Connect(why)) = refused else {
        panic!("{refused:?}")
    };
    assert!(why.contains("unauthorized"), "{why}");

    // A hub that later refuses the connection's token (as the hub does when it expires):
    // with no way to get another, the client stops rather than retry the same one.
    let refusing = odd_hub(
        &[r#"{"type":"error","code":"unauthorized","reason":"token expired"}"#],
        Some(CloseCode::POLICY_VIOLATION),
    )
    .await;
    let ann = HubClient::connect(&format!("ws://{refusing}/ws"), ClientOptions::default())
        .await
        .unwrap();
    let mut state = ann.state();
    let stopped = tokio::time::timeout(
        STEP,
        state.wait_for(|state| matches!(state, State::Closed(_))),
    )
    .await
    .expect("the client stops")
    .unwrap()
    .clone();
    let State::Closed(Some(why)) = stopped else {
        panic!("{stopped:?}")
    };
    assert!(why.contains("token expired"), "{why}");
    let after = ann.publish("lobby", &1).await;
    assert!(matches!(after, Err(ClientError::Closed(_))), "{after:?}");
}

/// A server that greets as the hub does, then sends `frames` after a moment and closes with
/// `code` (if any).
async fn odd_hub(frames: &'static [&'static str], code: Option<CloseCode>) -> SocketAddr {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |mut ws, _| async move {
        let hello = r#"{"type":"connected","client":{"user":"ann","conn":"c1"}}"#;
        let _ = ws.send(Message::text(hello)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for frame in frames {
            let _ = ws.send(Message::text(*frame)).await;
        }
        if let Some(code) = code {
            let _ = ws.close(code, "bye").await;
        }
        while let Some(Ok(_)) = ws.recv().await {}
    }));
    addr
}

/// A server on loopback that answers every connection with `answer` (raw bytes).
async fn raw_server(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.write_all(answer).await;
        }
    });
    addr
}

/// A WebSocket server that sends `first` to each client, then closes with `code` (if any).
async fn odd_server(first: Option<&'static str>, code: Option<CloseCode>) -> SocketAddr {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |mut ws, _| async move {
        if let Some(first) = first {
            let _ = ws.send(Message::text(first)).await;
        }
        if let Some(code) = code {
            let _ = ws.close(code, "go away").await;
        }
        while let Some(Ok(_)) = ws.recv().await {}
    }));
    addr
}

async fn connect_error(url: &str) -> String {
    let options = ClientOptions::default().request_timeout(Duration::from_secs(2));
    match tokio::time::timeout(STEP, HubClient::connect(url, options)).await {
        Ok(Err(ClientError::Connect(why))) => why,
        other => panic!("{url}: {other:?}"),
    }
}

#[tokio::test]
async fn servers_that_are_not_a_working_hub_give_a_clear_error() {
    let nobody = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let why = connect_error(&format!("ws://127.0.0.1:{port}/ws")).await;
    assert!(why.to_lowercase().contains("refused"), "{why}");

    let web = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let why = connect_error(&format!("ws://{web}/ws")).await;
    assert!(why.contains("200"), "{why}");

    let garbled = odd_server(Some("{not json"), None).await;
    let why = connect_error(&format!("ws://{garbled}/ws")).await;
    assert!(why.contains("not the hub's protocol"), "{why}");

    let silent = odd_server(None, None).await;
    let why = connect_error(&format!("ws://{silent}/ws")).await;
    assert!(why.contains("connected"), "{why}");

    let policy = odd_server(None, Some(CloseCode::POLICY_VIOLATION)).await;
    let why = connect_error(&format!("ws://{policy}/ws")).await;
    assert!(why.contains("go away"), "{why}");

    let why = connect_error("http://127.0.0.1:1/ws").await;
    assert!(why.contains("ws://"), "{why}");
}

fn message(offset: u64) -> String {
    json!({
        "type": "message", "channel": "feed", "offset": offset, "time": 0,
        "from": {"user": "p", "conn": "p1"}, "data": offset,
    })
    .to_string()
}

/// A hub that repeats itself: its first connection delivers 1 to 3 and is closed with 1012;
/// on the next, the resumed subscription's replay and the live messages overlap what was
/// delivered (2 to 4, then 4 and 5 live). The client must hand each offset over once.
async fn repeating_hub() -> SocketAddr {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(server.serve(move |mut ws, _| {
        let first = connections.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            let hello = r#"{"type":"connected","client":{"user":"ann","conn":"c1"}}"#;
            let _ = ws.send(Message::text(hello)).await;
            let Some(Ok(Message::Text(request))) = ws.recv().await else {
                return;
            };
            let request: serde_json::Value = serde_json::from_str(&request).unwrap();
            let mut frames = Vec::new();
            if first {
                let reply = json!({"type": "subscribed", "id": request["id"], "channel": "feed",
                    "epoch": "e", "offset": 0, "publications": []});
                frames.push(reply.to_string());
                frames.extend((1..=3).map(message));
            } else {
                assert_eq!(request["since"], json!({"epoch": "e", "offset": 3}));
                let replay: Vec<serde_json::Value> = (2..=4)
                    .map(|offset| serde_json::from_str(&message(offset)).unwrap())
                    .collect();
                let reply = json!({"type": "subscribed", "id": request["id"], "channel": "feed",
                    "epoch": "e", "offset": 4, "recovered": true, "publications": replay});
                frames.push(reply.to_string());
                frames.extend([message(4), message(5)]);
            }
            for frame in frames {
                let _ = ws.send(Message::text(frame)).await;
            }
            if first {
                let _ = ws.close(CloseCode::SERVICE_RESTART, "restart").await;
            }
            while let Some(Ok(_)) = ws.recv().await {}
        }
    }));
    addr
}

#[tokio::test]
async fn what_a_server_sends_twice_is_delivered_once() {
    let addr = repeating_hub().await;
    let options = ClientOptions::default().backoff(Duration::ZERO, Duration::from_millis(50));
    let client = HubClient::connect(&format!("ws://{addr}/ws"), options)
        .await
        .unwrap();
    let mut feed = client.subscribe("feed").await.unwrap();
    let mut offsets = Vec::new();
    let mut recovered = None;
    while offsets.last() != Some(&5) {
        match next(&mut feed).await {
            Event::Message(publication) => offsets.push(publication.offset),
            Event::Recovered { missed } => recovered = Some(missed),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(recovered, Some(1), "only 4 was missed");
}
