//! Hub mode: P publishers and N subscribers of one channel over the hub's protocol
//! (`switchboard serve --mode hub`, `switchboard_hub::protocol`), every delivery checked.
//!
//! Each publication's `data` is `{"p":PUBLISHER,"s":SEQUENCE,"t":SENT_US,"x":"…"}` (`x` pads
//! it to `--size` bytes). A subscriber checks what the hub promises (`protocol.rs`,
//! "Invariants"): the channel's offsets arrive contiguous and increasing, so every publication
//! arrives exactly once and in order; and each publisher's sequence numbers arrive 0, 1, 2, …
//! with none missed. Any break is an error that ends the subscriber. The latency is from
//! publish to delivery.
//!
//! Flow control is closed-loop, as in broadcast mode: each publisher keeps at most K
//! publications out that not every subscriber has received, so the hub is measured at the
//! rate it delivers. The channel is named after this run, so no history of another run is
//! replayed; every subscriber has its `subscribed` reply before the first publication.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use switchboard::{CloseCode, Message, WebSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::open::{Transport, open, open_all};
use super::progress::{connect_bar, window_bar};
use super::report::Report;
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

/// How long a connection's `connected` and a subscriber's `subscribed` may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A publisher gives up when none of its publications completes for this long.
const STALL: Duration = Duration::from_secs(10);

struct Shared {
    /// Per publisher, per slot of its window: subscribers yet to receive that publication.
    slots: Vec<Vec<AtomicU32>>,
    /// Per publisher: wakes it when one of its slots empties.
    freed: Vec<Notify>,
    /// Deliveries checked so far, warm-up included (for the progress bar).
    progress: AtomicU64,
    latencies: Latencies,
    /// Send times in publications count from here, in µs.
    epoch: Instant,
    window: OnceLock<Window>,
    channel: String,
    size: usize,
}

#[derive(Debug, Default)]
struct Tally {
    deliveries: u64,
    published: u64,
    errors: Errors,
}

/// A frame from the hub, with the fields this mode reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    offset: Option<u64>,
    data: Option<Data>,
    code: Option<String>,
    message: Option<String>,
}

