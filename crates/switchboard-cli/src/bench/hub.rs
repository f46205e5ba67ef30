//! Hub mode: publishers and subscribers over the hub protocol (`switchboard serve`, the
//! default mode), on one node or across several sharing a broker.
//!
//! Subscribers (`-c`, spread over the `--subscribe` URLs, else the server's URL) each follow
//! every `--channel`; publishers (one per `--publish`, else one at the server's URL; and one
//! per `--api-publish`, through the server API) take the channels in turn. The window starts
//! once every subscriber has its `subscribed` replies, so none is still registering.
//!
//! What the hub promises is checked, not sampled: each subscriber must see every channel's
//! offsets one after the other from the offset of its `subscribed` reply, each once, in order;
//! a gap is counted as missed and an offset seen again as a duplicate, both errors. Every
//! publication carries its send time (in µs since the run began, read back in the same
//! process, so clocks agree) and its publisher's acknowledgement is matched by that time too.
//!
//! `--rate 0` publishes as fast as acknowledgements allow (`-k` unacknowledged publishes per
//! WebSocket publisher; an API publisher has one request in flight, as HTTP/1.1 without
//! pipelining has); a fixed `--rate` (messages per second over all publishers) measures
//! latency below saturation. `--cpu-pid` (repeated: every node and Redis of a deployment) adds
//! their CPU time over the window per delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use switchboard::{CloseCode, Message, WebSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::hub_api::ApiPublisher;
use super::open::{Transport, open};
use super::probe::cpu_seconds;
use super::progress::window_bar;
use super::report::{Deployment, Report};
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

/// How long subscribing every subscriber may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long late acknowledgements and deliveries may take after the window.
const SETTLE: Duration = Duration::from_millis(500);

/// The options of hub mode.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Hub mode")]
pub(crate) struct HubArgs {
    /// A WebSocket publisher connects here (repeat for more; default: one, at the server's URL)
    #[arg(long, value_name = "URL")]
    pub(crate) publish: Vec<String>,
    /// A publisher through the server API: `POST` to this URL (e.g.
    /// http://127.0.0.1:8080/api/publish) over one keep-alive connection (repeat for more)
    #[arg(long, value_name = "URL", requires = "api_key")]
    pub(crate) api_publish: Vec<String>,
    /// The key the API publishers send (`serve --api-key`)
    #[arg(long, value_name = "KEY")]
    pub(crate) api_key: Option<String>,
    /// Subscribers connect here, in turn (repeat for several nodes; default: the server's URL)
    #[arg(long, value_name = "URL")]
    pub(crate) subscribe: Vec<String>,
    /// A channel (repeat for more: publishers take them in turn, every subscriber follows all)
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pub(crate) channel: Vec<String>,
    /// Messages per second over all publishers; 0: as fast as acknowledgements allow
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) rate: u64,
    /// A process of the deployment (node, Redis) whose CPU time over the window is reported
    /// per delivery (repeat for each)
    #[arg(long, value_name = "PID")]
    pub(crate) cpu_pid: Vec<u32>,
}

/// Send times count from here, in µs; a publish's id is its send time.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    pub(crate) window: Window,
}

