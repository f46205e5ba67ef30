//! A reconnect storm, seen by its clients: `--clients` hub clients on `--url`, each subscribed
//! to one of `--channels` channels, while one more client on `--publish-url` (another node)
//! publishes `--rate` messages a second over those channels. e2e/storm/storm.py restarts the
//! subscribers' node meanwhile and reads what this prints.
//!
//! Commands on stdin, one per line: `restart` marks the moment the node goes down (recoveries
//! are timed from it), `stop` stops publishing, waits until every client has every acked
//! message (at most `--settle`), and prints the verdict. Lines on stdout are JSON:
//! `{"ready":N}` once every client is subscribed and publishing has started,
//! `{"recovered":K,"of":N,"ms":T}` each second after `restart`, and the final
//! `{"result":{...}}`. Every message a client's subscription yields is checked: offsets
//! must go up by one, from 1, so that a loss or a repeat shows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use switchboard_client::{ClientOptions, Event, HubClient, Subscription};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// The node the subscribers connect to (the one that restarts).
    #[arg(long)]
    url: String,
    /// The node the publisher connects to.
    #[arg(long)]
    publish_url: String,
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Publishes a second, over all channels.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Clients connecting at once while the storm's clients first come up.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// The longest wait for the last acked message to reach every client after `stop`.
    #[arg(long, default_value = "60")]
    settle: u64,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    last: u64,
    /// Offsets that did not follow the one before (a loss or a repeat).
    out_of_order: u64,
    gaps: u64,
    recoveries: u64,
    /// When the first recovery after `restart` came.
    recovered_at: Option<Instant>,
}

struct Storm {
    seen: Vec<Mutex<Seen>>,
    restart: watch::Sender<Option<Instant>>,
    /// The last acked offset of each channel.
    acked: Vec<AtomicU64>,
    publish_errors: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let storm = Arc::new(Storm {
        seen: (0..args.clients).map(|_| Mutex::default()).collect(),
        restart: watch::channel(None).0,
        acked: (0..args.channels).map(|_| AtomicU64::new(0)).collect(),
        publish_errors: AtomicU64::new(0),
    });
    let options = ClientOptions::default()
        .request_timeout(Duration::from_secs(60))
        .backoff(Duration::from_millis(100), Duration::from_secs(5));

    // Bring the clients up, a bounded number connecting at once.
    let permits = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    let mut starting = Vec::new();
    for i in 0..args.clients {
        let permit = permits.clone().acquire_owned().await?;
        let url = args.url.clone();
        let options = options.clone().name(format!("storm{i}"));
        let channel = format!("storm:{}", i % args.channels);
        starting.push(tokio::spawn(async move {
            let _permit = permit;
            let client = HubClient::connect(&url, options).await?;
            let subscription = client.subscribe(&channel).await?;
            anyhow::Ok((client, subscription))
        }));
    }
    let mut clients = Vec::new();
    for (i, started) in starting.into_iter().enumerate() {
        let (client, subscription) = started.await??;
        tokio::spawn(follow(storm.clone(), i, subscription));
        clients.push(client);
    }

    let publisher =
        HubClient::connect(&args.publish_url, options.clone().name("publisher")).await?;
    let (stop_publishing, stopped) = watch::channel(false);
    let publishing = tokio::spawn(publish(
        storm.clone(),
        publisher,
        args.rate,
        args.channels,
        stopped,
    ));
    println!("{}", json!({"ready": args.clients}));

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut progress: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "restart" => {
                let now = Instant::now();
                storm.restart.send_replace(Some(now));
                progress = Some(tokio::spawn(report_recoveries(storm.clone(), now)));
            }
            "stop" => break,
            other => eprintln!("storm: unknown command {other:?}"),
        }
    }
    let _ = stop_publishing.send(true);
    publishing.await?;
    let settled = settle(&storm, args.channels, Duration::from_secs(args.settle)).await;
    if let Some(progress) = progress {
        progress.abort();
    }
    println!(
        "{}",
        json!({"result": verdict(&storm, args.channels, settled).await})
    );
    drop(clients);
    Ok(())
}

