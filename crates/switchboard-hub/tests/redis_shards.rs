//! The Redis broker sharded over two `redis-server`s (each started here on a free loopback
//! port, with no persistence, and killed by PID): channels land on their shard with all their
//! keys, nodes deliver and recover across shards, commands between nodes go over the first
//! shard, and a shard that is lost fails only its own channels, which start a new epoch when
//! it returns empty.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_hub::{
    Broker, BrokerError, HistoryRange, Hub, NodeCommand, RedisBroker, RedisConfig,
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

/// Both shards, in this order on every node.
fn config(shards: &[&Redis]) -> RedisConfig {
    let urls: Vec<String> = shards.iter().map(|r| r.url()).collect();
    let mut config = RedisConfig::new(urls.join(","));
    config.timeout = Duration::from_secs(1);
    config
}

async fn node(config: RedisConfig) -> (RedisBroker, Arc<Recorder>) {
    let broker = RedisBroker::connect(config).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    broker.start(recorder.clone()).await.unwrap();
    (broker, recorder)
}

async fn publish(broker: &RedisBroker, channel: &str, n: u64) -> Result<u64, BrokerError> {
    Ok(broker.publish(channel, client("p"), data(n)).await?.offset)
}

/// `n` channel names whose shard is `shard` (of 2).
fn channels_on(broker: &RedisBroker, shard: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("room-{i}"))
        .filter(|channel| broker.shard_of(channel) == shard)
        .take(n)
        .collect()
}

/// A metric sample of the broker's, by its name with labels.
fn sample(broker: &RedisBroker, name: &str) -> String {
    let mut out = String::new();
    broker.render_metrics(&mut out);
    out.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not in {out}"))
        .to_owned()
}