impl Clock {
    pub(crate) fn stamp(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub(crate) fn counts(&self, stamp: u64) -> bool {
        self.window
            .contains(self.origin + Duration::from_micros(stamp))
    }
}

/// What every task adds to.
pub(crate) struct Shared {
    /// Acknowledged publishes sent in the window.
    pub(crate) acked: AtomicU64,
    /// Deliveries checked so far, warm-up included (for the progress bar).
    progress: AtomicU64,
    /// Subscribers with all their `subscribed` replies.
    ready: AtomicUsize,
    latencies: Latencies,
    pub(crate) errors: std::sync::Mutex<Errors>,
}

impl Shared {
    pub(crate) fn error(&self, error: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(error);
    }
}

/// A publication's data: its send time and padding up to `--size` bytes of data.
pub(crate) fn data(stamp: u64, pad: &str) -> serde_json::Value {
    json!({"t": stamp, "pad": pad})
}

#[derive(Default)]
struct Tally {
    deliveries: u64,
    missed: u64,
    duplicates: u64,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let hub = &args.hub;
    if args.raw {
        bail!("hub mode needs a hub (--raw applies to echo, idle and handshakes)");
    }
    let subscribe_urls = urls(&hub.subscribe, &args.url);
    let mut publish_urls = hub.publish.clone();
    if publish_urls.is_empty() && hub.api_publish.is_empty() {
        publish_urls.push(args.url.clone());
    }
    let shared = Arc::new(Shared {
        acked: AtomicU64::new(0),
        progress: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        latencies: Latencies::new(),
        errors: std::sync::Mutex::new(Errors::default()),
    });
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = JoinSet::new();
    let (started, starts) = watch::channel(None::<Clock>);
    for i in 0..args.connections {
        let url = with_name(&subscribe_urls[i % subscribe_urls.len()], "bench-sub");
        let ws = open(url.clone())
            .await
            .with_context(|| format!("subscriber {i}: {url}"))?;
        subscribers.spawn(subscribe(
            ws,
            hub.channel.clone(),
            shared.clone(),
            starts.clone(),
            stopped.clone(),
        ));
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    while shared.ready.load(Ordering::Relaxed) < args.connections {
        if Instant::now() > deadline || subscribers.len() < args.connections {
            let errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner());
            bail!(
                "{} of {} subscribers subscribed: {}",
                shared.ready.load(Ordering::Relaxed),
                args.connections,
                errors.first()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut websockets = Vec::new();
    for url in &publish_urls {
        let url = with_name(url, "bench-pub");
        websockets.push(
            open(url.clone())
                .await
                .with_context(|| format!("publisher: {url}"))?,
        );
    }
    let mut apis = Vec::new();
    for url in &hub.api_publish {
        apis.push(ApiPublisher::connect(url, hub.api_key.as_deref().unwrap_or_default()).await?);
    }
    let publishers = websockets.len() + apis.len();
    let clock = Clock {
        origin: Instant::now(),
        window: Window::starting_now(args),
    };
    let _ = started.send(Some(clock));
    let per_publisher = hub.rate as f64 / publishers as f64;
    let pad = "x".repeat(args.size);
    let mut channels = hub.channel.iter().cycle();
    let mut publishing = JoinSet::new();
    for ws in websockets {
        let channel = channels.next().cloned().unwrap_or_default();
        let (shared, pad) = (shared.clone(), pad.clone());
        let window = args.in_flight;
        publishing.spawn(async move {
            publish(
                ws,
                channel,
                clock,
                ticker(per_publisher),
                window,
                &pad,
                &shared,
            )
            .await;
        });
    }
    for api in apis {
        let channel = channels.next().cloned().unwrap_or_default();
        let (shared, pad) = (shared.clone(), pad.clone());
        publishing.spawn(async move {
            api.run(&channel, clock, ticker(per_publisher), &pad, &shared)
                .await;
        });
    }

    let pids = hub.cpu_pid.clone();
    let deployment = tokio::spawn(async move {
        tokio::time::sleep_until(clock.window.from.into()).await;
        let before = deployment_cpu(&pids);
        tokio::time::sleep_until(clock.window.until.into()).await;
        Some(deployment_cpu(&pids)? - before?)
    });
    let bar = window_bar();
    let (start, end) = clock
        .window
        .watch(args.server_pid, &shared.progress, "deliveries", &bar)
        .await;
    bar.finish_and_clear();
    let deployment_s = deployment.await.ok().flatten();
    while publishing.join_next().await.is_some() {}
    tokio::time::sleep(SETTLE).await;
    let _ = stop.send(true);

    let mut tally = Tally::default();
    let grace = tokio::time::Instant::now() + GRACE;
    loop {
        match tokio::time::timeout_at(grace, subscribers.join_next()).await {
            Ok(Some(Ok(t))) => {
                tally.deliveries += t.deliveries;
                tally.missed += t.missed;
                tally.duplicates += t.duplicates;
            }
            Ok(Some(Err(e))) => shared.error(format!("subscriber task: {e}")),
            Ok(None) => break,
            Err(_) => {
                shared.error("a subscriber did not close in time".into());
                subscribers.abort_all();
                break;
            }
        }
    }
    let mut report = Report::new(args);
    report.counted(tally.deliveries, tally.deliveries * args.size as u64);
    report.published = Some(shared.acked.load(Ordering::Relaxed));
    report.missed = Some(tally.missed);
    report.latency_us = shared.latencies.summary();
    report.cpu = Some(start.usage(&end, tally.deliveries));
    report.hub = Some(Deployment {
        publishers,
        channels: hub.channel.len(),
        duplicates: tally.duplicates,
        cpu_s: deployment_s,
        cpu_us_per_delivery: deployment_s
            .filter(|_| tally.deliveries > 0)
            .map(|s| s * 1e6 / tally.deliveries as f64),
        processes: hub.cpu_pid.len(),
    });
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(|e| e.into_inner()));
    report.errors(errors);
    Ok(report)
}

/// `given`, or the server's URL alone.
fn urls(given: &[String], url: &str) -> Vec<String> {
    if given.is_empty() {
        vec![url.to_owned()]
    } else {
        given.to_vec()
    }
}

/// `url` with a `name` for the hub's presence and logs (unless it names one already).
fn with_name(url: &str, name: &str) -> String {
    if url.contains("name=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&name={name}")
    } else {
        format!("{url}?name={name}")
    }
}

/// CPU seconds of the deployment's processes, when every one of them can be read.
fn deployment_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| cpu_seconds(&pid.to_string()).ok())
        .sum()
}

