//! Hub mode: publishers and subscribers over the hub protocol (`switchboard serve`, the
//! default mode, URL ws://HOST:PORT/ws), on one node or across several sharing a broker.
//!
//! Subscribers (`-c`, spread over the `--subscribe` URLs, else the server's URL) each follow
//! every `--channel`; WebSocket publishers (`--publishers`, spread over the `--publish` URLs,
//! else the server's URL) and server API publishers (one per `--api-publish`) take the channels
//! in turn. The window starts once every subscriber has its `subscribed` replies, so none is
//! still registering.
//!
//! What the hub promises is checked, not sampled (`switchboard_hub::protocol`,
//! "Invariants"): each subscriber must see every channel's offsets one after the other from
//! the offset of its `subscribed` reply, each once; and each publisher's publications in the
//! order it sent them, none missed. Any break is an error (a gap also counts as missed, an
//! offset seen again as a duplicate). Each publication's data is
//! `{"p":PUBLISHER,"s":SEQUENCE,"t":SENT_US,"pad":"…"}`: its send time is read back in the same
//! process, so clocks agree.
//!
//! Flow control is closed-loop, as in broadcast mode: each publisher keeps at most `-m`
//! publications out that not every subscriber has received, so the hub is measured at the rate
//! it delivers rather than at the rate it drops slow subscribers. A fixed `--rate` (publications
//! per second over all publishers) paces them below that, for latency below saturation. An API
//! publisher has one request in flight, as HTTP/1.1 without pipelining has. `--cpu-pid`
//! (repeated: every node and Redis of a deployment) adds their CPU time over the window per
//! delivery.
//!
//! Here the run, its subscribers and WebSocket publishers; in [`flow`] the clock and the flow
//! control every task shares; in [`api`] the server API publisher; in [`frame`] what a
//! subscriber reads of a frame, without a JSON parse for a `message` in the hub's shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Deserialize;
use serde_json::json;
use switchboard::{CloseCode, Message, WebSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use self::api::ApiPublisher;
use self::flow::{Clock, Shared, data, ticker};
use super::args::BenchArgs;
use super::open::{Transport, open, open_every};
use super::probe::cpu_seconds;
use super::progress::{connect_bar, window_bar};
use super::report::{Deployment, Report};
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

mod api;
mod flow;
mod frame;

/// How long subscribing every subscriber may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Tally {
    deliveries: u64,
    missed: u64,
    duplicates: u64,
    /// Deliveries whose frame [`frame::read`] parsed in full rather than scanned.
    parsed_in_full: u64,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let hub = &args.hub;
    if args.raw {
        bail!("hub mode needs a hub (--raw applies to echo, idle and handshakes)");
    }
    if args.binary {
        bail!("the hub's protocol is text: --binary does not apply to hub mode");
    }
    let subscribe_urls = urls(&hub.subscribe, &args.url, "bench-sub");
    let publish_urls = urls(&hub.publish, &args.url, "bench-pub");
    let publishers = hub.publishers + hub.api_publish.len();
    if publishers == 0 {
        bail!("no publisher: --publishers must be at least 1 without --api-publish");
    }
    let shared = Arc::new(Shared {
        slots: (0..publishers)
            .map(|_| (0..args.in_flight).map(|_| AtomicU32::new(0)).collect())
            .collect(),
        freed: (0..publishers).map(|_| Notify::new()).collect(),
        subscribers: u32::try_from(args.connections)?,
        acked: AtomicU64::new(0),
        progress: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        latencies: Latencies::new(),
        errors: std::sync::Mutex::new(Errors::default()),
    });

    let bar = connect_bar(args.connections + hub.publishers);
    let turn = AtomicUsize::new(0);
    let next = |urls: &[String]| urls[turn.fetch_add(1, Ordering::Relaxed) % urls.len()].clone();
    let concurrency = args.connect_concurrency;
    let subscribing = || open(next(&subscribe_urls));
    let sockets = open_every(args.connections, concurrency, subscribing, &bar).await?;
    turn.store(0, Ordering::Relaxed);
    let publishing = || open(next(&publish_urls));
    let websockets = open_every(hub.publishers, concurrency, publishing, &bar).await?;
    bar.finish_and_clear();
    let (stop, stopped) = watch::channel(false);
    let (started, starts) = watch::channel(None::<Clock>);
    let mut subscribers = JoinSet::new();
    for ws in sockets {
        let (channels, shared) = (hub.channel.clone(), shared.clone());
        subscribers.spawn(subscribe(
            ws,
            channels,
            shared,
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
    let mut apis = Vec::new();
    for url in &hub.api_publish {
        apis.push(ApiPublisher::connect(url, hub.api_key.as_deref().unwrap_or_default()).await?);
    }

    let clock = Clock {
        origin: Instant::now(),
        window: Window::starting_now(args),
    };
    let _ = started.send(Some(clock));
    let per_publisher = hub.rate as f64 / publishers as f64;
    let pad = "x".repeat(args.size);
    let mut channels = hub.channel.iter().cycle();
    let mut publishing = JoinSet::new();
    for (p, ws) in websockets.into_iter().enumerate() {
        let channel = channels.next().cloned().unwrap_or_default();
        let (shared, pad) = (shared.clone(), pad.clone());
        publishing.spawn(async move {
            publish(ws, p, &channel, clock, ticker(per_publisher), &pad, &shared).await;
        });
    }
    for (i, api) in apis.into_iter().enumerate() {
        let p = hub.publishers + i;
        let channel = channels.next().cloned().unwrap_or_default();
        let (shared, pad) = (shared.clone(), pad.clone());
        publishing.spawn(async move {
            api.run(p, &channel, clock, ticker(per_publisher), &pad, &shared)
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
    // Every publication out has reached every subscriber (or the subscribers' failures say
    // why not) before they stop counting.
    let settled = tokio::time::Instant::now() + GRACE;
    while !shared.all_delivered() && tokio::time::Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);

    let mut tally = Tally::default();
    let grace = tokio::time::Instant::now() + GRACE;
    loop {
        match tokio::time::timeout_at(grace, subscribers.join_next()).await {
            Ok(Some(Ok(t))) => {
                tally.deliveries += t.deliveries;
                tally.missed += t.missed;
                tally.duplicates += t.duplicates;
                tally.parsed_in_full += t.parsed_in_full;
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
        parsed_in_full: tally.parsed_in_full,
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

/// `given`, or the server's URL alone, each with a `name` for the hub's presence and logs.
fn urls(given: &[String], url: &str, name: &str) -> Vec<String> {
    if given.is_empty() {
        return vec![with_name(url, name)];
    }
    given.iter().map(|url| with_name(url, name)).collect()
}

/// `url` with a `name` (unless it names one already).
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

/// How a delivery broke the hub's promise.
#[derive(Debug, PartialEq, Eq)]
enum Broken {
    /// An offset seen already (or older than one seen): a duplicate, or out of order.
    Again,
    /// This many offsets before it never came.
    Missed(u64),
}

/// Checks that `offset` follows `seen`, the channel's last offset seen, and moves `seen` to
/// it unless it came again.
fn next_offset(seen: &mut u64, offset: u64) -> Result<(), Broken> {
    if offset <= *seen {
        return Err(Broken::Again);
    }
    let missed = offset - *seen - 1;
    *seen = offset;
    if missed > 0 {
        Err(Broken::Missed(missed))
    } else {
        Ok(())
    }
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
        // Joins and leaves declined: with them, each of N subscribes reaches every subscriber
        // already there, N²/2 frames before the first publication.
        let request = json!({"op": "subscribe", "channel": channel, "id": id, "join_leave": false});
        if let Err(e) = ws.feed(Message::text(request.to_string())) {
            shared.error(format!("subscribe: {e}"));
            return tally;
        }
    }
    // The last offset seen, by channel, from the `subscribed` reply on (a list: a run has a
    // few channels, which compare faster than they hash); and per publisher the sequence
    // number due next.
    let mut last: Vec<(String, u64)> = Vec::with_capacity(channels.len());
    let mut due: Vec<u64> = vec![0; shared.slots.len()];
    let mut latencies = LatencyBatch::default();
    let mut clock = None;
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
                let why = why.unwrap_or_default();
                shared.error(format!("the hub closed a subscriber{why}"));
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
        let frame = match frame::read(&text) {
            Ok(frame) => frame,
            Err(e) => {
                shared.error(format!("not a frame of the hub's protocol ({e})"));
                break true;
            }
        };
        let channel = &*frame.channel;
        match &*frame.kind {
            "subscribed" => {
                match last.iter_mut().find(|(c, _)| c == channel) {
                    Some((_, seen)) => *seen = frame.offset,
                    None => last.push((channel.to_owned(), frame.offset)),
                }
                if last.len() == channels.len() {
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            "message" => {
                let Some((_, seen)) = last.iter_mut().find(|(c, _)| c == channel) else {
                    shared.error(format!(
                        "a message on {channel} before its subscribed reply"
                    ));
                    break true;
                };
                match next_offset(seen, frame.offset) {
                    Ok(()) => {}
                    Err(Broken::Again) => {
                        tally.duplicates += 1;
                        shared.error(format!("{channel}: offset {} again", frame.offset));
                        continue;
                    }
                    Err(Broken::Missed(n)) => {
                        tally.missed += n;
                        let offset = frame.offset;
                        shared.error(format!("{channel}: {n} offsets missed before {offset}"));
                    }
                }
                shared.progress.fetch_add(1, Ordering::Relaxed);
                tally.parsed_in_full += u64::from(!frame.scanned);
                // Another program's publication on the channel is not this run's.
                let Some(data) = frame.stamp.filter(|data| data.p < due.len()) else {
                    continue;
                };
                let expected = due[data.p];
                if data.s < expected {
                    shared.error(format!(
                        "publisher {}'s publication {} again, after {}",
                        data.p,
                        data.s,
                        expected - 1
                    ));
                    continue;
                }
                if data.s > expected {
                    shared.error(format!(
                        "publisher {}'s publication {} where {expected} was due",
                        data.p, data.s
                    ));
                }
                shared.delivered(data.p, expected, data.s);
                due[data.p] = data.s + 1;
                // Read once set: a watch's borrow takes its lock, for every delivery.
                if clock.is_none() {
                    clock = *started.borrow_and_update();
                }
                let Some(clock) = clock else {
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
                shared.error(format!("subscriber: the hub answered {message}"));
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

/// Publisher `p`: publishes on `channel` until the window ends, as closed-loop flow control
/// and `ticker` allow, reading the hub's acks as they come (so that they never back up into
/// its send queue for this connection, which it would end as a slow reader's).
async fn publish<S: Transport>(
    mut ws: WebSocket<S>,
    p: usize,
    channel: &str,
    clock: Clock,
    mut ticker: Option<tokio::time::Interval>,
    pad: &str,
    shared: &Shared,
) {
    let until = tokio::time::Instant::from(clock.window.until);
    // Send time by sequence number, until acknowledged.
    let mut open: HashMap<u64, u64> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let sending = tokio::time::Instant::now() < until;
        if !sending && open.is_empty() {
            break;
        }
        tokio::select! {
            room = shared.room(p, seq), if sending => {
                if let Err(e) = room {
                    shared.error(format!("publisher {p}: {e}"));
                    break;
                }
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                // Every publication the window has room for goes out in one write, as the
                // broadcast mode's publisher sends its messages: at full speed (no ticker) the
                // room freed by one delivery is seldom a single slot.
                let t = clock.stamp();
                loop {
                    let request = json!({"op": "publish", "channel": channel, "id": seq,
                        "data": data(p, seq, t, pad)});
                    if let Err(e) = ws.feed(Message::text(request.to_string())) {
                        shared.error(format!("publisher {p}: {e}"));
                        return;
                    }
                    open.insert(seq, t);
                    seq += 1;
                    if ticker.is_some() || !shared.try_room(p, seq) {
                        break;
                    }
                }
                if let Err(e) = ws.flush().await {
                    shared.error(format!("publisher {p}: {e}"));
                    return;
                }
            }
            received = ws.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        shared.error(format!("publisher {p}: {e}"));
                        return;
                    }
                    None => {
                        shared.error(format!("the hub closed publisher {p}"));
                        return;
                    }
                };
                let Ok(answer) = serde_json::from_str::<Answer<'_>>(&text) else {
                    continue;
                };
                let Some(sent) = answer.id.and_then(|id| open.remove(&id)) else {
                    continue;
                };
                match answer.kind {
                    "ack" if clock.counts(sent) => {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    "ack" => {}
                    _ => shared.error(format!(
                        "publisher {p}: the hub answered {}",
                        answer.message.as_deref().unwrap_or(answer.kind)
                    )),
                }
            }
            () = tokio::time::sleep_until(until + GRACE), if !sending => {
                shared.error(format!("publisher {p}: {} publishes never acknowledged", open.len()));
                break;
            }
        }
    }
    if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        shared.error(format!("publisher {p} close: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_must_follow_each_other_once() {
        let mut seen = 4;
        assert_eq!(next_offset(&mut seen, 5), Ok(()));
        assert_eq!(next_offset(&mut seen, 5), Err(Broken::Again));
        assert_eq!(next_offset(&mut seen, 3), Err(Broken::Again));
        assert_eq!(seen, 5);
        assert_eq!(next_offset(&mut seen, 9), Err(Broken::Missed(3)));
        assert_eq!(next_offset(&mut seen, 10), Ok(()));
    }

    #[tokio::test]
    async fn a_publisher_waits_until_its_oldest_publication_reached_everyone() {
        let shared = Shared {
            slots: vec![(0..2).map(|_| AtomicU32::new(0)).collect()],
            freed: vec![Notify::new()],
            subscribers: 2,
            acked: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            latencies: Latencies::new(),
            errors: std::sync::Mutex::default(),
        };
        shared.room(0, 0).await.unwrap();
        // The window's room is taken without waiting, up to its size.
        assert!(shared.try_room(0, 1));
        assert!(!shared.try_room(0, 2), "2 would reuse 0's slot");
        // Publication 2 reuses 0's slot: not before both subscribers have 0.
        let third = shared.room(0, 2);
        tokio::pin!(third);
        assert!(futures_poll(&mut third).is_none());
        shared.delivered(0, 0, 0);
        assert!(futures_poll(&mut third).is_none());
        // The second subscriber skipped 0 and got 1: 0 counts as had.
        shared.delivered(0, 0, 1);
        assert!(futures_poll(&mut third).is_some());
    }

    /// Polls once.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn clients_get_a_name_once() {
        assert_eq!(with_name("ws://h/ws", "a"), "ws://h/ws?name=a");
        assert_eq!(with_name("ws://h/ws?x=1", "a"), "ws://h/ws?x=1&name=a");
        assert_eq!(with_name("ws://h/ws?name=b", "a"), "ws://h/ws?name=b");
        assert_eq!(urls(&[], "ws://h/ws", "s"), ["ws://h/ws?name=s"]);
    }
}
