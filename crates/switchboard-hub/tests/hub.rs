//! The hub over real WebSocket connections: delivery, recovery across disconnects (no gap, no
//! duplicate), presence, errors for bad input, tokens and channel rules.

#[path = "support/laggard.rs"]
mod laggard;
#[path = "support/serving.rs"]
mod serving;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchboard::{CloseCode, Message, Server, WebSocket};
use switchboard_hub::{BoxFuture, BrokerEvents};
use switchboard_hub::{
    Broker, BrokerError, ChannelRule, Claims, ClientInfo, HistoryConfig, HistoryRange, Hub,
    HubConfig, JwtKey, LocalBroker, NodeCommand, NodeReply, Policy, Publication, StreamPosition,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(5);

struct TestServer {
    addr: std::net::SocketAddr,
    hub: Hub,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(config: HubConfig, history: HistoryConfig) -> TestServer {
    start_on(Arc::new(LocalBroker::new(history)), config).await
}

async fn start_on(broker: Arc<dyn Broker>, config: HubConfig) -> TestServer {
    let hub = Hub::new(broker, config).await.unwrap();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let serving = hub.clone();
    let task =
        tokio::spawn(server.serve(move |ws, request| serving::serve(serving.clone(), ws, request)));
    TestServer { addr, hub, task }
}

async fn start_default() -> TestServer {
    start(HubConfig::default(), HistoryConfig::default()).await
}

struct Client<S> {
    ws: WebSocket<S>,
    /// Frames read while waiting for a particular reply, handed out by `next` first.
    backlog: std::collections::VecDeque<Value>,
    /// The first frame of the connection (`connected`, or the error of a refused client).
    hello: Value,
}

impl<S> Client<S> {
    fn new(ws: WebSocket<S>) -> Self {
        Self {
            ws,
            backlog: Default::default(),
            hello: Value::Null,
        }
    }
}

impl Client<switchboard::MaybeTlsStream> {
    async fn connect(server: &TestServer, query: &str) -> Self {
        let url = format!("ws://{}/ws?{query}", server.addr);
        let (ws, _) = tokio::time::timeout(STEP, switchboard::connect(&url))
            .await
            .unwrap()
            .unwrap();
        let mut client = Self::new(ws);
        client.hello = client.read().await;
        client
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, request: Value) {
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
    }

    /// The next frame, whatever its type.
    async fn next(&mut self) -> Value {
        if let Some(frame) = self.backlog.pop_front() {
            return frame;
        }
        self.read().await
    }

    async fn read(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(STEP, self.ws.recv())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .unwrap();
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame that is not a join or leave.
    async fn reply(&mut self) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] != "join" && frame["type"] != "leave" {
                return frame;
            }
        }
    }

    /// Subscribes and returns the `subscribed` reply.
    async fn subscribe(&mut self, channel: &str, since: Option<Value>) -> Value {
        let mut request = json!({"op": "subscribe", "channel": channel, "id": "sub"});
        if let Some(since) = since {
            request["since"] = since;
        }
        self.send(request).await;
        let reply = self.reply().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Publishes and returns the reply (an ack or an error); other frames that arrive first
    /// (the publication itself, to a subscriber) stay for `next`.
    async fn publish(&mut self, channel: &str, data: Value, id: u64) -> Value {
        self.send(json!({"op": "publish", "channel": channel, "data": data, "id": id}))
            .await;
        loop {
            let frame = self.read().await;
            if frame["id"] == id {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// Asserts that nothing but joins and leaves arrives for `wait`.
    async fn expect_silence(&mut self, wait: Duration) {
        for frame in self.backlog.drain(..) {
            assert!(
                frame["type"] == "join" || frame["type"] == "leave",
                "expected nothing, got {frame}"
            );
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert!(
                        frame["type"] == "join" || frame["type"] == "leave",
                        "expected nothing, got {frame}"
                    );
                }
                Ok(other) => panic!("expected nothing, got {other:?}"),
            }
        }
    }

    /// Waits for the server's Close and returns its code.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(STEP, self.ws.recv()).await.unwrap() {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.0),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{e}"),
                None => return None,
            }
        }
    }
}

fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}

fn position(reply: &Value) -> Value {
    json!({"epoch": reply["epoch"], "offset": reply["offset"]})
}

#[tokio::test]
async fn published_messages_reach_subscribers_in_order_with_an_ack() {
    let server = start_default().await;
    let mut ann = Client::connect(&server, "name=ann").await;
    let mut bob = Client::connect(&server, "name=bob").await;
    let subscribed = ann.subscribe("room", None).await;
    assert_eq!(subscribed["offset"], 0);
    assert!(subscribed.get("recovered").is_none());
    bob.subscribe("room", None).await;
    for i in 1..=3 {
        let ack = bob
            .publish("room", json!({"text": format!("hi {i}")}), i)
            .await;
        assert_eq!(
            ack,
            json!({"type": "ack", "id": i, "channel": "room", "offset": i})
        );
    }
    for i in 1..=3 {
        for client in [&mut ann, &mut bob] {
            let message = client.reply().await;
            assert_eq!(message["type"], "message");
            assert_eq!(message["channel"], "room");
            assert_eq!(message["offset"], i);
            assert_eq!(message["data"], json!({"text": format!("hi {i}")}));
            assert_eq!(message["from"]["user"], "bob");
            assert!(message["time"].as_u64().unwrap() > 1_600_000_000_000);
        }
    }
    // A publish without an id gets no ack, and is delivered all the same.
    bob.send(json!({"op": "publish", "channel": "room", "data": 4}))
        .await;
    assert_eq!(ann.reply().await["offset"], 4);
    assert_eq!(bob.reply().await["type"], "message");

    bob.send(json!({"op": "history", "channel": "room", "limit": 2, "id": 9}))
        .await;
    let history = bob.reply().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["id"], 9);
    assert_eq!(history["offset"], 4);
    assert_eq!(history["epoch"], subscribed["epoch"]);
    assert_eq!(offsets(&history["publications"]), [3, 4]);

    ann.send(json!({"op": "unsubscribe", "channel": "room", "id": 5}))
        .await;
    assert_eq!(
        ann.reply().await,
        json!({"type": "unsubscribed", "id": 5, "channel": "room"})
    );
    bob.publish("room", json!("after"), 6).await;
    ann.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn recovery_after_a_disconnect_replays_what_was_missed_once_in_order() {
    let server = start_default().await;
    let mut ann = Client::connect(&server, "name=ann").await;
    let mut bob = Client::connect(&server, "name=bob").await;
    let mut last = position(&ann.subscribe("room", None).await);
    bob.subscribe("room", None).await;
    bob.publish("room", json!("m1"), 1).await;
    let seen = ann.reply().await;
    assert_eq!(seen["offset"], 1);
    last["offset"] = seen["offset"].clone();

    ann.ws.close(CloseCode::NORMAL, "").await.unwrap();
    for i in 2..=6 {
        bob.publish("room", json!(format!("m{i}")), i).await;
    }

    let mut ann = Client::connect(&server, "name=ann").await;
    let reply = ann.subscribe("room", Some(last)).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["offset"], 6);
    assert_eq!(offsets(&reply["publications"]), [2, 3, 4, 5, 6]);
    assert_eq!(reply["publications"][0]["data"], "m2");
    bob.publish("room", json!("m7"), 7).await;
    let live = ann.reply().await;
    assert_eq!(
        (live["type"].as_str(), live["offset"].as_u64()),
        (Some("message"), Some(7))
    );
    ann.expect_silence(Duration::from_millis(200)).await;

    // Nothing missed: recovered, and nothing replayed.
    let mut cy = Client::connect(&server, "name=cy").await;
    let reply = cy
        .subscribe("room", Some(json!({"epoch": reply["epoch"], "offset": 7})))
        .await;
    assert_eq!(reply["recovered"], true);
    assert_eq!(offsets(&reply["publications"]), Vec::<u64>::new());
}

/// The local broker with the latency of a networked one on subscriptions, history reads and
/// the delivery of publications: publications keep arriving while a subscription is being set
/// up, before and after the history read, and a history read may hold a publication whose
/// event reaches the hub only later (as over Redis, where history and Pub/Sub are apart).
struct SlowBroker(LocalBroker);