/// Pacing for one publisher: `None` publishes as fast as acknowledgements allow.
pub(crate) fn ticker(rate: f64) -> Option<tokio::time::Interval> {
    (rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    })
}

/// What a subscriber reads of a frame.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, default)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    offset: u64,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    message: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Stamped {
    t: u64,
}

async fn subscribe<S: Transport>(
    mut ws: WebSocket<S>,
    channels: Vec<String>,
    shared: Arc<Shared>,
    mut started: watch::Receiver<Option<Clock>>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    for (id, channel) in channels.iter().enumerate() {
        let request = json!({"op": "subscribe", "channel": channel, "id": id});
        if let Err(e) = ws.feed(Message::text(request.to_string())) {
            shared.error(format!("subscribe: {e}"));
            return tally;
        }
    }
    // The last offset seen, by channel: from the `subscribed` reply on.
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut latencies = LatencyBatch::default();
    let failed = loop {
        let received = tokio::select! {
            received = ws.recv() => received,
            _ = stop.wait_for(|stop| *stop) => break false,
        };
        let now = Instant::now();
        let text = match received {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map(|f| format!(" ({} {})", f.code, f.reason));
                shared.error(format!(
                    "the hub closed a subscriber{}",
                    why.unwrap_or_default()
                ));
                break true;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                shared.error(format!("subscriber: {e}"));
                break true;
            }
            None => {
                shared.error("the hub closed a subscriber".into());
                break true;
            }
        };
        let frame: Frame<'_> = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(e) => {
                shared.error(format!("a frame that is not the hub's: {e}"));
                break true;
            }
        };
        let channel = frame.channel.as_deref().unwrap_or_default();
        match frame.kind {
            "subscribed" => {
                last.insert(channel.to_owned(), frame.offset);
                if last.len() == channels.len() {
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            "message" => {
                let Some(seen) = last.get_mut(channel) else {
                    shared.error(format!(
                        "a message on {channel} before its subscribed reply"
                    ));
                    break true;
                };
                match next_offset(seen, frame.offset) {
                    Ok(()) => {}
                    Err(Offset::Again) => {
                        tally.duplicates += 1;
                        shared.error(format!("{channel}: offset {} again", frame.offset));
                        continue;
                    }
                    Err(Offset::Missed(n)) => {
                        tally.missed += n;
                        shared.error(format!(
                            "{channel}: {n} offsets missed before {}",
                            frame.offset
                        ));
                    }
                }
                shared.progress.fetch_add(1, Ordering::Relaxed);
                // Another program's publication on the channel has no send time.
                let stamped = frame
                    .data
                    .and_then(|d| serde_json::from_str::<Stamped>(d.get()).ok());
                let (Some(clock), Some(data)) = (*started.borrow_and_update(), stamped) else {
                    continue;
                };
                if clock.counts(data.t) {
                    tally.deliveries += 1;
                    let sent = clock.origin + Duration::from_micros(data.t);
                    shared
                        .latencies
                        .record(&mut latencies, now.saturating_duration_since(sent));
                }
            }
            "error" => {
                let message = frame.message.as_deref().unwrap_or_default();
                shared.error(format!("subscriber: {message}"));
            }
            _ => {} // presence, heartbeats
        }
    };
    shared.latencies.flush(&mut latencies);
    if !failed && let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        shared.error(format!("subscriber close: {e}"));
    }
    tally
}

