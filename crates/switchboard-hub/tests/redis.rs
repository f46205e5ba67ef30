//! The Redis broker against a real `redis-server` (started here on a free loopback port, with
//! no persistence): delivery across brokers in offset order, gaps filled after the Pub/Sub
//! connection is lost, lost streams reported after Redis loses its data, errors while Redis
//! is down, history limits, presence across nodes with expiry, and commands between nodes.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_hub::{
    Broker, BrokerError, ClientInfo, HistoryConfig, HistoryRange, Hub, HubError, NodeCommand,
    Publication, RedisBroker, RedisConfig, Target,
};

#[path = "support/client.rs"]
mod client;

#[path = "support/probe.rs"]
mod probe;
#[path = "support/serving.rs"]
mod serving;
use probe::{all_at_once, healthz, hub_with_healthz};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{Event, Recorder, client, data};

#[path = "support/ports.rs"]
mod ports;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::Redis;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(10);

fn config(redis: &Redis) -> RedisConfig {
    let mut config = RedisConfig::new(redis.url());
    config.timeout = Duration::from_secs(1);
    config
}

async fn node(config: RedisConfig) -> (RedisBroker, Arc<Recorder>) {
    node_with(config, Recorder::default()).await
}

async fn node_with(config: RedisConfig, recorder: Recorder) -> (RedisBroker, Arc<Recorder>) {
    let broker = RedisBroker::connect(config).await.unwrap();
    let recorder = Arc::new(recorder);
    broker.start(recorder.clone()).await.unwrap();
    (broker, recorder)
}

async fn publish(broker: &RedisBroker, channel: &str, n: u64) -> Result<u64, BrokerError> {
    Ok(broker.publish(channel, client("p"), data(n)).await?.offset)
}

fn offsets(publications: &[Arc<Publication>]) -> Vec<u64> {
    publications.iter().map(|p| p.offset).collect()
}

#[tokio::test]
async fn publications_reach_every_subscribed_node_once_in_offset_order() {
    let redis = Redis::start();
    let (a, seen_a) = node(config(&redis)).await;
    let (b, seen_b) = node(config(&redis)).await;
    a.subscribe("room").await.unwrap();
    b.subscribe("room").await.unwrap();
    // Both nodes publish at once: offsets interleave, and each is given once.
    let (from_a, from_b) = tokio::join!(
        async {
            let mut offsets = Vec::new();
            for n in 0..50 {
                offsets.push(publish(&a, "room", n).await.unwrap());
            }
            offsets
        },
        async {
            let mut offsets = Vec::new();
            for n in 0..50 {
                offsets.push(publish(&b, "room", n).await.unwrap());
            }
            offsets
        }
    );
    let mut given: Vec<u64> = from_a.into_iter().chain(from_b).collect();
    given.sort_unstable();
    assert_eq!(given, (1..=100).collect::<Vec<_>>());
    for seen in [&seen_a, &seen_b] {
        seen.until("100 publications", |e| e.len() >= 100).await;
        assert_eq!(seen.offsets("room"), (1..=100).collect::<Vec<_>>());
    }
    // The data comes back as it was sent; positions agree across nodes.
    let history = b.history("room", HistoryRange::Latest(1)).await.unwrap();
    assert_eq!(history.publications[0].data.get(), r#"{"n": 49}"#);
    let on_a = a.history("room", HistoryRange::Latest(0)).await.unwrap();
    assert_eq!(on_a.position, history.position);
    assert_eq!(on_a.position.offset, 100);
    // A channel nobody on a node follows never reaches it; unsubscribing stops delivery.
    publish(&a, "elsewhere", 1).await.unwrap();
    b.unsubscribe("room").await.unwrap();
    publish(&a, "room", 101).await.unwrap();
    seen_a.until("offset 101", |e| e.len() >= 101).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen_b.events().len(), 100);
    assert!(seen_a.offsets("elsewhere").is_empty());
}