#[tokio::test]
async fn a_channel_lives_on_its_shard_and_every_node_delivers_it_in_order() {
    let (r0, r1) = (Redis::start(), Redis::start());
    let (a, seen_a) = node(config(&[&r0, &r1])).await;
    let (b, seen_b) = node(config(&[&r0, &r1])).await;
    assert_eq!(a.shards(), 2);
    let on0 = channels_on(&a, 0, 2);
    let on1 = channels_on(&a, 1, 2);
    let all: Vec<&String> = on0.iter().chain(&on1).collect();
    for channel in &all {
        assert_eq!(a.shard_of(channel), b.shard_of(channel), "nodes agree");
        a.subscribe(channel).await.unwrap();
        b.subscribe(channel).await.unwrap();
    }
    // Both nodes publish to every channel at once, as many publishes in flight as calls.
    let mut publishes = Vec::new();
    for i in 0..20 {
        for channel in &all {
            let from = if i % 2 == 0 { &a } else { &b };
            publishes.push(from.publish(channel, client("p"), data(i)));
        }
    }
    for answer in all_at_once(publishes).await {
        answer.unwrap();
    }
    for seen in [&seen_a, &seen_b] {
        seen.until("every publication", |e| e.len() >= 80).await;
        for channel in &all {
            assert_eq!(seen.offsets(channel), (1..=20).collect::<Vec<_>>());
        }
    }
    // Each channel's keys are on its shard, and only there.
    for (channel, home, other) in [
        (&on0[0], &r0, &r1),
        (&on0[1], &r0, &r1),
        (&on1[0], &r1, &r0),
        (&on1[1], &r1, &r0),
    ] {
        for key in [
            format!("switchboard:meta:{channel}"),
            format!("switchboard:history:{channel}"),
        ] {
            assert!(home.exists(&key).await, "{key} on its shard");
            assert!(!other.exists(&key).await, "{key} not on the other");
        }
    }
    // History and positions are read from the channel's shard, on either node.
    let history = b
        .history(
            &on1[0],
            HistoryRange::After {
                offset: 15,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [16, 17, 18, 19, 20]);
    let from_a = a.history(&on1[0], HistoryRange::Latest(0)).await.unwrap();
    assert_eq!(from_a.position, history.position);

    // Presence and idempotency keys live with the channel too.
    a.join(&on1[1], client("c1")).await.unwrap();
    seen_b
        .until("the join", |e| {
            e.contains(&Event::Join(on1[1].clone(), "c1".into()))
        })
        .await;
    let presence = format!("switchboard:presence:{}", on1[1]);
    assert!(r1.exists(&presence).await && !r0.exists(&presence).await);
    assert_eq!(b.presence(&on1[1]).await.unwrap(), [client("c1")]);
    let window = Duration::from_secs(60);
    let first = a
        .publish_once(&on1[0], client("p"), data(1), "k1", window)
        .await
        .unwrap();
    let again = b
        .publish_once(&on1[0], client("p"), data(1), "k1", window)
        .await
        .unwrap();
    assert_eq!(first, again, "a retry on another node is the same publish");
    let once = format!("switchboard:once:{} k1", on1[0]);
    assert!(r1.exists(&once).await && !r0.exists(&once).await);
}

#[tokio::test]
async fn commands_between_nodes_go_over_the_first_shard() {
    let (r0, r1) = (Redis::start(), Redis::start());
    let (a, _) = node(config(&[&r0, &r1])).await;
    let (_b, seen_b) = node(config(&[&r0, &r1])).await;
    let numsub = |redis: &Redis| {
        let redis = redis.url();
        async move {
            let client = redis::Client::open(redis).unwrap();
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("switchboard:control")
                .query_async(&mut con)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(
        numsub(&r0).await,
        2,
        "both nodes follow the control channel"
    );
    assert_eq!(numsub(&r1).await, 0, "and only on the first shard");
    let replies = a.ask_nodes(&NodeCommand::Info).await.unwrap();
    assert_eq!((replies.replies.len(), replies.unanswered), (1, 0));
    seen_b
        .until("the command", |e| {
            e.iter().any(|e| matches!(e, Event::Command(_)))
        })
        .await;
}

#[tokio::test]
async fn a_lost_shard_fails_only_its_channels_which_start_a_new_epoch_when_it_returns_empty() {
    let r0 = Redis::start();
    let mut r1 = Redis::start();
    let (a, seen_a) = node(config(&[&r0, &r1])).await;
    let (b, seen_b) = node(config(&[&r0, &r1])).await;
    let kept = channels_on(&a, 0, 1).remove(0);
    let lost = channels_on(&a, 1, 2);
    for broker in [&a, &b] {
        broker.subscribe(&kept).await.unwrap();
        broker.subscribe(&lost[0]).await.unwrap();
    }
    for n in 1..=5 {
        assert_eq!(publish(&a, &kept, n).await.unwrap(), n);
        assert_eq!(publish(&b, &lost[0], n).await.unwrap(), n);
    }
    let old_epoch = a
        .history(&lost[0], HistoryRange::Latest(0))
        .await
        .unwrap()
        .position
        .epoch;
    for seen in [&seen_a, &seen_b] {
        seen.until("the first ten", |e| e.len() >= 10).await;
    }
    assert!(a.degraded().is_none());

    r1.stop();
    // The other shard's channel goes on, with every publish delivered to both nodes.
    for n in 6..=30 {
        let from = if n % 2 == 0 { &a } else { &b };
        assert_eq!(publish(from, &kept, n).await.unwrap(), n);
    }
    for seen in [&seen_a, &seen_b] {
        seen.until("the kept channel's 30", |_| seen.offsets(&kept).len() >= 30)
            .await;
        assert_eq!(seen.offsets(&kept), (1..=30).collect::<Vec<_>>());
    }
    // The lost shard's channels fail as unavailable, naming the shard.
    let e = publish(&a, &lost[0], 6).await.unwrap_err();
    assert!(matches!(e, BrokerError::Unavailable(_)), "{e}");
    let why = e.to_string();
    assert!(why.contains("shard 1"), "{why}");
    assert!(a.subscribe(&lost[1]).await.is_err());
    assert!(b.history(&lost[0], HistoryRange::Latest(1)).await.is_err());
    assert!(b.presence(&lost[1]).await.is_err());
    // The node is degraded, not down: the other shard serves.
    assert!(a.health().is_ok());
    let degraded = a.degraded().expect("degraded while a shard is down");
    assert!(degraded.contains("shard 1"), "{degraded}");
    assert_eq!(sample(&a, "switchboard_redis_up{shard=\"1\"}"), "0");
    assert_eq!(sample(&a, "switchboard_redis_up{shard=\"0\"}"), "1");
    assert_ne!(
        sample(&a, "switchboard_redis_errors_total{shard=\"1\"}"),
        "0"
    );
    // Commands between nodes go over shard 0, which is up.
    assert!(a.ask_nodes(&NodeCommand::Info).await.is_ok());

    r1.run();
    // Back, empty: both nodes find the channel's stream lost, and it starts a new epoch.
    for seen in [&seen_a, &seen_b] {
        seen.until("the lost stream", |e| {
            e.contains(&Event::Lost(lost[0].clone()))
        })
        .await;
    }
    let offset = tokio::time::timeout(STEP, async {
        loop {
            match publish(&a, &lost[0], 1).await {
                Ok(offset) => return offset,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("publishing to the returned shard works again");
    assert_eq!(offset, 1, "offsets restart");
    let now = b.history(&lost[0], HistoryRange::Latest(0)).await.unwrap();
    assert_ne!(now.position.epoch, old_epoch, "a new epoch");
    for seen in [&seen_a, &seen_b] {
        seen.until("the new epoch's first", |_| {
            seen.offsets(&lost[0]).last() == Some(&1)
        })
        .await;
    }
    tokio::time::timeout(STEP, async {
        while a.degraded().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("healthy again");
    assert!(a.subscribe(&lost[1]).await.is_ok());
}

#[tokio::test]
async fn every_shard_down_is_unhealthy() {
    let mut r0 = Redis::start();
    let mut r1 = Redis::start();
    let (a, _) = node(config(&[&r0, &r1])).await;
    assert!(a.health().is_ok());
    r0.stop();
    r1.stop();
    tokio::time::timeout(STEP, async {
        while a.health().is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("unhealthy");
    let why = a.health().unwrap_err().to_string();
    assert!(why.contains("shard 0") && why.contains("shard 1"), "{why}");
    assert!(a.degraded().is_none(), "down, not degraded");
}

/// A hub over both shards, served on a free loopback port with its `/healthz`.
async fn hub_on(shards: &[&Redis]) -> (Hub, std::net::SocketAddr) {
    hub_with_healthz(RedisBroker::connect(config(shards)).await.unwrap()).await
}

#[tokio::test]
async fn clients_recover_on_another_node_and_a_lost_shard_is_unavailable_to_them() {
    use client::{frame, join};
    use serde_json::json;
    use switchboard::Message;

    let r0 = Redis::start();
    let mut r1 = Redis::start();
    let (a, addr_a) = hub_on(&[&r0, &r1]).await;
    let (_b, addr_b) = hub_on(&[&r0, &r1]).await;
    let broker = RedisBroker::connect(config(&[&r0, &r1])).await.unwrap();
    let kept = channels_on(&broker, 0, 1).remove(0);
    let lost = channels_on(&broker, 1, 1).remove(0);
    drop(broker);

    // A client on node A sees 3 messages of each channel, leaves, 5 more are published on
    // node B, and it recovers exactly those on node B.
    let mut ann = join(addr_a, "ann").await;
    let mut positions = Vec::new();
    for channel in [&kept, &lost] {
        let subscribe = json!({"op": "subscribe", "channel": channel, "id": 1});
        ann.send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let reply = frame(&mut ann).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        positions.push(reply["epoch"].clone());
    }
    for channel in [&kept, &lost] {
        for n in 0..3 {
            let data = RawValue::from_string(n.to_string()).unwrap();
            a.publish(channel, data, None).await.unwrap();
        }
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        let message = frame(&mut ann).await;
        assert_eq!(message["type"], "message", "{message}");
        got.push((message["channel"].clone(), message["offset"].clone()));
    }
    drop(ann);
    let mut bob = join(addr_b, "bob").await;
    for channel in [&kept, &lost] {
        for n in 3..8 {
            let publish = json!({"op": "publish", "channel": channel, "id": n, "data": n});
            bob.send(Message::text(publish.to_string())).await.unwrap();
            assert_eq!(frame(&mut bob).await["type"], "ack");
        }
    }
    let mut ann = join(addr_b, "ann").await;
    for (channel, epoch) in [&kept, &lost].into_iter().zip(&positions) {
        let subscribe = json!({"op": "subscribe", "channel": channel, "id": 2,
            "since": {"epoch": epoch, "offset": 3}});
        ann.send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let reply = frame(&mut ann).await;
        assert_eq!(reply["recovered"], true, "{reply}");
        let offsets: Vec<u64> = reply["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [4, 5, 6, 7, 8], "{channel}");
    }
    assert_eq!(healthz(addr_a).await, (200, "ok\n".to_owned()));

    // Shard 1 lost: its channel's publishes fail as `unavailable`, the other's go on, and
    // /healthz says which shard is down, with a 200.
    r1.stop();
    let deadline = tokio::time::Instant::now() + STEP;
    let (status, body) = loop {
        let answer = healthz(addr_a).await;
        if answer.1 != "ok\n" || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("degraded: redis shard 1 ("), "{body}");
    let publish = json!({"op": "publish", "channel": lost, "id": 10, "data": 10});
    bob.send(Message::text(publish.to_string())).await.unwrap();
    let reply = frame(&mut bob).await;
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("unavailable")),
        "{reply}"
    );
    let publish = json!({"op": "publish", "channel": kept, "id": 11, "data": 11});
    bob.send(Message::text(publish.to_string())).await.unwrap();
    let reply = frame(&mut bob).await;
    assert_eq!(
        (&reply["type"], &reply["offset"]),
        (&json!("ack"), &json!(9)),
        "{reply}"
    );
}