/// How an offset broke the hub's promise.
#[derive(Debug, PartialEq, Eq)]
enum Offset {
    /// Seen already (or older than one seen): a duplicate, or out of order.
    Again,
    /// This many offsets before it never came.
    Missed(u64),
}

/// Checks that `offset` follows `seen`, the last offset seen, and moves `seen` to it unless
/// it came again.
fn next_offset(seen: &mut u64, offset: u64) -> Result<(), Offset> {
    if offset <= *seen {
        return Err(Offset::Again);
    }
    let missed = offset - *seen - 1;
    *seen = offset;
    if missed > 0 {
        Err(Offset::Missed(missed))
    } else {
        Ok(())
    }
}

/// What a publisher reads of a frame.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// Publishes until the window ends, `window` unacknowledged at most, paced by `ticker`.
async fn publish<S: Transport>(
    mut ws: WebSocket<S>,
    channel: String,
    clock: Clock,
    mut ticker: Option<tokio::time::Interval>,
    window: usize,
    pad: &str,
    shared: &Shared,
) {
    let room = Semaphore::new(window);
    let until = tokio::time::Instant::from(clock.window.until);
    let mut open = 0usize;
    loop {
        let sending = tokio::time::Instant::now() < until;
        if !sending && open == 0 {
            break;
        }
        tokio::select! {
            permit = room.acquire(), if sending => {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                if let Ok(permit) = permit {
                    permit.forget();
                }
                let t = clock.stamp();
                let request = json!({"op": "publish", "channel": channel, "id": t,
                    "data": data(t, pad)});
                if let Err(e) = ws.send(Message::text(request.to_string())).await {
                    shared.error(format!("publisher: {e}"));
                    return;
                }
                open += 1;
            }
            received = ws.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        shared.error(format!("publisher: {e}"));
                        return;
                    }
                    None => {
                        shared.error("the hub closed a publisher".into());
                        return;
                    }
                };
                let Ok(answer) = serde_json::from_str::<Answer<'_>>(&text) else {
                    continue;
                };
                let Some(id) = answer.id else { continue };
                open = open.saturating_sub(1);
                room.add_permits(1);
                match answer.kind {
                    "ack" if clock.counts(id) => {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    "ack" => {}
                    _ => shared.error(format!(
                        "publish refused: {}",
                        answer.message.as_deref().unwrap_or(answer.kind)
                    )),
                }
            }
            () = tokio::time::sleep_until(until + GRACE), if !sending => {
                shared.error(format!("{open} publishes never acknowledged"));
                break;
            }
        }
    }
    if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        shared.error(format!("publisher close: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_must_follow_each_other_once() {
        let mut seen = 4;
        assert_eq!(next_offset(&mut seen, 5), Ok(()));
        assert_eq!(next_offset(&mut seen, 5), Err(Offset::Again));
        assert_eq!(next_offset(&mut seen, 3), Err(Offset::Again));
        assert_eq!(seen, 5);
        assert_eq!(next_offset(&mut seen, 9), Err(Offset::Missed(3)));
        assert_eq!(next_offset(&mut seen, 10), Ok(()));
    }

    #[test]
    fn subscribers_get_a_name_once() {
        assert_eq!(with_name("ws://h/ws", "a"), "ws://h/ws?name=a");
        assert_eq!(with_name("ws://h/ws?x=1", "a"), "ws://h/ws?x=1&name=a");
        assert_eq!(with_name("ws://h/ws?name=b", "a"), "ws://h/ws?name=b");
        assert_eq!(urls(&[], "ws://h/"), ["ws://h/"]);
    }
}