/// What a publication carries.
#[derive(Deserialize)]
struct Data {
    p: usize,
    s: u64,
    t: u64,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.raw {
        bail!("hub mode needs a hub (--raw applies to echo, idle and handshakes)");
    }
    if args.binary {
        bail!("the hub's protocol is text: --binary does not apply to hub mode");
    }
    if args.publishers == 0 {
        bail!("--publishers must be at least 1");
    }
    let subscribers = u32::try_from(args.connections).context("too many subscribers")?;
    let total = args.connections + args.publishers;
    let mut errors = Errors::default();
    let bar = connect_bar(total);
    let url = args.url.clone();
    let mut sockets = open_all(
        total,
        args.connect_concurrency,
        || open(url.clone()),
        &mut errors,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    if errors.count() > 0 {
        bail!(
            "{} of {total} connections failed: {}",
            errors.count(),
            errors.first()
        );
    }
    let channel = format!("bench-{}-{:x}", std::process::id(), rand_suffix());
    let publishers = sockets.split_off(args.connections);
    // Every connection is greeted, every subscriber subscribed, before anything is published.
    let mut ready = JoinSet::new();
    for (index, ws) in sockets.into_iter().enumerate() {
        let channel = channel.clone();
        ready.spawn(async move {
            let ws = tokio::time::timeout(READY_TIMEOUT, join(ws, Some(&channel))).await;
            (index, ws)
        });
    }
    let mut subscribed = Vec::with_capacity(args.connections);
    while let Some(joined) = ready.join_next().await {
        let (_, ws) = joined.context("a subscriber's task")?;
        let ws = ws.map_err(|_| anyhow::anyhow!("a subscriber was not subscribed in time"))?;
        subscribed.push(ws.context("subscribing")?);
    }
    let mut greeted = Vec::with_capacity(args.publishers);
    for ws in publishers {
        let ws = tokio::time::timeout(READY_TIMEOUT, join(ws, None)).await;
        let ws = ws.map_err(|_| anyhow::anyhow!("a publisher was not greeted in time"))?;
        greeted.push(ws.context("a publisher's greeting")?);
    }

    let shared = Arc::new(Shared {
        slots: (0..args.publishers)
            .map(|_| (0..args.in_flight).map(|_| AtomicU32::new(0)).collect())
            .collect(),
        freed: (0..args.publishers).map(|_| Notify::new()).collect(),
        progress: AtomicU64::new(0),
        latencies: Latencies::new(),
        epoch: Instant::now(),
        window: OnceLock::new(),
        channel,
        size: args.size,
    });
    let (stop, stopped) = watch::channel(false);
    let mut receiving = JoinSet::new();
    for ws in subscribed {
        receiving.spawn(subscriber(ws, shared.clone(), stopped.clone()));
    }
    let window = Window::starting_now(args);
    let _ = shared.window.set(window);
    let mut publishing = JoinSet::new();
    for (index, ws) in greeted.into_iter().enumerate() {
        publishing.spawn(publisher(ws, index, shared.clone(), subscribers));
    }
    let bar = window_bar();
    let (start, end) = window
        .watch(args.server_pid, &shared.progress, "deliveries", &bar)
        .await;
    bar.finish_and_clear();

    let mut tally = Tally::default();
    while let Some(published) = publishing.join_next().await {
        match published {
            Ok(t) => {
                tally.published += t.published;
                tally.errors.merge(t.errors);
            }
            Err(e) => tally.errors.add(format!("publisher task: {e}")),
        }
    }
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::from(window.until + GRACE);
    loop {
        match tokio::time::timeout_at(deadline, receiving.join_next()).await {
            Ok(Some(Ok(t))) => {
                tally.deliveries += t.deliveries;
                tally.errors.merge(t.errors);
            }
            Ok(Some(Err(e))) => tally.errors.add(format!("subscriber task: {e}")),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..receiving.len() {
                    let late = "a subscriber did not close in time";
                    tally.errors.add(late.into());
                }
                receiving.abort_all();
                break;
            }
        }
    }
    errors.merge(tally.errors);
    let mut report = Report::new(args);
    report.counted(tally.deliveries, tally.deliveries * args.size as u64);
    report.published = Some(tally.published);
    report.publishers = Some(args.publishers);
    // A publication missed would have been an error: none was, when there are none.
    report.missed = Some(0);
    report.latency_us = shared.latencies.summary();
    report.cpu = Some(start.usage(&end, tally.deliveries));
    report.errors(errors);
    Ok(report)
}

/// A few random bits for the channel's name, from the clock: runs a second apart differ.
fn rand_suffix() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_nanos() as u64)
}

/// Waits for the hub's `connected`, then, with `channel`, subscribes and waits for
/// `subscribed`.
async fn join<S: Transport>(
    mut ws: WebSocket<S>,
    channel: Option<&str>,
) -> anyhow::Result<WebSocket<S>> {
    expect(&mut ws, "connected").await?;
    if let Some(channel) = channel {
        let subscribe = serde_json::json!({"op": "subscribe", "channel": channel, "id": 0});
        ws.send(Message::text(subscribe.to_string())).await?;
        expect(&mut ws, "subscribed").await?;
    }
    Ok(ws)
}

/// Reads frames until one of type `kind`; an `error` or the end of the connection is an error.
async fn expect<S: Transport>(ws: &mut WebSocket<S>, kind: &str) -> anyhow::Result<()> {
    loop {
        let Some(message) = ws.recv().await else {
            bail!("the hub closed the connection before {kind}");
        };
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Frame = serde_json::from_str(text.as_str())
            .with_context(|| format!("not a frame of the hub's protocol: {text}"))?;
        if frame.kind == kind {
            return Ok(());
        }
        if frame.kind == "error" {
            bail!("the hub answered {}", refusal(&frame));
        }
    }
}