const LATENCY: Duration = Duration::from_millis(3);

/// Hands the hub each publication [`LATENCY`] after the broker made it, in order.
struct Late {
    queue: tokio::sync::mpsc::UnboundedSender<(tokio::time::Instant, String, Arc<Publication>)>,
    hub: Arc<dyn BrokerEvents>,
}

impl Late {
    fn new(hub: Arc<dyn BrokerEvents>) -> Self {
        let (queue, mut late) = tokio::sync::mpsc::unbounded_channel::<(
            tokio::time::Instant,
            String,
            Arc<Publication>,
        )>();
        let delivering = hub.clone();
        tokio::spawn(async move {
            while let Some((at, channel, publication)) = late.recv().await {
                tokio::time::sleep_until(at + LATENCY).await;
                delivering.publication(&channel, &publication);
            }
        });
        Self { queue, hub }
    }
}

impl BrokerEvents for Late {
    fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        let now = tokio::time::Instant::now();
        let _ = self
            .queue
            .send((now, channel.to_owned(), publication.clone()));
    }
    fn join(&self, channel: &str, client: &ClientInfo) {
        self.hub.join(channel, client);
    }
    fn leave(&self, channel: &str, client: &ClientInfo) {
        self.hub.leave(channel, client);
    }
    fn stream_lost(&self, channel: &str) {
        self.hub.stream_lost(channel);
    }
    fn command(&self, command: NodeCommand) -> BoxFuture<'static, NodeReply> {
        self.hub.command(command)
    }
}

impl Broker for SlowBroker {
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.start(Arc::new(Late::new(events)))
    }
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            self.0.subscribe(&channel).await
        })
    }
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.unsubscribe(channel)
    }
    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.0.publish(channel, from, data)
    }
    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.0.publish_once(channel, from, data, key, window)
    }
    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<switchboard_hub::History, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let history = self.0.history(&channel, range).await;
            tokio::time::sleep(LATENCY).await;
            history
        })
    }
    fn join(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.join(channel, client)
    }
    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.leave(channel, client)
    }
    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        self.0.presence(channel)
    }
}

/// A subscriber that disconnects and reconnects again and again while messages keep coming
/// sees every offset exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_while_publishing_continues_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 400;
    let broker = SlowBroker(LocalBroker::new(HistoryConfig {
        size: 1000,
        ttl: None,
    }));
    let server = start_on(Arc::new(broker), HubConfig::default()).await;
    let mut reader = Client::connect(&server, "name=reader").await;
    let first = reader.subscribe("feed", None).await;
    let epoch = first["epoch"].clone();

    let mut writer = Client::connect(&server, "name=writer").await;
    let publishing = tokio::spawn(async move {
        for i in 1..=TOTAL {
            // Without waiting for acks: the reader reconnects while messages are in flight.
            writer
                .send(json!({"op": "publish", "channel": "feed", "data": i}))
                .await;
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        writer
    });

    let mut seen: Vec<u64> = Vec::new();
    let mut reconnects = 0;
    let mut live = 0;
    while seen.last().copied().unwrap_or(0) < TOTAL {
        let frame = reader.reply().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["offset"].as_u64().unwrap()),
            other => panic!("unexpected {other:?}: {frame}"),
        }
        live += 1;
        if live == 30 {
            live = 0;
            reconnects += 1;
            reader.ws.close(CloseCode::NORMAL, "").await.unwrap();
            reader = Client::connect(&server, "name=reader").await;
            let since = json!({"epoch": epoch, "offset": seen.last().unwrap()});
            let reply = reader.subscribe("feed", Some(since)).await;
            assert_eq!(reply["recovered"], true, "{reply}");
            seen.extend(offsets(&reply["publications"]));
        }
    }
    let writer = publishing.await.unwrap();
    drop(writer);
    assert!(reconnects >= 2, "the reader reconnected {reconnects} times");
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(seen, expected, "every offset once, in order");
}

