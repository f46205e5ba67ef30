//! Measures a hub deployment from outside: publishers on some nodes, subscribers on others,
//! one channel. Reports acknowledged publishes per second, deliveries per second per
//! subscriber, and publish-to-deliver latency (an HDR histogram over every delivery).
//!
//! ```text
//! cargo run --release -p switchboard-hub --example hub_bench -- \
//!     --publish ws://127.0.0.1:8081/ws --subscribe ws://127.0.0.1:8082/ws \
//!     --subscribe ws://127.0.0.1:8083/ws --rate 2000 --duration 5
//! ```
//!
//! `--rate 0` publishes as fast as acknowledgements allow (`--window` unacknowledged
//! publishes per publisher): the throughput of the deployment. A fixed `--rate` (messages per
//! second over all publishers) measures latency below saturation. Every message carries its
//! send time, read back by the subscriber in the same process, so clocks agree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use switchboard::Message;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
struct Args {
    /// A publisher connects here (repeat for more publishers).
    #[arg(long, required = true)]
    publish: Vec<String>,
    /// A subscriber connects here (repeat for more).
    #[arg(long, required = true)]
    subscribe: Vec<String>,
    /// Channel to use.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second over all publishers; 0: as fast as acknowledgements come.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Unacknowledged publishes per publisher.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// Counts inside the measured window.
#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let origin = Instant::now();
    let measure_from = origin + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let in_window = move |t: Instant| t >= measure_from && t < measure_to;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());

    let mut subscribers = Vec::new();
    for url in &args.subscribe {
        let (ws, _) = switchboard::connect(&format!("{url}?name=bench-sub")).await?;
        let (tx, mut rx) = ws.split();
        let request = json!({"op": "subscribe", "channel": args.channel, "id": 0});
        tx.send(Message::text(request.to_string())).await?;
        let stop = stop.clone();
        subscribers.push(tokio::spawn(async move {
            let _tx = tx;
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut delivered = 0u64;
            let mut last_offset = 0u64;
            let mut out_of_order = 0u64;
            let mut ended = None;
            while !stop.load(Ordering::Relaxed) {
                let message = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
                let text = match message {
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        let code = frame.map(|f| f.code.0);
                        ended = Some(format!("closed by the server ({code:?})"));
                        break;
                    }
                    Ok(None | Some(Err(_))) => {
                        ended = Some("connection ended".to_owned());
                        break;
                    }
                    Err(_) | Ok(Some(Ok(_))) => continue,
                };
                let now = Instant::now();
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if frame["type"] != "message" {
                    continue;
                }
                let offset = frame["offset"].as_u64().unwrap_or(0);
                if offset != last_offset + 1 && last_offset != 0 {
                    out_of_order += 1;
                }
                last_offset = offset;
                let Some(sent) = frame["data"]["t"].as_u64() else {
                    continue;
                };
                let sent = origin + Duration::from_nanos(sent);
                if in_window(sent) {
                    delivered += 1;
                    let micros = now.saturating_duration_since(sent).as_micros();
                    let _ = latency.record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                }
            }
            (delivered, latency, out_of_order, ended)
        }));
    }
    // Subscriptions settle before publishing starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pad = "x".repeat(args.size);
    let per_publisher_rate = args.rate as f64 / args.publish.len() as f64;
    let mut publishers = Vec::new();
    for url in &args.publish {
        let (ws, _) = switchboard::connect(&format!("{url}?name=bench-pub")).await?;
        let (tx, mut rx) = ws.split();
        let window = Arc::new(Semaphore::new(args.window));
        let counts_rx = counts.clone();
        let window_rx = window.clone();
        let stop_rx = stop.clone();
        // Acknowledgements free the window and are counted when the publish was measured.
        let acks = tokio::spawn(async move {
            while !stop_rx.load(Ordering::Relaxed) {
                let message = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
                let Ok(Some(Ok(Message::Text(text)))) = message else {
                    match message {
                        Ok(None | Some(Err(_))) => break,
                        _ => continue,
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let Some(sent) = frame["id"].as_u64() else {
                    continue;
                };
                window_rx.add_permits(1);
                if in_window(origin + Duration::from_nanos(sent)) {
                    let counter = match frame["type"].as_str() {
                        Some("ack") => &counts_rx.acked,
                        _ => &counts_rx.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let channel = args.channel.clone();
        let pad = pad.clone();
        publishers.push(tokio::spawn(async move {
            let mut ticker = (per_publisher_rate > 0.0).then(|| {
                let mut t =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / per_publisher_rate));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            while Instant::now() < measure_to {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                let Ok(Ok(permit)) =
                    tokio::time::timeout_at(measure_to.into(), window.acquire()).await
                else {
                    break;
                };
                permit.forget();
                let t = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                // The id is the send time too: acks are matched to the window they count in.
                let request = json!({"op": "publish", "channel": channel, "id": t,
                    "data": {"t": t, "pad": pad}});
                if tx.send(Message::text(request.to_string())).await.is_err() {
                    break;
                }
            }
            (tx, acks)
        }));
    }
    let mut ends = Vec::new();
    for publisher in publishers {
        ends.push(publisher.await?);
    }
    // Late acknowledgements and deliveries have a moment to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for (_tx, acks) in ends {
        acks.await?;
    }

    let seconds = args.duration;
    let acked = counts.acked.load(Ordering::Relaxed);
    println!(
        "publishers {} subscribers {} size {} rate {} window {}",
        args.publish.len(),
        args.subscribe.len(),
        args.size,
        if args.rate == 0 {
            "max".into()
        } else {
            args.rate.to_string()
        },
        args.window
    );
    println!(
        "acked publishes: {:.0}/s ({} errors)",
        acked as f64 / seconds,
        counts.errors.load(Ordering::Relaxed)
    );
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (subscriber, url) in subscribers.into_iter().zip(&args.subscribe) {
        let (delivered, latency, out_of_order, ended) = subscriber.await?;
        if let Some(ended) = ended {
            println!("  {url}: {ended}: a subscriber that falls behind is closed");
        }
        println!(
            "  {url}: {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms{}",
            delivered as f64 / seconds,
            latency.value_at_quantile(0.5) as f64 / 1000.0,
            latency.value_at_quantile(0.99) as f64 / 1000.0,
            if out_of_order > 0 {
                format!(", {out_of_order} OUT OF ORDER")
            } else {
                String::new()
            }
        );
        all.add(&latency)?;
    }
    println!(
        "latency over all deliveries: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.value_at_quantile(0.999) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
    Ok(())
}
