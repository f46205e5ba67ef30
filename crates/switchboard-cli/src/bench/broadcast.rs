//! Broadcast mode: one publisher, N subscribers, against a server that sends every message to
//! every other client (`switchboard serve --mode broadcast`, the classic broadcast example).
//!
//! Each message carries its sequence number and the time it was sent, then filler derived from
//! the sequence number: a subscriber checks all of it, that messages come in order, and records
//! the publish-to-receive latency. A sequence number that is skipped is a delivery the server
//! dropped (a slow subscriber); it is counted as missed.
//!
//! Flow control is closed-loop: the publisher keeps at most K messages out that not every
//! subscriber has received, so the server is measured at the rate it can deliver rather than
//! at the rate it can drop. Before measuring, the publisher sends probe messages until every
//! subscriber has received one, so that no subscriber is still being registered when the
//! sequence starts.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use switchboard::{CloseCode, Message, Utf8Bytes, WebSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::open::{Transport, open, open_every};
use super::progress::{connect_bar, window_bar};
use super::report::Report;
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

/// Sequence number and send time, 8 hex digits each.
const HEAD: usize = 16;
/// How long the publisher waits for more subscribers to receive a probe before it sends another.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long registering every subscriber may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The publisher gives up when no message completes for this long.
const STALL: Duration = Duration::from_secs(10);
/// What a probe starts with (not hex, so never a sequence number).
const PROBE: &[u8; HEAD] = b"probe-probe-prob";

struct Shared {
    /// Per slot of the publisher's window: subscribers yet to receive (or skip) that message.
    slots: Vec<AtomicU32>,
    /// Wakes the publisher when a slot empties.
    freed: Notify,
    /// Subscribers that have received a probe.
    ready: AtomicUsize,
    /// Deliveries checked so far, warm-up included (for the progress bar).
    progress: AtomicU64,
    latencies: Latencies,
    /// Send times in messages count from here, in µs.
    epoch: Instant,
    /// Set once every subscriber is ready.
    window: OnceLock<Window>,
    binary: bool,
    size: usize,
}

#[derive(Debug, Default)]
struct Tally {
    deliveries: u64,
    missed: u64,
    published: u64,
    errors: Errors,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.raw {
        bail!("broadcast needs a WebSocket server (--raw applies to echo, idle and handshakes)");
    }
    if args.size < HEAD {
        bail!("broadcast messages carry a {HEAD}-byte header: --size must be at least {HEAD}");
    }
    let n = u32::try_from(args.connections).context("too many subscribers")?;
    let bar = connect_bar(args.connections + 1);
    let url = args.url.clone();
    let connect = || {
        let url = url.clone();
        open(url)
    };
    let mut sockets = open_every(
        args.connections + 1,
        args.connect_concurrency,
        connect,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    let Some(mut publisher) = sockets.pop() else {
        bail!("no connection opened");
    };
    let shared = Arc::new(Shared {
        slots: (0..args.in_flight).map(|_| AtomicU32::new(0)).collect(),
        freed: Notify::new(),
        ready: AtomicUsize::new(0),
        progress: AtomicU64::new(0),
        latencies: Latencies::new(),
        epoch: Instant::now(),
        window: OnceLock::new(),
        binary: args.binary,
        size: args.size,
    });
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = JoinSet::new();
    for ws in sockets {
        subscribers.spawn(subscribe(ws, shared.clone(), stopped.clone()));
    }

    // Probe until every subscriber is registered and receiving. A probe is repeated only when
    // the last one reached no one new for a while, so a slow server is not flooded with them.
    let probe = message(&shared, Bytes::from(probe_payload(args.size)))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut seen = usize::MAX;
    while shared.ready.load(Ordering::Relaxed) < args.connections {
        let ready = shared.ready.load(Ordering::Relaxed);
        if ready != seen {
            seen = ready;
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} subscribers received anything in {} s: does the server broadcast?",
                shared.ready.load(Ordering::Relaxed),
                args.connections,
                READY_TIMEOUT.as_secs()
            );
        }
        publisher
            .send(probe.clone())
            .await
            .context("publisher: sending a probe")?;
        seen = usize::MAX;
        tokio::time::sleep(PROBE_EVERY).await;
    }

    let window = Window::starting_now(args);
    let _ = shared.window.set(window);
    let publishing = tokio::spawn(publish(publisher, shared.clone(), n));
    let bar = window_bar();
    let (start, end) = window
        .watch(args.server_pid, &shared.progress, "deliveries", &bar)
        .await;
    bar.finish_and_clear();

    let mut tally = Tally::default();
    match publishing.await {
        Ok(t) => tally = t,
        Err(e) => tally.errors.add(format!("publisher task: {e}")),
    }
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::from(window.until + GRACE);
    loop {
        match tokio::time::timeout_at(deadline, subscribers.join_next()).await {
            Ok(Some(Ok(t))) => {
                tally.deliveries += t.deliveries;
                tally.missed += t.missed;
                tally.errors.merge(t.errors);
            }
            Ok(Some(Err(e))) => tally.errors.add(format!("subscriber task: {e}")),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..subscribers.len() {
                    tally
                        .errors
                        .add("a subscriber did not close in time".into());
                }
                subscribers.abort_all();
                break;
            }
        }
    }
    let mut report = Report::new(args);
    report.counted(tally.deliveries, tally.deliveries * args.size as u64);
    report.published = Some(tally.published);
    report.missed = Some(tally.missed);
    report.latency_us = shared.latencies.summary();
    report.cpu = Some(start.usage(&end, tally.deliveries));
    report.errors(tally.errors);
    Ok(report)
}

