//! The Redis broker on a Redis Cluster of three masters (each a `redis-server` started here on
//! free loopback ports, with no persistence, joined by `redis-cli --cluster create`, and
//! killed by PID), some with a replica per master: every master holds the channels of its
//! slots, nodes deliver and recover across masters, presence and commands between nodes work,
//! a master that is lost fails only its own channels, nodes follow a replica that takes over,
//! and publishes it never got are reported as a lost stream.
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_hub::{
    Broker, BrokerError, HistoryRange, Hub, NodeCommand, RedisBroker, RedisConfig,
};

#[path = "support/client.rs"]
mod client;

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

#[path = "support/probe.rs"]
mod probe;
#[path = "support/serving.rs"]
mod serving;
use probe::{all_at_once, healthz, hub_with_healthz};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{Event, Recorder, client, data};

#[path = "support/temp.rs"]
mod temp;
use temp::TempDir;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(10);

/// A `redis-server` in cluster mode, killed (by PID) when dropped.
struct Member {
    port: u16,
    /// What clients (and replicas, of their master) must give.
    password: Option<String>,
    child: Option<Child>,
}

/// `redis-cli`, with the cluster's password.
fn redis_cli(password: Option<&str>) -> Command {
    let mut cli = Command::new("redis-cli");
    if let Some(password) = password {
        cli.args(["--no-auth-warning", "-a", password]);
    }
    cli
}