fn refusal(frame: &Frame) -> String {
    format!(
        "{}: {}",
        frame.code.as_deref().unwrap_or("error"),
        frame.message.as_deref().unwrap_or("")
    )
}

/// The publication `seq` of publisher `p`, sent `sent_us` µs after the epoch, padded to
/// `size` bytes of JSON when it is shorter.
fn publication(channel: &str, p: usize, seq: u64, sent_us: u64, size: usize) -> String {
    let base = format!(r#"{{"p":{p},"s":{seq},"t":{sent_us},"x":""}}"#);
    let pad = "x".repeat(size.saturating_sub(base.len()));
    format!(
        r#"{{"op":"publish","channel":"{channel}","id":{seq},"data":{{"p":{p},"s":{seq},"t":{sent_us},"x":"{pad}"}}}}"#
    )
}

async fn publisher<S: Transport>(
    mut ws: WebSocket<S>,
    index: usize,
    shared: Arc<Shared>,
    subscribers: u32,
) -> Tally {
    let mut tally = Tally::default();
    let Some(window) = shared.window.get().copied() else {
        return tally;
    };
    let slots = &shared.slots[index];
    let in_flight = slots.len() as u64;
    let (mut sent, mut oldest) = (0u64, 0u64);
    loop {
        // The hub's acks are read as they come, so that they never back up into its send
        // queue for this connection (which it would end as a slow reader's).
        while let Some(received) = ready_now(&mut ws).await {
            if let Err(e) = reply(received) {
                tally.errors.add(format!("publisher: {e}"));
                return tally;
            }
        }
        let now = Instant::now();
        if now >= window.until {
            break;
        }
        while oldest < sent && slots[(oldest % in_flight) as usize].load(Ordering::Acquire) == 0 {
            oldest += 1;
        }
        let sent_us = now.duration_since(shared.epoch).as_micros() as u64;
        let mut fed = false;
        while sent - oldest < in_flight {
            slots[(sent % in_flight) as usize].store(subscribers, Ordering::Release);
            let text = publication(&shared.channel, index, sent, sent_us, shared.size);
            if let Err(e) = ws.feed(Message::text(text)) {
                tally.errors.add(format!("publisher: {e}"));
                return tally;
            }
            if window.contains(now) {
                tally.published += 1;
            }
            sent += 1;
            fed = true;
        }
        if fed {
            if let Err(e) = ws.flush().await {
                tally.errors.add(format!("publisher: {e}"));
                return tally;
            }
            continue;
        }
        tokio::select! {
            () = shared.freed[index].notified() => {}
            received = ws.recv() => if let Err(e) = reply(received) {
                tally.errors.add(format!("publisher: {e}"));
                return tally;
            },
            () = tokio::time::sleep_until(window.until.into()) => break,
            () = tokio::time::sleep(STALL) => {
                tally.errors.add(format!(
                    "no publication reached every subscriber for {} s",
                    STALL.as_secs()
                ));
                break;
            }
        }
    }
    if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        tally.errors.add(format!("publisher close: {e}"));
    }
    tally
}