#[tokio::test]
async fn recovery_is_refused_with_a_reason_when_history_cannot_cover_the_gap() {
    let server = start(HubConfig::default(), HistoryConfig { size: 3, ttl: None }).await;
    let mut ann = Client::connect(&server, "").await;
    let subscribed = ann.subscribe("room", None).await;
    for i in 1..=5 {
        ann.publish("room", json!(i), i).await;
    }
    let mut bob = Client::connect(&server, "").await;
    let reply = bob
        .subscribe(
            "room",
            Some(json!({"epoch": subscribed["epoch"], "offset": 1})),
        )
        .await;
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["code"], "history_truncated");
    assert!(reply["reason"].as_str().unwrap().contains("no longer"));
    assert_eq!(offsets(&reply["publications"]), Vec::<u64>::new());
    assert_eq!(reply["offset"], 5, "the position to continue from");
    // Still subscribed: live messages follow.
    ann.publish("room", json!(6), 6).await;
    assert_eq!(bob.reply().await["offset"], 6);

    let mut cy = Client::connect(&server, "").await;
    let reply = cy
        .subscribe("room", Some(json!({"epoch": "another", "offset": 5})))
        .await;
    assert_eq!(
        (reply["recovered"].clone(), reply["code"].clone()),
        (json!(false), json!("epoch_changed"))
    );
    let mut dee = Client::connect(&server, "").await;
    let reply = dee
        .subscribe(
            "room",
            Some(json!({"epoch": subscribed["epoch"], "offset": 99})),
        )
        .await;
    assert_eq!(reply["code"], "offset_ahead");
}

