//! Connections cut at random while clients publish and read: every subscriber ends with every
//! acknowledged message of its channel exactly once, in offset order, on one node and on two
//! nodes sharing a Redis (a `redis-server` of the test's own, on a free loopback port).
//!
//! Every client reaches its hub through a loopback proxy of the test's own, which closes
//! (FIN), resets (RST) or stalls (stops forwarding and holds the sockets open, which only the
//! client's pings reveal) one of its connections at a time, [`CUTS`] times in all.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchboard::Server;
use switchboard_client::{ClientOptions, Event, HubClient, State, SubscribeOptions, Subscription};
use switchboard_hub::{
    Broker, HistoryConfig, Hub, HubConfig, LocalBroker, RedisBroker, RedisConfig,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Connections cut per run.
const CUTS: usize = 200;
/// Between two cuts.
const CUT_EVERY: Duration = Duration::from_millis(25);
/// How long a stalled connection is held open without forwarding.
const STALL: Duration = Duration::from_secs(3);
/// Every final wait is bounded by this.
const SETTLE: Duration = Duration::from_secs(30);
const CHANNEL: &str = "cuts";

/// What the proxy does to one connection.
#[derive(Clone, Copy, Debug)]
enum Cut {
    Fin,
    Reset,
    Stall,
}

/// A loopback proxy to `upstream` that cuts its connections on demand.
struct Chaos {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<oneshot::Sender<Cut>>>>,
}

impl Chaos {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<oneshot::Sender<Cut>>>> = Arc::default();
        let registry = links.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cut, control) = oneshot::channel();
                registry.lock().unwrap().push(cut);
                tokio::spawn(forward(client, server, control));
            }
        });
        Self { addr, links }
    }

    /// Cuts one live connection, chosen at random; `false` when none is live.
    fn cut(&self, kind: Cut) -> bool {
        let mut links = self.links.lock().unwrap();
        links.retain(|link| !link.is_closed());
        if links.is_empty() {
            return false;
        }
        let chosen = random(links.len());
        let link = links.swap_remove(chosen);
        link.send(kind).is_ok()
    }
}

async fn forward(client: TcpStream, server: TcpStream, control: oneshot::Receiver<Cut>) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let cut = {
        let both = async {
            tokio::select! {
                _ = tokio::io::copy(&mut client_in, &mut server_out) => {}
                _ = tokio::io::copy(&mut server_in, &mut client_out) => {}
            }
        };
        tokio::select! {
            () = both => None,
            cut = control => cut.ok(),
        }
    };
    match cut {
        Some(Cut::Reset) => {
            let _ = client_in.as_ref().set_zero_linger();
            let _ = server_in.as_ref().set_zero_linger();
        }
        Some(Cut::Stall) => tokio::time::sleep(STALL).await,
        Some(Cut::Fin) | None => {}
    }
}

fn random(below: usize) -> usize {
    (getrandom::u32().unwrap() as usize) % below
}

/// A hub on `broker` with history enough for every message of a run, on a free port.
async fn hub(broker: Arc<dyn Broker>) -> (Hub, SocketAddr) {
    let mut config = HubConfig::default();
    config.max_replay = 1_000_000;
    let hub = Hub::new(broker, config).await.unwrap();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let serving = hub.clone();
    tokio::spawn(server.serve(move |ws, request| serving.serve(ws, request)));
    (hub, addr)
}

fn history() -> HistoryConfig {
    HistoryConfig {
        size: 1_000_000,
        ttl: None,
    }
}

fn options(name: &str) -> ClientOptions {
    ClientOptions::default()
        .name(name)
        .ping_interval(Duration::from_millis(300))
        .backoff(Duration::from_millis(10), Duration::from_millis(300))
        .request_timeout(Duration::from_secs(5))
}

/// What a subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    offsets: Vec<u64>,
    recovered: usize,
    replayed: usize,
    gaps: usize,
}

async fn read(mut subscription: Subscription, seen: Arc<Mutex<Seen>>) {
    while let Some(event) = subscription.next().await {
        let mut seen = seen.lock().unwrap();
        match event {
            Event::Message(publication) => seen.offsets.push(publication.offset),
            Event::Recovered { missed } => {
                seen.recovered += 1;
                seen.replayed += missed;
            }
            Event::Gap { .. } => seen.gaps += 1,
            _ => {}
        }
    }
}