/// The next message if one is there without waiting.
async fn ready_now<S: Transport>(
    ws: &mut WebSocket<S>,
) -> Option<Option<Result<Message, switchboard::Error>>> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match ws.poll_recv(cx) {
            std::task::Poll::Ready(received) => Some(received),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// A reply to a publisher: an ack is fine; an error reply (a refused publication) or the end
/// of the connection ends the run.
fn reply(received: Option<Result<Message, switchboard::Error>>) -> Result<(), String> {
    match received {
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<Frame>(text.as_str()) {
            Ok(frame) if frame.kind == "error" => {
                Err(format!("the hub answered {}", refusal(&frame)))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!("not a frame of the hub's protocol ({e})")),
        },
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the hub closed the connection".into()),
    }
}

/// What one subscriber has checked so far.
#[derive(Default)]
struct Order {
    /// The offset of the last publication received.
    offset: Option<u64>,
    /// Per publisher: the sequence number expected next.
    next: Vec<u64>,
}

impl Order {
    /// Checks one delivery against the hub's promises; `Err` says which it broke.
    fn check(&mut self, offset: Option<u64>, data: &Data) -> Result<(), String> {
        let Some(offset) = offset else {
            return Err("a message without an offset".into());
        };
        if let Some(last) = self.offset
            && offset != last + 1
        {
            return Err(format!("offset {offset} after {last}: not contiguous"));
        }
        self.offset = Some(offset);
        if self.next.len() <= data.p {
            self.next.resize(data.p + 1, 0);
        }
        let expected = self.next[data.p];
        if data.s != expected {
            return Err(format!(
                "publisher {}'s publication {} where {expected} was due",
                data.p, data.s
            ));
        }
        self.next[data.p] += 1;
        Ok(())
    }
}

async fn subscriber<S: Transport>(
    mut ws: WebSocket<S>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut latencies = LatencyBatch::default();
    let mut order = Order::default();
    let failed = loop {
        let received = tokio::select! {
            received = ws.recv() => received,
            _ = stop.wait_for(|stop| *stop) => break false,
        };
        let text = match received {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                tally.errors.add("the hub closed a subscriber".into());
                break true;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tally.errors.add(e.to_string());
                break true;
            }
        };
        let now = Instant::now();
        let frame = match serde_json::from_str::<Frame>(text.as_str()) {
            Ok(frame) => frame,
            Err(e) => {
                tally
                    .errors
                    .add(format!("not a frame of the hub's protocol ({e})"));
                break true;
            }
        };
        if frame.kind == "error" {
            tally
                .errors
                .add(format!("the hub answered {}", refusal(&frame)));
            break true;
        }
        // Joins, leaves and heartbeats are not publications.
        let (true, Some(data)) = (frame.kind == "message", &frame.data) else {
            continue;
        };
        if data.p >= shared.slots.len() {
            tally
                .errors
                .add(format!("a publication from no publisher ({})", data.p));
            break true;
        }
        if let Err(e) = order.check(frame.offset, data) {
            tally.errors.add(e);
            break true;
        }
        let slots = &shared.slots[data.p];
        if slots[(data.s % slots.len() as u64) as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.freed[data.p].notify_one();
        }
        shared.progress.fetch_add(1, Ordering::Relaxed);
        if shared.window.get().is_some_and(|w| w.contains(now)) {
            tally.deliveries += 1;
            let sent = shared.epoch + Duration::from_micros(data.t);
            let latency = now.saturating_duration_since(sent);
            shared.latencies.record(&mut latencies, latency);
        }
    };
    shared.latencies.flush(&mut latencies);
    if !failed && let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        tally.errors.add(format!("subscriber close: {e}"));
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(p: usize, s: u64) -> Data {
        Data { p, s, t: 0 }
    }

    #[test]
    fn a_publication_is_json_of_the_size_asked() {
        let text = publication("ch", 1, 7, 42, 64);
        let request: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(request["op"], "publish");
        assert_eq!(request["data"]["s"], 7);
        assert_eq!(request["data"].to_string().len(), 64);
    }

    #[test]
    fn offsets_must_be_contiguous_and_each_publisher_in_order() {
        let mut order = Order::default();
        assert!(order.check(Some(10), &data(0, 0)).is_ok());
        assert!(order.check(Some(11), &data(1, 0)).is_ok());
        assert!(order.check(Some(12), &data(0, 1)).is_ok());
        // A gap, a duplicate, a publication out of its publisher's order.
        assert!(order.clone_at(12).check(Some(14), &data(0, 2)).is_err());
        assert!(order.clone_at(12).check(Some(12), &data(0, 2)).is_err());
        assert!(order.clone_at(12).check(Some(13), &data(0, 3)).is_err());
        assert!(order.check(Some(13), &data(0, 2)).is_ok());
        assert!(order.check(None, &data(0, 3)).is_err());
    }

    impl Order {
        fn clone_at(&self, offset: u64) -> Self {
            Self {
                offset: Some(offset),
                next: self.next.clone(),
            }
        }
    }
}