#[tokio::test]
async fn presence_lists_subscribers_and_announces_joins_and_leaves() {
    let server = start_default().await;
    let mut ann = Client::connect(&server, "name=Ann%20Lee").await;
    ann.subscribe("room", None).await;
    let own_join = ann.next().await;
    assert_eq!(own_join["type"], "join");
    assert_eq!(own_join["client"], ann.hello["client"]);
    assert_eq!(own_join["client"]["user"], "Ann Lee");
    let ann_conn = own_join["client"]["conn"].clone();

    let mut bob = Client::connect(&server, "name=bob").await;
    bob.subscribe("room", None).await;
    let join = ann.next().await;
    assert_eq!(join["type"], "join");
    assert_eq!(join["channel"], "room");
    assert_eq!(join["client"]["user"], "bob");
    let bob_conn = join["client"]["conn"].clone();
    assert_ne!(ann_conn, bob_conn);

    ann.send(json!({"op": "presence", "channel": "room", "id": 1}))
        .await;
    let presence = ann.reply().await;
    assert_eq!(presence["type"], "presence");
    let mut users: Vec<&str> = presence["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["Ann Lee", "bob"]);

    drop(bob); // vanishes without a Close frame
    let leave = ann.next().await;
    assert_eq!(leave["type"], "leave");
    assert_eq!(leave["client"]["conn"], bob_conn);
    ann.send(json!({"op": "presence", "channel": "room", "id": 2}))
        .await;
    let presence = ann.reply().await;
    assert_eq!(presence["clients"].as_array().unwrap().len(), 1);
    assert_eq!(presence["clients"][0]["conn"], ann_conn);
    tokio::time::timeout(STEP, async {
        while server.hub.connections() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// A subscriber of a large channel declines its joins and leaves: publications still come, and
/// the others are still told of its join.
#[tokio::test]
async fn a_subscriber_that_declines_joins_and_leaves_gets_only_the_publications() {
    let server = start_default().await;
    let mut quiet = Client::connect(&server, "name=quiet").await;
    quiet
        .send(json!({"op": "subscribe", "channel": "feed", "id": "sub", "join_leave": false}))
        .await;
    let subscribed = quiet.next().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let mut ann = Client::connect(&server, "name=ann").await;
    ann.subscribe("feed", None).await;
    // Ann is told of her own join; the quiet one is not, nor of her leaving.
    assert_eq!(ann.next().await["type"], "join");
    ann.publish("feed", json!("one"), 1).await;
    drop(ann);
    let first = quiet.next().await;
    assert_eq!(first["type"], "message", "{first}");
    assert_eq!(first["data"], "one");
    let mut bob = Client::connect(&server, "name=bob").await;
    bob.subscribe("feed", None).await;
    // The quiet one is in presence, as any other subscriber.
    bob.send(json!({"op": "presence", "channel": "feed", "id": 3}))
        .await;
    let presence = bob.reply().await;
    let users: Vec<&str> = presence["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert!(users.contains(&"quiet"), "{presence}");
    bob.publish("feed", json!("two"), 2).await;
    let second = quiet.next().await;
    assert_eq!(second["type"], "message", "{second}");
    assert_eq!(second["data"], "two");
}

#[tokio::test]
async fn bad_input_gets_an_error_the_connection_stays_open_and_nothing_reaches_others() {
    let mut config = HubConfig::default();
    config.max_data_size = 100;
    let server = start(config, HistoryConfig::default()).await;
    let mut bad = Client::connect(&server, "").await;
    let mut other = Client::connect(&server, "").await;
    other.subscribe("room", None).await;
    bad.subscribe("room", None).await;

    let cases = [
        ("{not json".to_owned(), "malformed", Value::Null),
        ("[1,2,3]".to_owned(), "malformed", Value::Null),
        (
            json!({"op": "shout", "channel": "room", "id": 1}).to_string(),
            "unknown_op",
            json!(1),
        ),
        (
            json!({"op": "publish", "channel": "room", "id": 2}).to_string(),
            "bad_request",
            json!(2),
        ),
        (
            json!({"op": "publish", "channel": "room", "data": "x".repeat(101), "id": 3})
                .to_string(),
            "too_large",
            json!(3),
        ),
        (
            json!({"op": "publish", "channel": "room", "data": "x".repeat(100_000), "id": 4})
                .to_string(),
            "too_large",
            Value::Null,
        ),
        (
            json!({"op": "publish", "channel": "no spaces", "data": 1, "id": 5}).to_string(),
            "invalid_channel",
            json!(5),
        ),
        (
            json!({"op": "subscribe", "channel": "room", "id": 6}).to_string(),
            "already_subscribed",
            json!(6),
        ),
        (
            json!({"op": "unsubscribe", "channel": "elsewhere", "id": 7}).to_string(),
            "not_subscribed",
            json!(7),
        ),
    ];
    for (text, code, id) in cases {
        bad.ws.send(Message::text(text.clone())).await.unwrap();
        let error = bad.reply().await;
        assert_eq!(error["type"], "error", "{text}: {error}");
        assert_eq!(error["code"], code, "{text}: {error}");
        assert_eq!(
            error.get("id").cloned().unwrap_or(Value::Null),
            id,
            "{text}"
        );
        assert!(!error["reason"].as_str().unwrap().is_empty());
    }
    bad.ws
        .send(Message::Binary(bytes::Bytes::from_static(b"\x00\x01")))
        .await
        .unwrap();
    assert_eq!(bad.reply().await["code"], "unsupported");

    // Still open, and no offset was used up: the first real message is offset 1.
    let ack = bad.publish("room", json!({"text": "fine"}), 8).await;
    assert_eq!(ack["offset"], 1);
    let first = other.reply().await;
    assert_eq!(
        (first["type"].as_str(), first["offset"].as_u64()),
        (Some("message"), Some(1))
    );
    other.expect_silence(Duration::from_millis(200)).await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &JwtKey, sub: &str, exp: Option<u64>) -> String {
    key.sign(&Claims {
        sub: sub.into(),
        exp,
        nbf: None,
        iat: Some(now_secs()),
    })
}

#[tokio::test]
async fn tokens_name_the_user_and_rules_decide_who_reads_and_publishes() {
    let key = JwtKey::hs256("test secret, thirty-two bytes ..");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    config.rules = vec![
        ChannelRule::new("staff:*", Policy::Authenticated),
        ChannelRule::new("news", Policy::PublicRead),
    ];
    let server = start(config, HistoryConfig::default()).await;
    let query = format!(
        "token={}&name=ignored",
        token(&key, "alice", Some(now_secs() + 600))
    );
    let mut alice = Client::connect(&server, &query).await;
    let mut guest = Client::connect(&server, "name=guest").await;
    assert_eq!(alice.hello["type"], "connected");
    assert_eq!(alice.hello["client"]["user"], "alice");
    assert_eq!(alice.hello["client"]["authenticated"], true);
    assert_eq!(guest.hello["client"]["user"], "guest");
    assert!(guest.hello["client"].get("authenticated").is_none());

    alice.subscribe("staff:ops", None).await;
    alice.publish("staff:ops", json!("secret"), 1).await;
    let message = alice.reply().await;
    assert_eq!(message["from"]["user"], "alice");
    assert_eq!(message["from"]["authenticated"], true);

    for request in [
        json!({"op": "subscribe", "channel": "staff:ops", "id": 1}),
        json!({"op": "history", "channel": "staff:ops", "id": 2}),
        json!({"op": "presence", "channel": "staff:ops", "id": 3}),
        json!({"op": "publish", "channel": "staff:ops", "data": 1, "id": 4}),
        json!({"op": "publish", "channel": "news", "data": 1, "id": 5}),
    ] {
        guest.send(request.clone()).await;
        let error = guest.reply().await;
        assert_eq!(error["code"], "forbidden", "{request}: {error}");
        assert_eq!(error["id"], request["id"]);
    }
    guest.subscribe("news", None).await;
    alice.publish("news", json!("announcement"), 2).await;
    let news = guest.reply().await;
    assert_eq!(
        (news["data"].as_str(), news["from"]["user"].as_str()),
        (Some("announcement"), Some("alice"))
    );
    assert!(news["from"].get("authenticated").is_some());
    // Nothing published on staff:ops reached the guest, and its refused publish used no offset.
    alice.publish("staff:ops", json!("second"), 3).await;
    assert_eq!(alice.reply().await["offset"], 2);
    guest.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn bad_or_expired_tokens_are_refused_with_1008() {
    let key = JwtKey::hs256("the server's secret");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    let server = start(config, HistoryConfig::default()).await;
    let expired = token(&key, "ann", Some(now_secs() - 3600));
    let forged = token(&JwtKey::hs256("another secret"), "ann", None);
    for (token, reason) in [
        (expired, "token expired"),
        (forged, "token signature does not match"),
        ("garbage".to_owned(), "malformed token"),
    ] {
        let mut client = Client::connect(&server, &format!("token={token}")).await;
        let error = client.hello.clone();
        assert_eq!(error["code"], "unauthorized");
        assert!(
            error["reason"].as_str().unwrap().starts_with(reason),
            "{error}"
        );
        assert_eq!(client.closed().await, Some(1008));
    }
    // A server without a key refuses tokens rather than ignoring them.
    let open = start_default().await;
    let mut client = Client::connect(&open, &format!("token={}", token(&key, "ann", None))).await;
    assert_eq!(client.hello["code"], "unauthorized");
    assert_eq!(client.closed().await, Some(1008));
}

/// `user:*=personal`: user 42 reads `user:42` and gets what the backend publishes there; user 7
/// and an anonymous client calling itself 42 are refused with `forbidden`; no client publishes.
#[tokio::test]
async fn a_personal_channel_is_read_by_its_user_only_and_fed_by_the_backend() {
    let key = JwtKey::hs256("test secret, thirty-two bytes ..");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    config.rules = vec!["user:*=personal".parse().unwrap()];
    let broker = Arc::new(LocalBroker::new(HistoryConfig::default()));
    let server = start_on(broker.clone(), config).await;
    let mut owner = Client::connect(&server, &format!("token={}", token(&key, "42", None))).await;
    let mut other = Client::connect(&server, &format!("token={}", token(&key, "7", None))).await;
    let mut impostor = Client::connect(&server, "name=42").await;
    assert_eq!(impostor.hello["client"]["user"], "42");

    owner.subscribe("user:42", None).await;
    let backend = ClientInfo {
        user: "backend".into(),
        conn: "backend".into(),
        authenticated: true,
        info: None,
    };
    let data = RawValue::from_string(r#"{"order":"shipped"}"#.into()).unwrap();
    broker.publish("user:42", backend, data).await.unwrap();
    let message = owner.reply().await;
    assert_eq!(
        (&message["channel"], &message["data"]),
        (&json!("user:42"), &json!({"order": "shipped"})),
        "{message}"
    );

    for (client, reason) in [
        (&mut other, "channel user:42 is another user's"),
        (
            &mut impostor,
            "channel user:42 is for its user, with a token",
        ),
    ] {
        for request in [
            json!({"op": "subscribe", "channel": "user:42", "id": 1}),
            json!({"op": "history", "channel": "user:42", "id": 2}),
            json!({"op": "presence", "channel": "user:42", "id": 3}),
        ] {
            client.send(request.clone()).await;
            let error = client.reply().await;
            assert_eq!(
                (&error["code"], &error["reason"], &error["id"]),
                (&json!("forbidden"), &json!(reason), &request["id"]),
                "{request}: {error}"
            );
        }
    }
    for client in [&mut owner, &mut other, &mut impostor] {
        let error = client.publish("user:42", json!("forged"), 4).await;
        assert_eq!(error["code"], "forbidden", "{error}");
        assert_eq!(error["reason"], "only the server publishes on user:42");
    }
    // The refused publishes reached no one; user 7 reads its own channel.
    owner.expect_silence(Duration::from_millis(200)).await;
    other.subscribe("user:7", None).await;
}

/// A subscriber that stops reading is disconnected with 1013 rather than sent a stream with a
/// hole in it; what it did receive has no gap, and it recovers the rest.
#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_without_a_gap_and_recovers() {
    const TOTAL: u64 = 3000;
    let mut config = HubConfig::default();
    config.max_replay = TOTAL as usize;
    let server = start(
        config,
        HistoryConfig {
            size: TOTAL as usize,
            ttl: None,
        },
    )
    .await;
    // The slow client speaks through a small in-memory pipe that it stops draining.
    let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    let hub = server.hub.clone();
    tokio::spawn(async move {
        let (mut ws, request) = switchboard::accept(server_io).await.unwrap();
        // A server's default policy, which closes a full queue by itself.
        ws.set_send_queue(1 << 20, switchboard::Backpressure::Disconnect);
        hub.serve(ws, request).await;
    });
    let uri: http::Uri = "ws://localhost/ws?name=slow".parse().unwrap();
    let (ws, _) = switchboard::client_handshake(&uri, client_io, &Default::default())
        .await
        .unwrap();
    let mut slow = Client::new(ws);
    assert_eq!(slow.next().await["type"], "connected");
    let subscribed = slow.subscribe("firehose", None).await;

    let mut writer = Client::connect(&server, "name=writer").await;
    let payload = "x".repeat(1000);
    for i in 1..=TOTAL {
        writer
            .send(json!({"op": "publish", "channel": "firehose", "data": payload, "id": i}))
            .await;
    }
    // Acks come back in order: once the last is in, every publication was fanned out.
    loop {
        let reply = writer.reply().await;
        if reply["id"] == TOTAL {
            break;
        }
    }
    assert_eq!(server.hub.lagged(), 1);

    // Now read what the slow client was sent: a gap-free prefix, then the retry hint (past
    // the full queue), then the close.
    let (last, hint, close) = laggard::read_to_the_close(&mut slow.ws).await;
    let code = close.map(|f| f.code.0);
    assert_eq!(code, Some(1013));
    assert_eq!(hint["code"], 1013, "{hint}");
    assert!(
        hint["retry_after_ms"].as_u64().is_some_and(|ms| ms < 1000),
        "{hint}"
    );
    assert!(last > 0 && last < TOTAL, "received {last} of {TOTAL}");

    let mut again = Client::connect(&server, "name=slow").await;
    let since = json!({"epoch": subscribed["epoch"], "offset": last});
    let reply = again.subscribe("firehose", Some(since)).await;
    assert_eq!(reply["recovered"], true);
    let recovered = offsets(&reply["publications"]);
    assert_eq!(recovered, ((last + 1)..=TOTAL).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let key = JwtKey::hs256("the server's secret");
    let mut config = HubConfig::default();
    config.jwt = Some(key.clone());
    let server = start(config, HistoryConfig::default()).await;
    // Valid for one or two more seconds, counting the leeway for clock skew.
    let exp = now_secs() + 2 - switchboard_hub::JwtKey::LEEWAY.as_secs();
    let mut ann =
        Client::connect(&server, &format!("token={}", token(&key, "ann", Some(exp)))).await;
    assert_eq!(ann.hello["type"], "connected", "{}", ann.hello);
    ann.subscribe("room", None).await;
    let error = ann.reply().await;
    assert_eq!(
        (error["code"].as_str(), error["reason"].as_str()),
        (Some("unauthorized"), Some("token expired"))
    );
    assert_eq!(ann.closed().await, Some(1008));
}

/// The local broker, keeping the hub's event sink so a test can report a lost stream.
struct Reporting(LocalBroker, std::sync::OnceLock<Arc<dyn BrokerEvents>>);

impl Broker for Reporting {
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>> {
        let _ = self.1.set(events.clone());
        self.0.start(events)
    }
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.subscribe(channel)
    }
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.unsubscribe(channel)
    }
    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.0.publish(channel, from, data)
    }
    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.0.publish_once(channel, from, data, key, window)
    }
    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<switchboard_hub::History, BrokerError>> {
        self.0.history(channel, range)
    }
    fn join(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.join(channel, client)
    }
    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.0.leave(channel, client)
    }
    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        self.0.presence(channel)
    }
}

#[tokio::test]
async fn a_lost_stream_closes_its_subscribers_with_1012_and_leaves_others_alone() {
    let broker = Arc::new(Reporting(LocalBroker::default(), Default::default()));
    let server = start_on(broker.clone(), HubConfig::default()).await;
    let mut ann = Client::connect(&server, "name=ann").await;
    let reply = ann.subscribe("room", None).await;
    ann.subscribe("other", None).await;
    let mut bob = Client::connect(&server, "name=bob").await;
    bob.subscribe("other", None).await;
    let ack = bob.publish("room", json!("before"), 1).await;
    assert_eq!(ack["offset"], 1);

    broker.1.get().unwrap().stream_lost("room");
    assert_eq!(ann.closed().await, Some(1012));
    // Bob follows only the other channel: still served.
    let ack = bob.publish("other", json!("still here"), 2).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // Ann comes back and recovers what history holds.
    let mut ann = Client::connect(&server, "name=ann").await;
    let since = json!({"epoch": reply["epoch"], "offset": 0});
    let reply = ann.subscribe("room", Some(since)).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(offsets(&reply["publications"]), [1]);
}

#[tokio::test]
async fn connected_announces_the_heartbeat_and_it_arrives_at_that_interval() {
    let mut config = HubConfig::default();
    config.heartbeat = Some(Duration::from_millis(100));
    let server = start(config, HistoryConfig::default()).await;
    let mut ann = Client::connect(&server, "name=ann").await;
    assert_eq!(ann.hello["type"], "connected", "{}", ann.hello);
    assert_eq!(ann.hello["heartbeat"], json!(0.1), "{}", ann.hello);
    // An idle connection, subscribed or not, keeps getting them.
    assert_eq!(ann.next().await, json!({"type": "heartbeat"}));
    ann.subscribe("quiet", None).await;
    for _ in 0..2 {
        let frame = ann.reply().await;
        assert_eq!(frame, json!({"type": "heartbeat"}));
    }

    // The default is 25 seconds; none announces none and sends none.
    let server = start_default().await;
    let bob = Client::connect(&server, "name=bob").await;
    assert_eq!(bob.hello["heartbeat"], json!(25), "{}", bob.hello);
    let mut config = HubConfig::default();
    config.heartbeat = None;
    let server = start(config, HistoryConfig::default()).await;
    let mut cy = Client::connect(&server, "name=cy").await;
    assert!(cy.hello.get("heartbeat").is_none(), "{}", cy.hello);
    let quiet = tokio::time::timeout(Duration::from_millis(300), cy.ws.recv()).await;
    assert!(quiet.is_err(), "a frame arrived: {quiet:?}");
}
