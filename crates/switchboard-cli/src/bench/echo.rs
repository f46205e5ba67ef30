//! Echo mode: N connections, each keeping K messages in flight; every echo is checked against
//! the message it answers (kind, length, every byte, order) and only checked echoes count.
//!
//! Messages come from a pool of distinct payloads (at most 16 MiB in all), taken in turn, with
//! each connection starting at a different place in the pool: an echo of the wrong message, a
//! stale buffer or another connection's message fails the check. The pool is built once, so
//! sending costs no allocation per message beyond what the client engine does.
//!
//! Against a raw echo (`--raw`) the connections open without a handshake ([`open`]) and the
//! rest is the same.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use switchboard::{CloseCode, Message, Utf8Bytes, WebSocket};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::open::{Transport, open, open_all};
use super::payload::payload;
use super::progress::{connect_bar, window_bar};
use super::report::Report;
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

/// All payloads of the pool together stay under this.
const POOL_BYTES: usize = 16 << 20;
/// The most distinct payloads.
const POOL_MAX: usize = 64;
/// Echoes a connection counts before it adds them to the progress counter.
const PROGRESS_BATCH: u64 = 64;

/// What every connection sends, and when it counts.
#[derive(Debug)]
struct Plan {
    payloads: Vec<Bytes>,
    messages: Vec<Message>,
    binary: bool,
    in_flight: usize,
    window: Window,
}

impl Plan {
    fn new(args: &BenchArgs, window: Window) -> anyhow::Result<Self> {
        let count = (POOL_BYTES / args.size.max(1)).clamp(2, POOL_MAX);
        let payloads: Vec<Bytes> = (0..count as u64).map(|i| payload(i, args.size)).collect();
        let messages = payloads
            .iter()
            .map(|p| {
                Ok(if args.binary {
                    Message::Binary(p.clone())
                } else {
                    Message::Text(Utf8Bytes::try_from(p.clone())?)
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            payloads,
            messages,
            binary: args.binary,
            in_flight: args.in_flight,
            window,
        })
    }
}

/// Counters shared by the connections.
#[derive(Debug)]
struct Shared {
    /// Echoes checked so far, warm-up included (for the progress bar).
    progress: AtomicU64,
    latencies: Latencies,
}

/// What one connection counted.
#[derive(Debug, Default)]
struct Tally {
    echoes: u64,
    bytes: u64,
    errors: Errors,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut errors = Errors::default();
    let bar = connect_bar(args.connections);
    let conc = args.connect_concurrency;
    let shared = Arc::new(Shared {
        progress: AtomicU64::new(0),
        latencies: Latencies::new(),
    });
    let mut tasks = JoinSet::new();
    let url = args.url.clone();
    let connect = || {
        let url = url.clone();
        open(url)
    };
    let sockets = open_all(args.connections, conc, connect, &mut errors, &bar).await;
    bar.finish_and_clear();
    let window = Window::starting_now(args);
    let plan = Arc::new(Plan::new(args, window)?);
    for (i, ws) in sockets.into_iter().enumerate() {
        let flow = Flow::new(plan.clone(), shared.clone(), i);
        tasks.spawn(ws_echo(ws, flow));
    }
    if tasks.is_empty() {
        bail!("no connection opened: {}", errors.first());
    }

    let bar = window_bar();
    let (start, end) = window
        .watch(args.server_pid, &shared.progress, "msg", &bar)
        .await;
    bar.finish_and_clear();

    let mut echoes = 0;
    let mut bytes = 0;
    let deadline = tokio::time::Instant::from(window.until + GRACE);
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(tally))) => {
                echoes += tally.echoes;
                bytes += tally.bytes;
                errors.merge(tally.errors);
            }
            Ok(Some(Err(e))) => errors.add(format!("connection task: {e}")),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..tasks.len() {
                    errors.add(format!(
                        "echoes still missing {} s after the window",
                        GRACE.as_secs()
                    ));
                }
                tasks.abort_all();
                break;
            }
        }
    }
    let mut report = Report::new(args);
    report.counted(echoes, bytes);
    report.latency_us = shared.latencies.summary();
    report.cpu = Some(start.usage(&end, echoes));
    report.errors(errors);
    Ok(report)
}