/// Runs the cuts against the hubs at `proxies` (clients spread over them), and checks what
/// every subscriber saw against what was acknowledged.
async fn run(hub: &Hub, proxies: &[Chaos]) {
    let url = |i: usize| format!("ws://{}/ws", proxies[i % proxies.len()].addr);
    let mut readers = JoinSet::new();
    let mut seen = Vec::new();
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let client = HubClient::connect(&url(i), options(&format!("reader{i}")))
            .await
            .unwrap();
        let subscription = client.subscribe(CHANNEL).await.unwrap();
        let saw = Arc::new(Mutex::new(Seen::default()));
        readers.spawn(read(subscription, saw.clone()));
        seen.push(saw);
        subscribers.push(client);
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut publishers = JoinSet::new();
    for i in 0..3 {
        let client = HubClient::connect(&url(i + 1), options(&format!("writer{i}")))
            .await
            .unwrap();
        let (acked, stop) = (acked.clone(), stop.clone());
        publishers.spawn(async move {
            let stopped = stop.notified();
            tokio::pin!(stopped);
            for n in 0.. {
                let data = json!({"from": i, "n": n});
                tokio::select! {
                    () = &mut stopped => break,
                    published = client.publish(CHANNEL, &data) => {
                        if let Ok(offset) = published {
                            acked.lock().unwrap().push(offset);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client.close();
        });
    }
    let mut cuts = 0;
    while cuts < CUTS {
        tokio::time::sleep(CUT_EVERY).await;
        let kind = match random(5) {
            0 | 1 => Cut::Fin,
            2 | 3 => Cut::Reset,
            _ => Cut::Stall,
        };
        if proxies[random(proxies.len())].cut(kind) {
            cuts += 1;
        }
    }
    stop.notify_waiters();
    while publishers.join_next().await.is_some() {}
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    // A publish whose publisher stopped waiting may still land: the channel's last offset is
    // the one that stays put while every reader has caught up with it.
    let mut top = 0;
    let settled = tokio::time::timeout(SETTLE, async {
        loop {
            let now = hub.history(CHANNEL, Some(0), None).await.unwrap();
            if now.position.offset == top && top > 0 {
                break;
            }
            top = now.position.offset;
            while seen
                .iter()
                .any(|s| s.lock().unwrap().offsets.len() < top as usize)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    for client in &subscribers {
        client.close();
    }
    while readers.join_next().await.is_some() {}
    let expected: Vec<u64> = (1..=top).collect();
    for (i, saw) in seen.iter().enumerate() {
        let saw = saw.lock().unwrap();
        let duplicates = saw.offsets.windows(2).filter(|w| w[1] <= w[0]).count();
        let gaps = saw.offsets.windows(2).filter(|w| w[1] > w[0] + 1).count();
        eprintln!(
            "reader{i}: {CUTS} cuts, {} acked of {top} published, {} received, {} \
             duplicates, {gaps} gaps, {} gap events, {} recoveries replaying {}",
            acked.len(),
            saw.offsets.len(),
            duplicates,
            saw.gaps,
            saw.recovered,
            saw.replayed,
        );
        assert!(settled.is_ok(), "reader{i} still missing messages");
        assert_eq!(
            saw.gaps, 0,
            "reader{i}: the hub had every message to replay"
        );
        assert_eq!(
            saw.offsets, expected,
            "reader{i}: each message once, in order"
        );
        assert!(saw.recovered > 0, "reader{i} was cut and recovered");
    }
    assert!(acked.iter().all(|offset| (1..=top).contains(offset)));
    assert!(
        acked.len() > 100,
        "the publishers got through: {}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_arrives_once_in_order_through_cuts_on_one_node() {
    let (hub, addr) = hub(Arc::new(LocalBroker::new(history()))).await;
    let proxy = Chaos::start(addr).await;
    run(&hub, &[proxy]).await;
}

/// A `redis-server` of the test's own, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Self {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) on PATH");
        Self { port, child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_arrives_once_in_order_through_cuts_on_two_nodes() {
    let redis = Redis::start();
    let mut hubs = Vec::new();
    for _ in 0..2 {
        let mut config = RedisConfig::new(format!("redis://127.0.0.1:{}", redis.port));
        config.history = history();
        let broker = tokio::time::timeout(SETTLE, async {
            loop {
                match RedisBroker::connect(config.clone()).await {
                    Ok(broker) => break broker,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("redis-server listens");
        hubs.push(hub(Arc::new(broker)).await);
    }
    let proxies = [Chaos::start(hubs[0].1).await, Chaos::start(hubs[1].1).await];
    run(&hubs[0].0, &proxies).await;
}

/// The next event of `subscription` that is not a [`Event::Recovered`], within [`SETTLE`].
async fn next_but_recovered(subscription: &mut Subscription) -> Event {
    tokio::time::timeout(SETTLE, async {
        loop {
            match subscription.next().await.expect("the subscription goes on") {
                Event::Recovered { .. } => {}
                event => return event,
            }
        }
    })
    .await
    .expect("an event in time")
}

#[tokio::test]
async fn a_subscription_declining_joins_and_leaves_still_declines_them_after_a_reconnect() {
    let (_hub, addr) = hub(Arc::new(LocalBroker::new(history()))).await;
    let chaos = Chaos::start(addr).await;
    let quiet = SubscribeOptions::default().join_leave(false);
    let ann = HubClient::connect(&format!("ws://{}/ws", chaos.addr), options("ann"))
        .await
        .unwrap();
    let mut feed = ann.subscribe_with(CHANNEL, quiet).await.unwrap();
    let bob = HubClient::connect(&format!("ws://{addr}/ws"), options("bob"))
        .await
        .unwrap();
    let mut state = ann.state();
    for round in 1..=2_u64 {
        // Bob comes and goes before each message: ann's first event must be the message.
        let visit = bob.subscribe(CHANNEL).await.unwrap();
        visit.unsubscribe().await.unwrap();
        bob.publish(CHANNEL, &json!(round)).await.unwrap();
        match next_but_recovered(&mut feed).await {
            Event::Message(message) => assert_eq!(message.offset, round),
            other => panic!("round {round}: a join or leave was sent: {other:?}"),
        }
        if round == 2 {
            break;
        }
        assert!(chaos.cut(Cut::Fin), "ann's connection is live");
        // Lost, then connected again.
        tokio::time::timeout(SETTLE, async {
            while matches!(*state.borrow_and_update(), State::Connected(_)) {
                state.changed().await.unwrap();
            }
            while !matches!(*state.borrow_and_update(), State::Connected(_)) {
                state.changed().await.unwrap();
            }
        })
        .await
        .expect("ann reconnects");
    }
    ann.close();
    bob.close();
}