#[tokio::test]
async fn history_keeps_the_last_n_and_drops_expired_entries() {
    let redis = Redis::start();
    let mut small = config(&redis);
    small.history = HistoryConfig { size: 3, ttl: None };
    let (broker, _) = node(small).await;
    for n in 0..5 {
        publish(&broker, "c", n).await.unwrap();
    }
    let latest = broker.history("c", HistoryRange::Latest(10)).await.unwrap();
    assert_eq!(latest.position.offset, 5);
    assert_eq!(offsets(&latest.publications), [3, 4, 5]);
    let after = |offset, limit| HistoryRange::After { offset, limit };
    let h = broker.history("c", after(3, 10)).await.unwrap();
    assert_eq!(offsets(&h.publications), [4, 5]);
    let h = broker.history("c", after(1, 10)).await.unwrap();
    assert_eq!(offsets(&h.publications), [3, 4, 5], "what is left");
    let h = broker.history("c", after(3, 1)).await.unwrap();
    assert_eq!(offsets(&h.publications), [4]);
    let h = broker.history("c", after(5, 10)).await.unwrap();
    assert!(h.publications.is_empty());
    let other = broker.history("d", HistoryRange::Latest(1)).await.unwrap();
    assert_eq!(other.position.offset, 0);
    assert_ne!(other.position.epoch, latest.position.epoch);

    let mut expiring = config(&redis);
    expiring.prefix = "ttl".into();
    expiring.history = HistoryConfig {
        size: 100,
        ttl: Some(Duration::from_millis(600)),
    };
    let (broker, _) = node(expiring).await;
    publish(&broker, "c", 1).await.unwrap();
    publish(&broker, "c", 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    publish(&broker, "c", 3).await.unwrap();
    let h = broker.history("c", HistoryRange::Latest(10)).await.unwrap();
    assert_eq!(offsets(&h.publications), [3]);
    assert_eq!(h.position.offset, 3, "expiry keeps the offset");
}

#[tokio::test]
async fn publications_missed_while_pubsub_reconnects_are_delivered_from_history() {
    let redis = Redis::start();
    let (follower, seen) = node(config(&redis)).await;
    let (publisher, _) = node(config(&redis)).await;
    follower.subscribe("room").await.unwrap();
    publish(&publisher, "room", 1).await.unwrap();
    seen.until("offset 1", |e| e.len() == 1).await;
    // Both nodes' Pub/Sub connections are cut; publishing goes on meanwhile.
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    for n in 2..=20 {
        publish(&publisher, "room", n).await.unwrap();
    }
    seen.until("offset 20", |e| e.len() >= 20).await;
    for n in 21..=25 {
        publish(&publisher, "room", n).await.unwrap();
    }
    seen.until("offset 25", |e| e.len() >= 25).await;
    assert_eq!(seen.offsets("room"), (1..=25).collect::<Vec<_>>());
    assert!(!seen.events().contains(&Event::Lost("room".into())));
}

#[tokio::test]
async fn publications_redis_lost_are_reported_as_a_lost_stream_when_their_offsets_come_again() {
    let redis = Redis::start();
    let (follower, seen) = node(config(&redis)).await;
    let (publisher, _) = node(config(&redis)).await;
    follower.subscribe("room").await.unwrap();
    for n in 1..=6 {
        publish(&publisher, "room", n).await.unwrap();
    }
    seen.until("offset 6", |_| seen.offsets("room").len() == 6)
        .await;
    // At once, Pub/Sub is cut and Redis goes back to before publication 6 (as a replica that
    // never got it does when it takes over), then gives offset 6 to another publication.
    let before_6 = r#"local kept = redis.call('XRANGE', KEYS[1], '-', '0-5')
        redis.call('DEL', KEYS[1])
        for _, e in ipairs(kept) do redis.call('XADD', KEYS[1], e[1], unpack(e[2])) end
        redis.call('HSET', KEYS[2], 'offset', 6)
        local body = '{"from":{"user":"u","conn":"c"},"data":60}'
        redis.call('XADD', KEYS[1], '0-6', 't', kept[#kept][2][2], 'b', body)"#;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (history, meta) = ("switchboard:history:room", "switchboard:meta:room");
    redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .ignore()
        .cmd("EVAL")
        .arg(&[before_6, "2", history, meta])
        .ignore()
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    // The follower finds another publication at the offset it delivered: not the same stream.
    seen.until("the loss", |e| e.contains(&Event::Lost("room".into())))
        .await;
    assert_eq!(publish(&publisher, "room", 7).await.unwrap(), 7);
    seen.until("offset 7", |e| {
        e.last() == Some(&Event::Publication("room".into(), 7))
    })
    .await;
    assert_eq!(seen.offsets("room"), (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn redis_losing_its_data_is_reported_as_a_lost_stream_and_delivery_goes_on() {
    let redis = Redis::start();
    let (a, seen) = node(config(&redis)).await;
    a.subscribe("room").await.unwrap();
    a.subscribe("quiet").await.unwrap();
    publish(&a, "room", 1).await.unwrap();
    seen.until("offset 1", |e| e.len() == 1).await;
    let before = a.history("room", HistoryRange::Latest(0)).await.unwrap();

    // Data lost while the connection stays: the next publication has another epoch.
    redis.command(&["FLUSHALL"]).await;
    publish(&a, "room", 2).await.unwrap();
    seen.until("the loss", |e| e.contains(&Event::Lost("room".into())))
        .await;
    let after = a.history("room", HistoryRange::Latest(0)).await.unwrap();
    assert_ne!(after.position.epoch, before.position.epoch);
    assert_eq!(after.position.offset, 1);
    publish(&a, "room", 3).await.unwrap();
    seen.until("offset 2 of the new epoch", |e| {
        e.last() == Some(&Event::Publication("room".into(), 2))
    })
    .await;

    // A restart without persistence: the node reconnects and finds every followed channel
    // in a new epoch, published to or not.
    let mut redis = redis;
    redis.stop();
    redis.run();
    seen.until("both channels lost", |e| {
        e.iter()
            .filter(|e| **e == Event::Lost("room".into()))
            .count()
            == 2
            && e.contains(&Event::Lost("quiet".into()))
    })
    .await;
    let offset = tokio::time::timeout(STEP, async {
        loop {
            match publish(&a, "room", 4).await {
                Ok(offset) => return offset,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(offset, 1);
    seen.until("offset 1 after the restart", |e| {
        e.last() == Some(&Event::Publication("room".into(), 1))
    })
    .await;
}

#[tokio::test]
async fn requests_fail_as_unavailable_while_redis_is_down_and_work_when_it_is_back() {
    let mut redis = Redis::start();
    let (a, _) = node(config(&redis)).await;
    publish(&a, "room", 1).await.unwrap();
    redis.stop();
    let started = std::time::Instant::now();
    let e = publish(&a, "room", 2).await.unwrap_err();
    assert!(matches!(e, BrokerError::Unavailable(_)), "{e}");
    assert!(
        started.elapsed() < STEP,
        "the error comes within the timeout"
    );
    assert!(a.subscribe("other").await.is_err());
    assert!(a.presence("room").await.is_err());
    redis.run();
    tokio::time::timeout(STEP, async {
        while publish(&a, "room", 3).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("publishing works again");
    tokio::time::timeout(STEP, async {
        while a.subscribe("other").await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("subscribing works again");
}

#[tokio::test]
async fn presence_spans_nodes_and_a_silent_node_leaves_after_its_timeout() {
    let redis = Redis::start();
    let mut fast = config(&redis);
    fast.node_timeout = Duration::from_millis(900);
    let (a, _) = node(fast.clone()).await;
    let (b, seen_b) = node(fast).await;
    b.subscribe("room").await.unwrap();
    a.join("room", client("on-a")).await.unwrap();
    b.join("room", client("on-b")).await.unwrap();
    seen_b
        .until("both joins", |e| {
            e.contains(&Event::Join("room".into(), "on-a".into()))
                && e.contains(&Event::Join("room".into(), "on-b".into()))
        })
        .await;
    let conns = |clients: Vec<ClientInfo>| clients.into_iter().map(|c| c.conn).collect::<Vec<_>>();
    assert_eq!(conns(b.presence("room").await.unwrap()), ["on-a", "on-b"]);
    assert_eq!(conns(a.presence("room").await.unwrap()), ["on-a", "on-b"]);
    // A leave is announced once, even when repeated.
    b.leave("room", client("on-b")).await.unwrap();
    b.leave("room", client("on-b")).await.unwrap();
    b.join("room", client("on-b")).await.unwrap();
    // Node A stops beating (as if it crashed): its client leaves after the timeout.
    drop(a);
    seen_b
        .until("on-a's leave", |e| {
            e.contains(&Event::Leave("room".into(), "on-a".into()))
        })
        .await;
    assert_eq!(conns(b.presence("room").await.unwrap()), ["on-b"]);
    let leaves = seen_b
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Leave(..)))
        .count();
    assert_eq!(leaves, 2, "{:?}", seen_b.events());

    // After Redis lost its data, the node registers its clients again.
    redis.command(&["FLUSHALL"]).await;
    tokio::time::timeout(STEP, async {
        while conns(b.presence("room").await.unwrap()).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("presence registered again");
    assert_eq!(conns(b.presence("room").await.unwrap()), ["on-b"]);
}

#[tokio::test]
async fn a_users_first_join_and_last_leave_are_told_once_across_nodes() {
    let redis = Redis::start();
    let mut fast = config(&redis);
    fast.node_timeout = Duration::from_millis(900);
    let (a, _) = node(fast.clone()).await;
    let (b, seen_b) = node(fast).await;
    let ann = |conn: &str| ClientInfo {
        user: "ann".into(),
        ..client(conn)
    };
    let told = |x: Result<bool, BrokerError>, y: Result<bool, BrokerError>| {
        usize::from(x.unwrap()) + usize::from(y.unwrap())
    };
    let (x, y) = tokio::join!(
        a.join_user("room", ann("a1")),
        b.join_user("room", ann("b1"))
    );
    assert_eq!(told(x, y), 1, "one of two joins at once is ann's first");
    assert!(!a.join_user("room", ann("a1")).await.unwrap(), "a repeat");
    let (x, y) = tokio::join!(
        a.leave_user("room", ann("a1")),
        b.leave_user("room", ann("b1"))
    );
    assert_eq!(told(x, y), 1, "one of two leaves at once is ann's last");
    assert!(!b.leave_user("room", ann("b1")).await.unwrap(), "a repeat");

    // A node that dies: its entries are counted out when swept, and the node that swept
    // them is told of the users that had no other.
    b.subscribe("room").await.unwrap();
    assert!(a.join_user("room", ann("a2")).await.unwrap());
    assert!(!b.join_user("room", ann("b2")).await.unwrap());
    b.leave("room", ann("b2")).await.unwrap();
    a.join("other", client("bob-a")).await.unwrap();
    b.join("other", client("bob-b")).await.unwrap();
    let bob = |conn: &str| ClientInfo {
        user: "bob".into(),
        ..client(conn)
    };
    a.join("other", bob("a3")).await.unwrap();
    b.join("other", bob("b3")).await.unwrap();
    drop(a);
    let (ann_swept, bob_a_swept) = (
        Event::Swept("room".into(), "a2".into()),
        Event::Swept("other".into(), "bob-a".into()),
    );
    seen_b
        .until("the sweep of node a", |e| {
            e.contains(&ann_swept)
                && e.contains(&bob_a_swept)
                && e.contains(&Event::Leave("room".into(), "a2".into()))
        })
        .await;
    assert!(
        !seen_b
            .events()
            .contains(&Event::Swept("other".into(), "a3".into())),
        "bob has a connection on node b"
    );
    assert!(b.join_user("room", ann("b3")).await.unwrap(), "first again");
}

#[tokio::test]
async fn presence_changes_lost_to_an_outage_are_made_good_when_redis_is_back() {
    let dir = std::env::temp_dir().join(format!("switchboard-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Redis::start_in(Some(dir.clone()));
    let mut fast = config(&redis);
    fast.node_timeout = Duration::from_millis(900);
    let (a, _) = node(fast.clone()).await;
    let (b, _) = node(fast).await;
    a.join("room", client("stays")).await.unwrap();
    a.join("room", client("leaves")).await.unwrap();
    // Redis goes down with its data saved; a leave and a join fail meanwhile.
    redis.command(&["SAVE"]).await;
    redis.stop();
    assert!(a.leave("room", client("leaves")).await.is_err());
    assert!(a.join("room", client("late")).await.is_err());
    redis.run();
    let conns = |clients: Vec<ClientInfo>| clients.into_iter().map(|c| c.conn).collect::<Vec<_>>();
    tokio::time::timeout(STEP, async {
        loop {
            if let Ok(clients) = b.presence("room").await
                && conns(clients) == ["late", "stays"]
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("presence made good");
    drop(redis);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_idempotent_publish_retried_on_another_node_is_delivered_once() {
    let redis = Redis::start();
    let (a, seen_a) = node(config(&redis)).await;
    let (b, _) = node(config(&redis)).await;
    a.subscribe("orders").await.unwrap();
    let window = Duration::from_millis(300);
    let first = a
        .publish_once("orders", client("p"), data(1), "order-7", window)
        .await
        .unwrap();
    let retry = b
        .publish_once("orders", client("p"), data(1), "order-7", window)
        .await
        .unwrap();
    assert_eq!(retry, first, "the retry returns the first result");
    let other_key = b
        .publish_once("orders", client("p"), data(2), "order-8", window)
        .await
        .unwrap();
    assert_eq!(other_key.offset, first.offset + 1);
    let other_channel = b
        .publish_once("invoices", client("p"), data(1), "order-7", window)
        .await
        .unwrap();
    assert_eq!(other_channel.offset, 1, "keys are per channel");
    seen_a.until("two publications", |e| e.len() >= 2).await;
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let after_window = b
        .publish_once("orders", client("p"), data(1), "order-7", window)
        .await
        .unwrap();
    assert_eq!(
        after_window.offset,
        first.offset + 2,
        "the window has ended"
    );
    seen_a.until("three publications", |e| e.len() >= 3).await;
    assert_eq!(seen_a.offsets("orders"), [1, 2, 3]);
}

#[tokio::test]
async fn a_command_reaches_every_other_node_once_and_their_replies_come_back() {
    let redis = Redis::start();
    let (a, seen_a) = node_with(config(&redis), Recorder::named("a")).await;
    let (_b, seen_b) = node_with(config(&redis), Recorder::named("b")).await;
    let (_c, seen_c) = node_with(config(&redis), Recorder::named("c")).await;
    let command = NodeCommand::Subscribe {
        user: "ann".into(),
        channel: "user:ann".into(),
    };
    let replies = a.ask_nodes(&command).await.unwrap();
    let mut names: Vec<&str> = replies
        .replies
        .iter()
        .map(|r| r.node.node.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["b", "c"],
        "every other node answers, the asker does not"
    );
    assert_eq!(replies.unanswered, 0);
    assert!(replies.replies.iter().all(|r| r.done == 1));
    for seen in [&seen_b, &seen_c] {
        assert_eq!(seen.events(), [Event::Command(command.clone())]);
    }
    assert!(
        seen_a.events().is_empty(),
        "the asker runs its own part itself"
    );
}

#[tokio::test]
async fn a_node_that_does_not_answer_is_counted_and_the_others_still_reply() {
    let redis = Redis::start();
    let (a, _) = node_with(config(&redis), Recorder::named("a")).await;
    let (_b, _) = node_with(config(&redis), Recorder::named("b")).await;
    let (_c, seen_c) = node_with(config(&redis), Recorder::silent("c")).await;
    let replies = a.ask_nodes(&NodeCommand::Info).await.unwrap();
    assert_eq!(replies.replies.len(), 1);
    assert_eq!(replies.replies[0].node.node, "b");
    assert_eq!(
        replies.unanswered, 1,
        "c heard the command and did not answer"
    );
    assert_eq!(seen_c.events(), [Event::Command(NodeCommand::Info)]);
}

#[tokio::test]
async fn commands_fail_as_unavailable_while_redis_is_down() {
    let mut redis = Redis::start();
    let (a, _) = node_with(config(&redis), Recorder::named("a")).await;
    redis.stop();
    let asked = a.ask_nodes(&NodeCommand::Info).await;
    assert!(
        matches!(asked, Err(BrokerError::Unavailable(_))),
        "{asked:?}"
    );
}

/// A hub on a Redis broker, served on a free loopback port.
async fn hub_on(redis: &Redis) -> (Hub, std::net::SocketAddr) {
    hub_with_healthz(RedisBroker::connect(config(redis)).await.unwrap()).await
}

#[tokio::test]
async fn the_server_api_on_one_node_acts_on_the_connections_of_every_node() {
    use client::{frame, join};
    let redis = Redis::start();
    let (a, addr_a) = hub_on(&redis).await;
    let (_b, addr_b) = hub_on(&redis).await;
    let (_c, addr_c) = hub_on(&redis).await;
    let mut ann_b = join(addr_b, "ann").await;
    let mut ann_c = join(addr_c, "ann").await;
    let _bob_a = join(addr_a, "bob").await;

    let info = a.info().await.unwrap();
    assert_eq!((info.nodes.len(), info.connections), (3, 3), "{info:?}");
    assert_eq!(info.unanswered, 0);

    assert_eq!(a.subscribe("ann", "user:ann").await.unwrap(), 2);
    for ws in [&mut ann_b, &mut ann_c] {
        assert_eq!(frame(ws).await["type"], "subscribed");
    }
    let data = RawValue::from_string(r#"{"shipped":true}"#.into()).unwrap();
    a.publish("user:ann", data, None).await.unwrap();
    for ws in [&mut ann_b, &mut ann_c] {
        assert_eq!(frame(ws).await["data"]["shipped"], true);
    }
    let channels = a.channels(Some("user:*")).await.unwrap().channels;
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].subscribers, 2, "summed over nodes b and c");

    assert_eq!(a.unsubscribe("ann", "user:ann").await.unwrap(), 2);
    for ws in [&mut ann_b, &mut ann_c] {
        assert_eq!(frame(ws).await["type"], "unsubscribed");
    }
    let bye = switchboard::CloseCode::from(4001);
    let closed = a.disconnect(Target::User("ann"), bye, "bye").await;
    assert_eq!(closed.unwrap(), 2);
    for ws in [&mut ann_b, &mut ann_c] {
        assert_eq!(frame(ws).await, serde_json::json!({"closed": 4001}));
    }
    assert_eq!(a.info().await.unwrap().connections, 1, "bob is still there");
}

#[tokio::test]
async fn an_action_that_cannot_reach_the_other_nodes_says_what_was_done() {
    use client::{frame, join};
    let mut redis = Redis::start();
    let (a, addr_a) = hub_on(&redis).await;
    let mut ann = join(addr_a, "ann").await;
    redis.stop();
    let bye = switchboard::CloseCode::from(4001);
    let closed = a.disconnect(Target::User("ann"), bye, "bye").await;
    assert!(
        matches!(closed, Err(HubError::Partial { done: 1, .. })),
        "{closed:?}"
    );
    assert_eq!(frame(&mut ann).await, serde_json::json!({"closed": 4001}));
    assert!(matches!(a.info().await, Err(HubError::Unavailable(_))));
}

/// The value of a counter in the broker's metrics (its one shard's).
fn counter(broker: &RedisBroker, name: &str) -> u64 {
    let mut out = String::new();
    broker.render_metrics(&mut out);
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix("{shard=\"0\"} "))
        .unwrap_or_else(|| panic!("{name} not in {out}"));
    line.parse().unwrap()
}

#[tokio::test]
async fn identical_history_reads_at_the_same_moment_are_one_redis_read() {
    let redis = Redis::start();
    let (a, _) = node(config(&redis)).await;
    for n in 1..=3 {
        publish(&a, "crowd", n).await.unwrap();
    }
    let reads = counter(&a, "switchboard_redis_history_reads_total");
    let range = HistoryRange::After {
        offset: 1,
        limit: 10,
    };
    let asked = (0..50).map(|_| a.history("crowd", range)).collect();
    let answers = tokio::time::timeout(STEP, all_at_once(asked))
        .await
        .unwrap();
    for answer in answers {
        let history = answer.unwrap();
        assert_eq!(offsets(&history.publications), [2, 3]);
        assert_eq!(history.position.offset, 3);
    }
    assert_eq!(
        counter(&a, "switchboard_redis_history_reads_total") - reads,
        1,
        "50 identical reads at once are one read of redis"
    );
    assert_eq!(
        counter(&a, "switchboard_redis_history_reads_coalesced_total"),
        49
    );
    // A read asked after a publish was acknowledged sees it: it is not answered by a read
    // sent before.
    let other = (0..2).map(|_| a.history("crowd", range)).collect();
    let [first, second]: [_; 2] = all_at_once(other).await.try_into().ok().unwrap();
    publish(&a, "crowd", 4).await.unwrap();
    let after = a.history("crowd", range).await.unwrap();
    assert_eq!(offsets(&after.publications), [2, 3, 4]);
    assert_eq!(offsets(&first.unwrap().publications), [2, 3]);
    assert_eq!(offsets(&second.unwrap().publications), [2, 3]);
    // Other ranges are other reads.
    let reads = counter(&a, "switchboard_redis_history_reads_total");
    let latest = a.history("crowd", HistoryRange::Latest(1));
    let after_two = a.history(
        "crowd",
        HistoryRange::After {
            offset: 2,
            limit: 10,
        },
    );
    let answers = all_at_once(vec![latest, after_two]).await;
    assert_eq!(offsets(&answers[0].as_ref().unwrap().publications), [4]);
    assert_eq!(offsets(&answers[1].as_ref().unwrap().publications), [3, 4]);
    assert_eq!(
        counter(&a, "switchboard_redis_history_reads_total") - reads,
        2
    );
}

#[tokio::test]
async fn publishes_awaited_together_keep_the_order_they_were_made_in() {
    let redis = Redis::start();
    let (a, recorder) = node(config(&redis)).await;
    a.subscribe("line").await.unwrap();
    a.subscribe("side").await.unwrap();
    let side = |n: &u64| n.is_multiple_of(7);
    // Made in order, polled in reverse: offsets follow the calls, channel by channel.
    let made: Vec<_> = (1..=200)
        .map(|n| {
            let channel = if side(&n) { "side" } else { "line" };
            a.publish(channel, client("c1"), data(n))
        })
        .collect();
    let batches = counter(&a, "switchboard_redis_publish_batch_size_count");
    let mut answers = all_at_once(made.into_iter().rev().collect()).await;
    answers.reverse();
    let (mut on_line, mut on_side) = (0, 0);
    for (n, answer) in (1..=200).zip(answers) {
        let expected = if side(&n) { &mut on_side } else { &mut on_line };
        *expected += 1;
        assert_eq!(answer.unwrap().offset, *expected, "publish {n}");
    }
    assert_eq!((on_line, on_side), (172, 28));
    assert_eq!(
        counter(&a, "switchboard_redis_publish_batch_size_count") - batches,
        1,
        "publishes queued together go to redis in one pipeline"
    );
    let history = a.history("line", HistoryRange::Latest(100)).await.unwrap();
    let sent: Vec<u64> = history
        .publications
        .iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p.data.get()).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (1..=200).filter(|n| !side(n)).skip(72).collect();
    assert_eq!(sent, expected, "history holds them in call order");
    recorder
        .until("every publication", |events| events.len() >= 200)
        .await;
    assert_eq!(recorder.offsets("line"), (1..=172).collect::<Vec<_>>());
    assert_eq!(recorder.offsets("side"), (1..=28).collect::<Vec<_>>());
}

#[tokio::test]
async fn health_says_redis_is_unreachable_while_it_is_down_and_on_the_healthz_route() {
    let mut redis = Redis::start();
    let (hub, _) = hub_on(&redis).await;
    let checked = hub.clone();
    let server = switchboard::Server::builder()
        .health_check("/healthz", move || {
            checked.health().map_err(|e| e.to_string())
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|_ws, _request| async {}));
    assert_eq!(healthz(addr).await.0, 200);
    redis.stop();
    let (_, body) = until_healthz(addr, 503).await;
    assert!(body.starts_with("unavailable: "), "{body}");
    assert!(hub.health().is_err());
    redis.run();
    let (_, body) = until_healthz(addr, 200).await;
    assert_eq!(body, "ok\n");
    assert!(hub.health().is_ok());
}

/// Asks `/healthz` until it answers `status` (bounded by `STEP`).
async fn until_healthz(addr: std::net::SocketAddr, status: u16) -> (u16, String) {
    tokio::time::timeout(STEP, async {
        loop {
            let answer = healthz(addr).await;
            if answer.0 == status {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/healthz never answered {status}"))
}

#[tokio::test]
async fn a_connection_keeps_publishes_in_flight_and_gets_every_answer_in_order() {
    use client::{frame, join};
    use switchboard::Message;
    let redis = Redis::start();
    let (a, addr_a) = hub_on(&redis).await;
    let (_b, addr_b) = hub_on(&redis).await;
    let mut reader = join(addr_b, "reader").await;
    reader
        .send(Message::text(r#"{"op":"subscribe","channel":"flow"}"#))
        .await
        .unwrap();
    assert_eq!(frame(&mut reader).await["type"], "subscribed");
    let mut writer = join(addr_a, "writer").await;
    // Sent without waiting: the answers come in request order, an error among them.
    for i in 0..100 {
        let publish = format!(r#"{{"op":"publish","channel":"flow","id":{i},"data":{i}}}"#);
        writer.send(Message::text(publish)).await.unwrap();
        if i == 49 {
            let bad = r#"{"op":"publish","channel":"flow","id":"bad"}"#;
            writer.send(Message::text(bad)).await.unwrap();
        }
    }
    let history = r#"{"op":"history","channel":"flow","id":"h","limit":1}"#;
    writer.send(Message::text(history)).await.unwrap();
    for i in 0..100 {
        if i == 50 {
            let error = frame(&mut writer).await;
            assert_eq!(
                (&error["type"], &error["id"]),
                (&"error".into(), &"bad".into())
            );
        }
        let ack = frame(&mut writer).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["id"], i, "{ack}");
        assert_eq!(ack["offset"], i + 1, "{ack}");
    }
    let history = frame(&mut writer).await;
    assert_eq!(
        (&history["id"], &history["offset"]),
        (&"h".into(), &100.into())
    );
    for i in 0..100 {
        let message = frame(&mut reader).await;
        assert_eq!(
            (&message["offset"], &message["data"]),
            (&(i + 1).into(), &i.into())
        );
    }
    let mut out = String::new();
    a.render_metrics(&mut out);
    let batches: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_redis_publish_batch_size_count{shard=\"0\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        batches < 100,
        "one connection's publishes share pipelines: {batches} batches for 100"
    );
}

#[tokio::test]
async fn a_publish_without_id_is_published_when_its_client_leaves_at_once() {
    use client::{frame, join};
    use switchboard::Message;
    let redis = Redis::start();
    let (_a, addr_a) = hub_on(&redis).await;
    let mut reader = join(addr_a, "reader").await;
    reader
        .send(Message::text(r#"{"op":"subscribe","channel":"note"}"#))
        .await
        .unwrap();
    assert_eq!(frame(&mut reader).await["type"], "subscribed");
    let mut writer = join(addr_a, "writer").await;
    for i in 0..10 {
        let publish = format!(r#"{{"op":"publish","channel":"note","data":{i}}}"#);
        writer.send(Message::text(publish)).await.unwrap();
    }
    drop(writer);
    for i in 0..10 {
        assert_eq!(frame(&mut reader).await["data"], i);
    }
}
