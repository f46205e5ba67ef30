//! Measures a hub deployment from outside: publishers on some nodes, subscribers on others,
//! one channel (or several: `--channel` repeated, publishers take them in turn and every
//! subscriber follows all of them). Reports acknowledged publishes per second, deliveries per second per
//! subscriber, and publish-to-deliver latency (an HDR histogram over every delivery).
//!
//! ```text
//! cargo run --release -p switchboard-hub --example hub_bench -- \
//!     --publish ws://127.0.0.1:8081/ws --subscribe ws://127.0.0.1:8082/ws \
//!     --subscribe ws://127.0.0.1:8083/ws --rate 2000 --duration 5
//! ```
//!
//! Publishers are WebSocket connections (`--publish`, the hub protocol) or server API
//! connections (`--api-publish URL --api-key KEY`: `POST /api/publish` over one HTTP/1.1
//! keep-alive connection each, see `api.rs`), or both.
//!
//! `--rate 0` publishes as fast as acknowledgements allow (`--window` unacknowledged
//! publishes per WebSocket publisher; an API connection has one request in flight, as HTTP/1.1
//! without pipelining does): the throughput of the deployment. A fixed `--rate` (messages per
//! second over all publishers) measures latency below saturation. Every message carries its
//! send time, read back by the subscriber in the same process, so clocks agree.
//!
//! `--server-pid PID` adds the server's CPU time (user and system, all threads, from `/proc`)
//! over the measured window, per acknowledged publish, and the CPU other programs used.
//! `--cpu-pid PID` (repeated: every node and Redis of the deployment) adds their CPU time
//! over the window per delivery.

mod api;

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
    /// A WebSocket publisher connects here (repeat for more publishers).
    #[arg(long, required_unless_present = "api_publish")]
    publish: Vec<String>,
    /// An API publisher POSTs here over one keep-alive connection, e.g.
    /// http://127.0.0.1:8080/api/publish (repeat for more connections).
    #[arg(long, requires = "api_key")]
    api_publish: Vec<String>,
    /// The key the API publishers send (`serve --api-key`).
    #[arg(long)]
    api_key: Option<String>,
    /// A subscriber connects here (repeat for more).
    #[arg(long, required = true)]
    subscribe: Vec<String>,
    /// Channel to use (repeat for more: publisher i publishes to the i-th, in turn; every
    /// subscriber subscribes to all).
    #[arg(long, default_value = "bench")]
    channel: Vec<String>,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second over all publishers; 0: as fast as acknowledgements come.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Unacknowledged publishes per WebSocket publisher.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The server's PID, to report its CPU time per acknowledged publish (one server: the
    /// one the publishers reach).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Processes of the deployment (nodes, Redis servers) whose CPU time over the window is
    /// reported per delivery (repeat for each).
    #[arg(long)]
    cpu_pid: Vec<u32>,
}

/// The measured window. Send times are nanoseconds since `origin`: a publish counts when it
/// was sent inside the window, whenever its acknowledgement comes.
#[derive(Clone, Copy)]
struct Window {
    origin: Instant,
    from: Instant,
    to: Instant,
}

impl Window {
    /// Nanoseconds since `origin`: a send time.
    fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.origin + Duration::from_nanos(stamp)
    }

    fn contains(&self, stamp: u64) -> bool {
        let t = self.instant(stamp);
        t >= self.from && t < self.to
    }
}

/// Counts inside the measured window.
#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    errors: AtomicU64,
}

/// Pacing for one publisher: `None` publishes as fast as acknowledgements allow.
fn ticker(per_publisher_rate: f64) -> Option<tokio::time::Interval> {
    (per_publisher_rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / per_publisher_rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    })
}