/// Checks every event of one client's subscription.
async fn follow(storm: Arc<Storm>, i: usize, mut subscription: Subscription) {
    while let Some(event) = subscription.next().await {
        let mut seen = storm.seen[i].lock().await;
        match event {
            Event::Message(publication) => {
                if publication.offset != seen.last + 1 {
                    seen.out_of_order += 1;
                }
                seen.last = seen.last.max(publication.offset);
                seen.received += 1;
            }
            Event::Recovered { .. } => {
                seen.recoveries += 1;
                if seen.recovered_at.is_none() && storm.restart.borrow().is_some() {
                    seen.recovered_at = Some(Instant::now());
                }
            }
            Event::Gap { .. } => seen.gaps += 1,
            _ => {}
        }
    }
}

/// Publishes round the channels at `rate` a second until told to stop, one publish in
/// flight at a time; each acked offset is noted for its channel.
async fn publish(
    storm: Arc<Storm>,
    publisher: HubClient,
    rate: u32,
    channels: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let c = (n % channels as u64) as usize;
        match publisher.publish(&format!("storm:{c}"), &n).await {
            Ok(offset) => {
                storm.acked[c].fetch_max(offset, Ordering::Relaxed);
            }
            Err(e) => {
                storm.publish_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("storm: publish failed: {e}");
            }
        }
        n += 1;
    }
}

/// Prints how many clients have recovered since `restart`, each second.
async fn report_recoveries(storm: Arc<Storm>, restart: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut recovered = 0;
        for seen in &storm.seen {
            recovered += usize::from(seen.lock().await.recovered_at.is_some());
        }
        let ms = restart.elapsed().as_millis();
        println!(
            "{}",
            json!({"recovered": recovered, "of": storm.seen.len(), "ms": ms})
        );
    }
}

/// Waits until every client has its channel's last acked offset; `false` if `limit` passed.
async fn settle(storm: &Storm, channels: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let mut behind = 0;
        for (i, seen) in storm.seen.iter().enumerate() {
            let acked = storm.acked[i % channels].load(Ordering::Relaxed);
            behind += usize::from(seen.lock().await.last < acked);
        }
        if behind == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the storm did to the clients.
async fn verdict(storm: &Storm, channels: usize, settled: bool) -> serde_json::Value {
    let restart = *storm.restart.borrow();
    let mut expected = 0;
    let mut received = 0;
    let mut lost = 0;
    let mut out_of_order = 0;
    let mut gaps = 0;
    let mut recovered = 0;
    let mut slowest = Duration::ZERO;
    let mut recovery_ms: HashMap<u64, u64> = HashMap::new();
    for (i, seen) in storm.seen.iter().enumerate() {
        let seen = seen.lock().await;
        let acked = storm.acked[i % channels].load(Ordering::Relaxed);
        expected += acked;
        received += seen.received;
        lost += acked.saturating_sub(seen.received);
        out_of_order += seen.out_of_order;
        gaps += seen.gaps;
        if let (Some(at), Some(restart)) = (seen.recovered_at, restart) {
            recovered += 1;
            let took = at.duration_since(restart);
            slowest = slowest.max(took);
            *recovery_ms.entry(took.as_secs()).or_default() += 1;
        }
    }
    let mut by_second: Vec<_> = recovery_ms.into_iter().collect();
    by_second.sort_unstable();
    json!({
        "clients": storm.seen.len(),
        "published": storm.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>(),
        "publish_errors": storm.publish_errors.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "received": received,
        "lost": lost,
        // A repeat shows as a received count above the expected one, or out of order.
        "duplicated": received.saturating_sub(expected),
        "out_of_order": out_of_order,
        "gaps": gaps,
        "recovered": recovered,
        "recovery_ms_slowest": slowest.as_millis() as u64,
        "recovered_by_second": by_second,
        "settled": settled,
    })
}