fn message(shared: &Shared, payload: Bytes) -> anyhow::Result<Message> {
    Ok(if shared.binary {
        Message::Binary(payload)
    } else {
        Message::Text(Utf8Bytes::try_from(payload)?)
    })
}

fn probe_payload(size: usize) -> Vec<u8> {
    let mut payload = PROBE.to_vec();
    payload.resize(size, b'.');
    payload
}

/// The payload of message `seq`, sent `sent_us` µs after the epoch.
fn payload(seq: u64, sent_us: u32, size: usize) -> Vec<u8> {
    let mut payload = format!("{:08x}{sent_us:08x}", seq as u32).into_bytes();
    payload.extend((HEAD..size).map(|i| filler(seq, i)));
    payload
}

fn filler(seq: u64, i: usize) -> u8 {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    ALPHABET[(seq as usize).wrapping_mul(7).wrapping_add(i) % 32]
}

/// Parses a payload: its sequence number (low 32 bits) and send time, with the filler checked.
fn parse(payload: &[u8], size: usize) -> Result<(u32, u32), String> {
    if payload.len() != size {
        return Err(format!(
            "got {} bytes for a message of {size}",
            payload.len()
        ));
    }
    let hex = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
    };
    let (Some(seq), Some(sent)) = (hex(&payload[..8]), hex(&payload[8..HEAD])) else {
        return Err("a message without a sequence number".into());
    };
    if let Some(at) = (HEAD..size).find(|&i| payload[i] != filler(u64::from(seq), i)) {
        return Err(format!(
            "message {seq} differs from what was sent at byte {at}"
        ));
    }
    Ok((seq, sent))
}

async fn publish<S: Transport>(
    mut ws: WebSocket<S>,
    shared: Arc<Shared>,
    subscribers: u32,
) -> Tally {
    let mut tally = Tally::default();
    let Some(window) = shared.window.get().copied() else {
        return tally;
    };
    let in_flight = shared.slots.len() as u64;
    let (mut sent, mut oldest) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= window.until {
            break;
        }
        while oldest < sent
            && shared.slots[(oldest % in_flight) as usize].load(Ordering::Acquire) == 0
        {
            oldest += 1;
        }
        let sent_us = now.duration_since(shared.epoch).as_micros() as u32;
        let mut fed = false;
        while sent - oldest < in_flight {
            shared.slots[(sent % in_flight) as usize].store(subscribers, Ordering::Release);
            let data = Bytes::from(payload(sent, sent_us, shared.size));
            let fed_ok = match message(&shared, data) {
                Ok(m) => ws.feed(m).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = fed_ok {
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
            () = shared.freed.notified() => {}
            () = tokio::time::sleep_until(window.until.into()) => break,
            () = tokio::time::sleep(STALL) => {
                tally.errors.add(format!(
                    "no message reached every subscriber for {} s",
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

async fn subscribe<S: Transport>(
    mut ws: WebSocket<S>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut latencies = LatencyBatch::default();
    let mut ready = false;
    // The next sequence number expected.
    let mut next: u64 = 0;
    let in_flight = shared.slots.len() as u64;
    let failed = loop {
        let received = tokio::select! {
            received = ws.recv() => received,
            _ = stop.wait_for(|stop| *stop) => break false,
        };
        let message = match received {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tally.errors.add(e.to_string());
                break true;
            }
            None => {
                tally.errors.add("the server closed a subscriber".into());
                break true;
            }
        };
        let now = Instant::now();
        let (binary, data) = match &message {
            Message::Text(text) => (false, text.as_bytes()),
            Message::Binary(data) => (true, &data[..]),
            Message::Close(_) => {
                tally.errors.add("the server closed a subscriber".into());
                break true;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if binary != shared.binary {
            tally
                .errors
                .add("a message came back as the wrong kind".into());
            break true;
        }
        if data.starts_with(PROBE) {
            if !ready {
                ready = true;
                shared.ready.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let (seq, sent_us) = match parse(data, shared.size) {
            Ok(parsed) => parsed,
            Err(e) => {
                tally.errors.add(e);
                break true;
            }
        };
        // Sequence numbers travel as their low 32 bits; the full number is the next one at or
        // after `next` with those bits.
        let seq = next + u64::from(seq.wrapping_sub(next as u32));
        if seq >= next + in_flight {
            tally
                .errors
                .add(format!("message {seq} came before {next} was sent"));
            break true;
        }
        for s in next..=seq {
            if shared.slots[(s % in_flight) as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.freed.notify_one();
            }
        }
        shared.progress.fetch_add(1, Ordering::Relaxed);
        if shared.window.get().is_some_and(|w| w.contains(now)) {
            tally.deliveries += 1;
            tally.missed += seq - next;
            let sent = shared.epoch + Duration::from_micros(u64::from(sent_us));
            shared
                .latencies
                .record(&mut latencies, now.saturating_duration_since(sent));
        }
        next = seq + 1;
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

    #[test]
    fn payloads_parse_back_and_corruption_is_caught() {
        let p = payload(0x1_2345_6789, 42, 64);
        assert_eq!(parse(&p, 64), Ok((0x2345_6789, 42)));
        let mut bad = p.clone();
        bad[40] ^= 1;
        assert!(parse(&bad, 64).is_err());
        assert!(parse(&p[..63], 64).is_err());
        assert!(parse(&probe_payload(64), 64).is_err());
        assert_eq!(payload(5, 7, HEAD).len(), HEAD);
    }
}