impl Member {
    fn start(dir: &TempDir, password: Option<&str>) -> Self {
        let port = free_port();
        // The cluster bus port would be port + 10000, which may not exist or be free.
        let bus = free_port();
        let config = dir.0.join(format!("nodes-{port}.conf"));
        let mut server = Command::new("redis-server");
        if let Some(password) = password {
            server.args(["--requirepass", password, "--masterauth", password]);
        }
        let child = server
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
            ])
            .args(["--cluster-config-file", &config.display().to_string()])
            // A lost master fails its own slots only, not the whole cluster.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let member = Self {
            port,
            password: password.map(str::to_owned),
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        member
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command on a connection of its own.
    async fn command(&self, args: &[&str]) -> redis::Value {
        let password = self.password.as_deref().unwrap_or_default();
        let url = format!("redis://:{password}@127.0.0.1:{}", self.port);
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut con).await.unwrap()
    }

    /// A field of `INFO replication`.
    async fn replication(&self, field: &str) -> String {
        let info = match self.command(&["INFO", "replication"]).await {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("INFO answered {other:?}"),
        };
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_default()
            .to_owned()
    }

    /// Sends `signal` (STOP, CONT) to the server.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exists(&self, key: &str) -> bool {
        self.command(&["EXISTS", key]).await == redis::Value::Int(1)
    }

    /// How many connections follow the sharded Pub/Sub channel `name` here.
    async fn shard_subscribers(&self, name: &str) -> i64 {
        match self.command(&["PUBSUB", "SHARDNUMSUB", name]).await {
            redis::Value::Array(reply) => redis::from_redis_value(reply[1].clone()).unwrap(),
            other => panic!("PUBSUB SHARDNUMSUB answered {other:?}"),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three masters owning a third of the slots each, in slot order, and their replicas.
struct Cluster {
    masters: Vec<Member>,
    replicas: Vec<Member>,
    _dir: TempDir,
}

impl Cluster {
    fn start() -> Self {
        Self::with(0, None)
    }

    fn with_replicas(replicas: usize) -> Self {
        Self::with(replicas, None)
    }

    /// Three masters with `replicas` replicas each, that want `password` when given.
    fn with(replicas: usize, password: Option<&str>) -> Self {
        let dir = TempDir::new("redis-cluster");
        let mut members: Vec<Member> = (0..3 * (1 + replicas))
            .map(|_| Member::start(&dir, password))
            .collect();
        let status = redis_cli(password)
            .arg("--cluster")
            .arg("create")
            .args(members.iter().map(|m| format!("127.0.0.1:{}", m.port)))
            .args(["--cluster-replicas", &replicas.to_string()])
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        // redis-cli makes masters of the first three addresses and gives them the slots in
        // that order; the broker numbers masters by their first slot, so the same order.
        let deadline = std::time::Instant::now() + STEP;
        for master in &mut members {
            loop {
                let info = redis_cli(password)
                    .args(["-p", &master.port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster did not become ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let replicas = members.split_off(3);
        Self {
            masters: members,
            replicas,
            _dir: dir,
        }
    }

    /// Which replica is master `index`'s, once it has everything the master has.
    async fn synced_replica(&self, index: usize) -> usize {
        let master = &self.masters[index];
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let written = master.replication("master_repl_offset").await;
            for (r, replica) in self.replicas.iter().enumerate() {
                if replica.replication("master_port").await == master.port.to_string()
                    && replica.replication("master_link_status").await == "up"
                    && replica.replication("slave_repl_offset").await == written
                {
                    return r;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica of master {index} caught up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every node's configuration: the seeds are every member.
    fn config(&self) -> RedisConfig {
        let seeds: Vec<String> = self
            .masters
            .iter()
            .chain(&self.replicas)
            .map(Member::url)
            .collect();
        let mut config = RedisConfig::new(seeds.join(","));
        config.cluster = true;
        config.timeout = Duration::from_secs(1);
        config
    }
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

/// `n` channel names on master `master`, the first with braces in its name.
fn channels_on(broker: &RedisBroker, master: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| {
            if i % 2 == 0 {
                format!("}}room{{{i}}}")
            } else {
                format!("room-{i}")
            }
        })
        .filter(|channel| broker.shard_of(channel) == master)
        .take(n)
        .collect()
}

/// The key `KIND:{CH}` as Redis names it (the channel escaped inside its hash tag).
fn key(kind: &str, channel: &str) -> String {
    let escaped = channel.replace('%', "%25").replace('}', "%7D");
    format!("switchboard:{kind}:{{{escaped}}}")
}

#[tokio::test]
async fn every_master_holds_its_channels_and_every_node_delivers_them_in_order() {
    let cluster = Cluster::start();
    let (a, seen_a) = node(cluster.config()).await;
    let (b, seen_b) = node(cluster.config()).await;
    assert_eq!(a.shards(), 3);
    let per_master: Vec<Vec<String>> = (0..3).map(|m| channels_on(&a, m, 2)).collect();
    let all: Vec<&String> = per_master.iter().flatten().collect();
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
        seen.until("every publication", |e| e.len() >= 120).await;
        for channel in &all {
            assert_eq!(seen.offsets(channel), (1..=20).collect::<Vec<_>>());
        }
    }
    // Each channel's keys are on the master that owns its slot, and only there.
    for (master, channels) in per_master.iter().enumerate() {
        for channel in channels {
            for kind in ["meta", "history"] {
                let key = key(kind, channel);
                for (m, member) in cluster.masters.iter().enumerate() {
                    // Another master answers MOVED: asking it is an error, not `false`.
                    if m == master {
                        assert!(member.exists(&key).await, "{key} on master {m}");
                    }
                }
            }
        }
    }
    // History is read from the channel's master, on either node.
    let channel = &per_master[2][0];
    let history = b
        .history(
            channel,
            HistoryRange::After {
                offset: 15,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [16, 17, 18, 19, 20]);
    let from_a = a.history(channel, HistoryRange::Latest(0)).await.unwrap();
    assert_eq!(from_a.position, history.position);

    // An idempotent publish retried on the other node is the same publish.
    let window = Duration::from_secs(60);
    let first = a
        .publish_once(&per_master[1][1], client("p"), data(1), "k}1", window)
        .await
        .unwrap();
    let again = b
        .publish_once(&per_master[1][1], client("p"), data(1), "k}1", window)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first.offset, 21);
}

#[tokio::test]
async fn presence_crosses_nodes_and_a_gone_nodes_clients_are_swept_on_every_master() {
    let cluster = Cluster::start();
    let mut config = cluster.config();
    config.node_timeout = Duration::from_millis(900);
    let (a, seen_a) = node(config.clone()).await;
    let (b, _) = node(config.clone()).await;
    let channels: Vec<String> = (0..3).map(|m| channels_on(&a, m, 1).remove(0)).collect();
    for channel in &channels {
        a.subscribe(channel).await.unwrap();
    }
    for channel in &channels {
        assert!(
            b.join_user(channel, client("c1")).await.unwrap(),
            "c1's user's first"
        );
        b.join(channel, client("c2")).await.unwrap();
    }
    seen_a
        .until("every join", |e| {
            channels
                .iter()
                .all(|c| e.contains(&Event::Join(c.clone(), "c2".into())))
        })
        .await;
    for channel in &channels {
        assert_eq!(
            a.presence(channel).await.unwrap(),
            [client("c1"), client("c2")]
        );
    }
    assert!(b.leave_user(&channels[0], client("c1")).await.unwrap());
    seen_a
        .until("the leave", |e| {
            e.contains(&Event::Leave(channels[0].clone(), "c1".into()))
        })
        .await;
    assert_eq!(a.presence(&channels[0]).await.unwrap(), [client("c2")]);

    // Node B stops without a word: node A sweeps its clients off every master, and is told
    // of each user it swept off a channel.
    drop(b);
    seen_a
        .until("the sweep of node B's clients", |e| {
            channels.iter().all(|c| {
                e.contains(&Event::Leave(c.clone(), "c2".into()))
                    && e.contains(&Event::Swept(c.clone(), "c2".into()))
            })
        })
        .await;
    for channel in &channels {
        assert_eq!(a.presence(channel).await.unwrap(), []);
    }
}

#[tokio::test]
async fn the_password_given_for_the_seeds_opens_every_master() {
    const PASSWORD: &str = "cluster-s3cret";
    let cluster = Cluster::with(0, Some(PASSWORD));
    let mut config = cluster.config();
    config.connect.password = Some(PASSWORD.into());
    let (a, _) = node(config.clone()).await;
    let (b, seen_b) = node(config).await;
    let channels: Vec<String> = (0..3).map(|m| channels_on(&a, m, 1).remove(0)).collect();
    for channel in &channels {
        b.subscribe(channel).await.unwrap();
        assert_eq!(publish(&a, channel, 1).await.unwrap(), 1);
    }
    seen_b
        .until("a publication from every master", |e| e.len() >= 3)
        .await;
    // Without it, the seeds refuse, and the error says which without the password.
    let mut wrong = cluster.config();
    wrong.connect.password = Some("wrong-s3cret".into());
    let e = RedisBroker::connect(wrong).await.unwrap_err().to_string();
    let port = cluster.masters[0].port;
    assert!(e.contains(&format!("redis://127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[tokio::test]
async fn commands_between_nodes_reach_every_node_through_one_master() {
    let cluster = Cluster::start();
    let (a, _) = node(cluster.config()).await;
    let (_b, seen_b) = node(cluster.config()).await;
    let (_c, seen_c) = node(cluster.config()).await;
    let mut followers = Vec::new();
    for master in &cluster.masters {
        followers.push(master.shard_subscribers("switchboard:control").await);
    }
    followers.sort_unstable();
    assert_eq!(followers, [0, 0, 3], "every node on one master");
    let replies = a.ask_nodes(&NodeCommand::Info).await.unwrap();
    assert_eq!((replies.replies.len(), replies.unanswered), (2, 0));
    for seen in [&seen_b, &seen_c] {
        seen.until("the command", |e| {
            e.iter().any(|e| matches!(e, Event::Command(_)))
        })
        .await;
    }
}

#[tokio::test]
async fn a_lost_master_fails_only_its_channels() {
    let mut cluster = Cluster::start();
    let (a, seen_a) = node(cluster.config()).await;
    let (b, seen_b) = node(cluster.config()).await;
    // The master that carries commands between nodes stays; another one is lost.
    let mut control = None;
    for (m, master) in cluster.masters.iter().enumerate() {
        if master.shard_subscribers("switchboard:control").await > 0 {
            control = Some(m);
        }
    }
    let control = control.expect("a master carries the control channel");
    let lost_master = (control + 1) % 3;
    let kept: Vec<String> = (0..3)
        .filter(|&m| m != lost_master)
        .map(|m| channels_on(&a, m, 1).remove(0))
        .collect();
    let lost = channels_on(&a, lost_master, 2);
    for broker in [&a, &b] {
        for channel in kept.iter().chain([&lost[0]]) {
            broker.subscribe(channel).await.unwrap();
        }
    }
    for n in 1..=5 {
        for channel in kept.iter().chain([&lost[0]]) {
            assert_eq!(publish(&a, channel, n).await.unwrap(), n);
        }
    }
    for seen in [&seen_a, &seen_b] {
        seen.until("the first fifteen", |e| e.len() >= 15).await;
    }
    assert!(a.degraded().is_none());

    cluster.masters[lost_master].stop();
    // The other masters' channels go on, every publish delivered to both nodes.
    for n in 6..=30 {
        let from = if n % 2 == 0 { &a } else { &b };
        for channel in &kept {
            assert_eq!(publish(from, channel, n).await.unwrap(), n);
        }
    }
    for seen in [&seen_a, &seen_b] {
        for channel in &kept {
            seen.until("the kept channels' 30", |_| {
                seen.offsets(channel).len() >= 30
            })
            .await;
            assert_eq!(seen.offsets(channel), (1..=30).collect::<Vec<_>>());
        }
    }
    // The lost master's channels fail as unavailable, naming its shard.
    let e = publish(&a, &lost[0], 6).await.unwrap_err();
    assert!(matches!(e, BrokerError::Unavailable(_)), "{e}");
    let why = e.to_string();
    assert!(why.contains(&format!("shard {lost_master}")), "{why}");
    assert!(a.subscribe(&lost[1]).await.is_err());
    assert!(b.history(&lost[0], HistoryRange::Latest(1)).await.is_err());
    assert!(b.presence(&lost[1]).await.is_err());
    // The node is degraded, not down, and says which master is lost.
    assert!(a.health().is_ok());
    let degraded = a.degraded().expect("degraded while a master is down");
    let port = cluster.masters[lost_master].port;
    assert!(
        degraded.contains(&format!("shard {lost_master} (redis://127.0.0.1:{port})")),
        "{degraded}"
    );
    assert!(a.ask_nodes(&NodeCommand::Info).await.is_ok());
}

/// A hub on the cluster, served on a free loopback port with its `/healthz`.
async fn hub_on(cluster: &Cluster) -> (Hub, std::net::SocketAddr) {
    hub_with_healthz(RedisBroker::connect(cluster.config()).await.unwrap()).await
}

#[tokio::test]
async fn clients_recover_on_another_node_from_every_master() {
    use client::{frame, join};
    use serde_json::json;
    use switchboard::Message;

    let cluster = Cluster::start();
    let (a, addr_a) = hub_on(&cluster).await;
    let (_b, addr_b) = hub_on(&cluster).await;
    let broker = RedisBroker::connect(cluster.config()).await.unwrap();
    let channels: Vec<String> = (0..3)
        .map(|m| channels_on(&broker, m, 1).remove(0))
        .collect();
    drop(broker);

    // A client on node A sees 3 messages of each channel, leaves, 5 more are published on
    // node B, and it recovers exactly those on node B.
    let mut ann = join(addr_a, "ann").await;
    let mut epochs = Vec::new();
    for channel in &channels {
        let subscribe = json!({"op": "subscribe", "channel": channel, "id": 1});
        ann.send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let reply = frame(&mut ann).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        epochs.push(reply["epoch"].clone());
    }
    for channel in &channels {
        for n in 0..3 {
            let data = RawValue::from_string(n.to_string()).unwrap();
            a.publish(channel, data, None).await.unwrap();
        }
    }
    for _ in 0..9 {
        let message = frame(&mut ann).await;
        assert_eq!(message["type"], "message", "{message}");
    }
    drop(ann);
    let mut bob = join(addr_b, "bob").await;
    for channel in &channels {
        for n in 3..8 {
            let publish = json!({"op": "publish", "channel": channel, "id": n, "data": n});
            bob.send(Message::text(publish.to_string())).await.unwrap();
            assert_eq!(frame(&mut bob).await["type"], "ack");
        }
    }
    let mut ann = join(addr_b, "ann").await;
    for (channel, epoch) in channels.iter().zip(&epochs) {
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
}

/// Publishes `n` to `channel` until the broker takes it (a replica taking over its master's
/// slots takes a few seconds); its offset.
async fn publish_until_taken(broker: &RedisBroker, channel: &str, n: u64) -> u64 {
    tokio::time::timeout(3 * STEP, async {
        loop {
            match publish(broker, channel, n).await {
                Ok(offset) => return offset,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("a replica took over the lost master's slots")
}

#[tokio::test]
async fn a_replica_that_takes_over_serves_its_masters_channels_with_nothing_lost() {
    let mut cluster = Cluster::with_replicas(1);
    let (a, seen_a) = node(cluster.config()).await;
    let (b, seen_b) = node(cluster.config()).await;
    let failing = 1;
    let moved = channels_on(&a, failing, 1).remove(0);
    let kept = channels_on(&a, 0, 1).remove(0);
    for broker in [&a, &b] {
        broker.subscribe(&moved).await.unwrap();
        broker.subscribe(&kept).await.unwrap();
    }
    for n in 1..=5 {
        assert_eq!(publish(&a, &moved, n).await.unwrap(), n);
        assert_eq!(publish(&b, &kept, n).await.unwrap(), n);
    }
    cluster.synced_replica(failing).await;

    cluster.masters[failing].stop();
    assert_eq!(
        publish(&b, &kept, 6).await.unwrap(),
        6,
        "other masters serve"
    );
    // The replica has every acknowledged publish: offsets go on.
    assert_eq!(publish_until_taken(&a, &moved, 6).await, 6);
    for n in 7..=10 {
        let from = if n % 2 == 0 { &a } else { &b };
        assert_eq!(publish(from, &moved, n).await.unwrap(), n);
    }
    for seen in [&seen_a, &seen_b] {
        seen.until("the moved channel's 10", |_| {
            seen.offsets(&moved).len() >= 10
        })
        .await;
        assert_eq!(seen.offsets(&moved), (1..=10).collect::<Vec<_>>());
        assert_eq!(seen.offsets(&kept), (1..=6).collect::<Vec<_>>());
        assert!(!seen.events().contains(&Event::Lost(moved.clone())));
    }
    let history = b.history(&moved, HistoryRange::Latest(10)).await.unwrap();
    assert_eq!(history.publications.len(), 10);
    tokio::time::timeout(STEP, async {
        while a.degraded().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("healthy again");
    // The shard is up again, on the replica.
    let mut metrics = String::new();
    a.render_metrics(&mut metrics);
    assert!(
        metrics.contains("switchboard_redis_up{shard=\"1\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn publishes_a_replica_never_got_are_reported_as_a_lost_stream_not_delivered_again() {
    let mut cluster = Cluster::with_replicas(1);
    let (a, seen_a) = node(cluster.config()).await;
    let (b, seen_b) = node(cluster.config()).await;
    let failing = 2;
    let moved = channels_on(&a, failing, 1).remove(0);
    for broker in [&a, &b] {
        broker.subscribe(&moved).await.unwrap();
    }
    for n in 1..=5 {
        assert_eq!(publish(&a, &moved, n).await.unwrap(), n);
    }
    let replica = cluster.synced_replica(failing).await;
    // The replica is cut off; the master acknowledges a publish it never sends it, and dies.
    cluster.replicas[replica].signal("STOP");
    cluster.masters[failing]
        .command(&["CLIENT", "KILL", "TYPE", "replica"])
        .await;
    assert_eq!(publish(&a, &moved, 6).await.unwrap(), 6);
    for seen in [&seen_a, &seen_b] {
        seen.until("the sixth", |_| seen.offsets(&moved).len() >= 6)
            .await;
    }
    cluster.masters[failing].stop();
    cluster.replicas[replica].signal("CONT");

    // The replica takes over without publication 6, and gives offset 6 again.
    assert_eq!(publish_until_taken(&b, &moved, 60).await, 6);
    for seen in [&seen_a, &seen_b] {
        seen.until("the lost stream", |e| {
            e.contains(&Event::Lost(moved.clone()))
        })
        .await;
    }
    assert_eq!(publish(&a, &moved, 7).await.unwrap(), 7);
    for seen in [&seen_a, &seen_b] {
        seen.until("the seventh", |_| seen.offsets(&moved).last() == Some(&7))
            .await;
        // Offset 6 is never delivered twice: the first 6 and then 7 (or the second 6, 7).
        let offsets = seen.offsets(&moved);
        assert!(
            offsets == [1, 2, 3, 4, 5, 6, 7] || offsets == [1, 2, 3, 4, 5, 6, 6, 7],
            "{offsets:?}"
        );
    }
}