/// A publication's data: its send time, read back by the subscribers, and the padding.
fn data(t: u64, pad: &str) -> Value {
    json!({"t": t, "pad": pad})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let origin = Instant::now();
    let from = origin + Duration::from_secs_f64(args.warmup);
    let window = Window {
        origin,
        from,
        to: from + Duration::from_secs_f64(args.duration),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());

    let mut subscribers = Vec::new();
    for url in &args.subscribe {
        let (ws, _) = switchboard::connect(&format!("{url}?name=bench-sub")).await?;
        let (tx, mut rx) = ws.split();
        for (id, channel) in args.channel.iter().enumerate() {
            let request = json!({"op": "subscribe", "channel": channel, "id": id});
            tx.send(Message::text(request.to_string())).await?;
        }
        let stop = stop.clone();
        subscribers.push(tokio::spawn(async move {
            let _tx = tx;
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut delivered = 0u64;
            // The last offset seen, by channel.
            let mut last_offsets = std::collections::HashMap::<String, u64>::new();
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
                let channel = frame["channel"].as_str().unwrap_or_default();
                let last_offset = last_offsets.entry(channel.to_owned()).or_default();
                if offset != *last_offset + 1 && *last_offset != 0 {
                    out_of_order += 1;
                }
                *last_offset = offset;
                let Some(sent) = frame["data"]["t"].as_u64() else {
                    continue;
                };
                if window.contains(sent) {
                    delivered += 1;
                    let micros = now.saturating_duration_since(window.instant(sent));
                    let micros = u64::try_from(micros.as_micros()).unwrap_or(u64::MAX);
                    let _ = latency.record(micros.max(1));
                }
            }
            (delivered, latency, out_of_order, ended)
        }));
    }
    // Subscriptions settle before publishing starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pad = "x".repeat(args.size);
    let publishers_n = args.publish.len() + args.api_publish.len();
    let per_publisher_rate = args.rate as f64 / publishers_n as f64;
    let mut publishers = Vec::new();
    let mut channels = args.channel.iter().cycle();
    for url in &args.publish {
        let (ws, _) = switchboard::connect(&format!("{url}?name=bench-pub")).await?;
        let (tx, mut rx) = ws.split();
        let in_flight = Arc::new(Semaphore::new(args.window));
        let counts_rx = counts.clone();
        let in_flight_rx = in_flight.clone();
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
                in_flight_rx.add_permits(1);
                if window.contains(sent) {
                    let counter = match frame["type"].as_str() {
                        Some("ack") => &counts_rx.acked,
                        _ => &counts_rx.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let channel = channels.next().expect("at least one channel").clone();
        let pad = pad.clone();
        publishers.push(tokio::spawn(async move {
            let mut ticker = ticker(per_publisher_rate);
            while Instant::now() < window.to {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                let Ok(Ok(permit)) =
                    tokio::time::timeout_at(window.to.into(), in_flight.acquire()).await
                else {
                    break;
                };
                permit.forget();
                let t = window.stamp();
                // The id is the send time too: acks are matched to the window they count in.
                let request = json!({"op": "publish", "channel": channel, "id": t,
                    "data": data(t, &pad)});
                if tx.send(Message::text(request.to_string())).await.is_err() {
                    break;
                }
            }
            // The sender stays open until the acknowledgements are in.
            (Some(tx), Some(acks))
        }));
    }
    for url in &args.api_publish {
        let publisher = api::Publisher::connect(
            url,
            args.api_key.as_deref().unwrap_or_default(),
            channels.next().expect("at least one channel"),
        )
        .await?;
        let (counts, pad) = (counts.clone(), pad.clone());
        publishers.push(tokio::spawn(async move {
            publisher
                .run(window, ticker(per_publisher_rate), &pad, &counts)
                .await;
            (None, None)
        }));
    }
    let server_cpu = args.server_pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(window.from.into()).await;
            let before = CpuReading::take(pid);
            tokio::time::sleep_until(window.to.into()).await;
            before.and_then(|before| Some((before, CpuReading::take(pid)?)))
        })
    });
    let pids = args.cpu_pid.clone();
    let deployment_cpu = (!pids.is_empty()).then(|| {
        tokio::spawn(async move {
            let total = |pids: &[u32]| -> Option<f64> {
                pids.iter()
                    .map(|pid| process_cpu(&pid.to_string()).map(|(user, system)| user + system))
                    .sum()
            };
            tokio::time::sleep_until(window.from.into()).await;
            let before = total(&pids);
            tokio::time::sleep_until(window.to.into()).await;
            Some(total(&pids)? - before?)
        })
    });
    let mut ends = Vec::new();
    for publisher in publishers {
        ends.push(publisher.await?);
    }
    let server_cpu = match server_cpu {
        Some(reading) => reading.await?,
        None => None,
    };
    let deployment_cpu = match deployment_cpu {
        Some(reading) => reading.await?,
        None => None,
    };
    // Late acknowledgements and deliveries have a moment to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for (_tx, acks) in ends {
        if let Some(acks) = acks {
            acks.await?;
        }
    }

    let seconds = args.duration;
    let acked = counts.acked.load(Ordering::Relaxed);
    println!(
        "publishers {} (websocket {}, api {}) subscribers {} size {} rate {} window {}",
        publishers_n,
        args.publish.len(),
        args.api_publish.len(),
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
    if let Some((before, after)) = server_cpu {
        let server = after.server.0 + after.server.1 - before.server.0 - before.server.1;
        let user = after.server.0 - before.server.0;
        let ours = after.ours - before.ours;
        let others = (after.busy - before.busy - server - ours).max(0.0);
        let wall = after.at.duration_since(before.at).as_secs_f64();
        let per_publish = if acked > 0 {
            format!("{:.2} us", server * 1e6 / acked as f64)
        } else {
            "none".to_owned()
        };
        println!(
            "server cpu: {server:.3} s over the window ({user:.3} s user), {per_publish} per \
             acked publish; other programs: {:.2} cores",
            others / wall
        );
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut deliveries = 0;
    for (subscriber, url) in subscribers.into_iter().zip(&args.subscribe) {
        let (delivered, latency, out_of_order, ended) = subscriber.await?;
        deliveries += delivered;
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
    if let Some(cpu) = deployment_cpu
        && deliveries > 0
    {
        println!(
            "deployment cpu ({} processes): {cpu:.3} s over the window, {:.2} us per delivery",
            args.cpu_pid.len(),
            cpu * 1e6 / deliveries as f64
        );
    }
    println!(
        "deliveries over all subscribers: {:.0}/s",
        deliveries as f64 / seconds
    );
    println!(
        "latency over all deliveries: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.value_at_quantile(0.999) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
    Ok(())
}

/// CPU seconds from `/proc`: the server's, this process's and the machine's busy time.
struct CpuReading {
    at: Instant,
    /// User and system time.
    server: (f64, f64),
    ours: f64,
    busy: f64,
}

/// `/proc` counts CPU time in USER_HZ ticks, fixed at 100 by the kernel's ABI.
const USER_HZ: f64 = 100.0;

impl CpuReading {
    /// `None` without `/proc` or once the process is gone.
    fn take(pid: u32) -> Option<Self> {
        Some(Self {
            at: Instant::now(),
            server: process_cpu(&pid.to_string())?,
            ours: process_cpu("self").map(|(user, system)| user + system)?,
            busy: machine_busy()?,
        })
    }
}

/// User and system time of process `pid` (all threads), in seconds.
fn process_cpu(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    // Fields after it start at 3; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || fields.next()?.parse::<u64>().ok();
    let user = tick()? as f64 / USER_HZ;
    Some((user, tick()? as f64 / USER_HZ))
}

/// The machine's busy time over all CPUs (everything but idle and I/O wait), in seconds.
fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((ticks.iter().sum::<u64>() - idle) as f64 / USER_HZ)
}