/// The messages of one connection: which to send next, which are in flight and since when.
struct Flow {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    next: usize,
    in_flight: VecDeque<(usize, Instant)>,
    tally: Tally,
    unreported: u64,
    latencies: LatencyBatch,
}

impl Flow {
    fn new(plan: Arc<Plan>, shared: Arc<Shared>, connection: usize) -> Self {
        let next = connection % plan.payloads.len();
        let in_flight = VecDeque::with_capacity(plan.in_flight);
        Self {
            plan,
            shared,
            next,
            in_flight,
            tally: Tally::default(),
            unreported: 0,
            latencies: LatencyBatch::default(),
        }
    }

    /// The pool index of the message to send at `now`, or `None` once the window is over.
    fn send(&mut self, now: Instant) -> Option<usize> {
        if now >= self.plan.window.until {
            return None;
        }
        let index = self.next;
        self.next = (self.next + 1) % self.plan.payloads.len();
        self.in_flight.push_back((index, now));
        Some(index)
    }

    /// Checks an echo received at `now` against the oldest message in flight.
    fn check(&mut self, binary: bool, data: &[u8], now: Instant) -> Result<(), String> {
        let Some((index, sent)) = self.in_flight.pop_front() else {
            return Err("received a message that was not sent (or was echoed twice)".into());
        };
        let kind = |binary| if binary { "binary" } else { "text" };
        if binary != self.plan.binary {
            return Err(format!(
                "sent a {} message, got a {} one back",
                kind(self.plan.binary),
                kind(binary)
            ));
        }
        let expected = &self.plan.payloads[index];
        if data.len() != expected.len() {
            return Err(format!(
                "echo of {} bytes for a message of {}",
                data.len(),
                expected.len()
            ));
        }
        if data != &expected[..] {
            let at = data.iter().zip(expected).position(|(a, b)| a != b);
            return Err(format!(
                "echo differs from the message sent, from byte {}",
                at.unwrap_or_default()
            ));
        }
        if self.plan.window.contains(now) {
            self.tally.echoes += 1;
            self.tally.bytes += data.len() as u64;
            self.shared
                .latencies
                .record(&mut self.latencies, now.duration_since(sent));
        }
        self.unreported += 1;
        if self.unreported == PROGRESS_BATCH {
            self.shared
                .progress
                .fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Tally {
        self.shared.latencies.flush(&mut self.latencies);
        self.shared
            .progress
            .fetch_add(self.unreported, Ordering::Relaxed);
        self.tally
    }
}

async fn ws_echo<S: Transport>(mut ws: WebSocket<S>, mut flow: Flow) -> Tally {
    let now = Instant::now();
    for _ in 0..flow.plan.in_flight {
        if let Some(i) = flow.send(now) {
            // Queued only: the first `recv` writes them all at once.
            if let Err(e) = ws.feed(flow.plan.messages[i].clone()) {
                flow.tally.errors.add(format!("send: {e}"));
                return flow.finish();
            }
        }
    }
    while !flow.in_flight.is_empty() {
        let message = match ws.recv().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                flow.tally.errors.add(e.to_string());
                return flow.finish();
            }
            None => {
                flow.tally
                    .errors
                    .add("the server closed the connection".into());
                return flow.finish();
            }
        };
        let (binary, data) = match &message {
            Message::Text(text) => (false, text.as_bytes()),
            Message::Binary(data) => (true, &data[..]),
            Message::Close(frame) => {
                let why = frame.as_ref().map(|f| format!(": {} {}", f.code, f.reason));
                let why = why.unwrap_or_default();
                flow.tally.errors.add(format!("the server closed{why}"));
                return flow.finish();
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let now = Instant::now();
        if let Err(e) = flow.check(binary, data, now) {
            flow.tally.errors.add(e);
            return flow.finish();
        }
        if let Some(i) = flow.send(now) {
            // Echoes that arrived together are answered together: `recv` writes what is
            // queued before it waits for more input.
            if let Err(e) = ws.feed(flow.plan.messages[i].clone()) {
                flow.tally.errors.add(format!("send: {e}"));
                return flow.finish();
            }
        }
    }
    if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
        flow.tally.errors.add(format!("close: {e}"));
    }
    flow.finish()
}
