//! Connection modes: `idle` opens N connections and holds them (the server's memory per
//! connection), `handshakes` opens and closes connections as fast as N workers can.
//!
//! Against a raw echo (`--raw`) a connection opens without a handshake ([`open`]): a
//! "handshake" there is TCP connect, then the closing handshake (the raw echo echoes the
//! Close frame and shuts the connection down).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use switchboard::{CloseCode, Message, Utf8Bytes, WebSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::open::{Transport, open};
use super::payload::payload;
use super::probe::rss_kib;
use super::progress::{connect_bar, progress_bar, window_bar};
use super::report::{Memory, Report};
use super::stats::{Errors, Latencies, LatencyBatch};
use super::window::{GRACE, Window};

/// How long the server gets to settle after the last connection opened before its memory is
/// read.
const SETTLE: Duration = Duration::from_secs(1);

pub(crate) async fn idle(args: &BenchArgs) -> anyhow::Result<Report> {
    let pid = args.server_pid.map(|p| p.to_string());
    let rss_before = pid.as_deref().map(rss_kib).transpose()?;
    let latencies = Arc::new(Latencies::new());
    let limit = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for i in 0..args.connections {
        let job = Hold {
            url: args.url.clone(),
            payload: (!args.no_echo).then(|| payload(i as u64, args.size)),
            binary: args.binary,
            limit: limit.clone(),
            latencies: latencies.clone(),
            ready: ready_tx.clone(),
            stop: stopped.clone(),
        };
        tasks.spawn(job.run());
    }
    drop(ready_tx);

    let mut errors = Errors::default();
    let mut held = 0u64;
    let bar = connect_bar(args.connections);
    // Every task reports once (the tasks keep their senders while they hold their connection).
    for _ in 0..args.connections {
        match ready_rx.recv().await {
            Some(Ok(())) => held += 1,
            Some(Err(e)) => errors.add(e),
            None => break,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if held == 0 {
        bail!("no connection opened: {}", errors.first());
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = pid.as_deref().map(rss_kib).transpose()?;

    let bar = progress_bar("holding {msg} connections {elapsed:>4} [{bar:30}]");
    bar.set_message(held.to_string());
    bar.set_length(args.duration.as_millis() as u64);
    let start = Instant::now();
    while start.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(250).min(args.duration)).await;
        bar.set_position(start.elapsed().as_millis() as u64);
    }
    bar.finish_and_clear();
    let _ = stop.send(true);
    join_all(&mut tasks, Instant::now() + GRACE, &mut errors).await;

    let mut report = Report::new(args);
    report.messages = held;
    report.latency_us = latencies.summary();
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.memory = Some(Memory {
            rss_before_kib: before,
            rss_after_kib: after,
            per_connection_kib: (after as f64 - before as f64) / held as f64,
        });
    }
    report.errors(errors);
    Ok(report)
}

/// One connection of the idle mode.
struct Hold {
    url: String,
    /// The message exchanged before idling, if any.
    payload: Option<Bytes>,
    binary: bool,
    limit: Arc<Semaphore>,
    latencies: Arc<Latencies>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    stop: watch::Receiver<bool>,
}

impl Hold {
    async fn run(mut self) -> Errors {
        let mut errors = Errors::default();
        let permit = self.limit.clone().acquire_owned().await;
        let start = Instant::now();
        let mut batch = LatencyBatch::default();
        let mut ws = match open(self.url.clone()).await {
            Ok(ws) => ws,
            Err(e) => return self.failed(format!("connect: {e}")),
        };
        if let Err(e) = self.exchange(&mut ws).await {
            return self.failed(e);
        }
        self.latencies.record(&mut batch, start.elapsed());
        self.latencies.flush(&mut batch);
        drop(permit);
        let _ = self.ready.send(Ok(()));
        let _ = self.stop.wait_for(|stop| *stop).await;
        if let Err(e) = ws.close(CloseCode::NORMAL, "").await {
            errors.add(format!("close: {e}"));
        }
        errors
    }

    fn failed(self, error: String) -> Errors {
        let _ = self.ready.send(Err(error));
        Errors::default()
    }

    async fn exchange<S: Transport>(&self, ws: &mut WebSocket<S>) -> Result<(), String> {
        let Some(payload) = &self.payload else {
            return Ok(());
        };
        let message = if self.binary {
            Message::Binary(payload.clone())
        } else {
            Message::Text(Utf8Bytes::try_from(payload.clone()).map_err(|e| e.to_string())?)
        };
        ws.send(message.clone()).await.map_err(|e| e.to_string())?;
        loop {
            match ws.recv().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(echo)) if echo == message => return Ok(()),
                Some(Ok(Message::Close(_))) | None => {
                    return Err("the server closed the connection".into());
                }
                Some(Ok(_)) => return Err("the echo differs from the message sent".into()),
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }
}

pub(crate) async fn handshakes(args: &BenchArgs) -> anyhow::Result<Report> {
    let latencies = Arc::new(Latencies::new());
    let progress = Arc::new(AtomicU64::new(0));
    let window = Window::starting_now(args);
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let worker = Cycler {
            url: args.url.clone(),
            window,
            latencies: latencies.clone(),
            progress: progress.clone(),
        };
        tasks.spawn(worker.run());
    }
    let bar = window_bar();
    let (start, end) = window
        .watch(args.server_pid, &progress, "handshakes", &bar)
        .await;
    bar.finish_and_clear();
    let mut errors = Errors::default();
    let count = join_all(&mut tasks, window.until + GRACE, &mut errors).await;
    let mut report = Report::new(args);
    report.counted(count, 0);
    report.latency_us = latencies.summary();
    report.cpu = Some(start.usage(&end, count));
    report.errors(errors);
    Ok(report)
}

/// One worker of the handshakes mode: connects, upgrades and closes until the window ends.
struct Cycler {
    url: String,
    window: Window,
    latencies: Arc<Latencies>,
    progress: Arc<AtomicU64>,
}

impl Cycler {
    async fn run(self) -> (u64, Errors) {
        let mut errors = Errors::default();
        let mut batch = LatencyBatch::default();
        let mut count = 0;
        loop {
            let start = Instant::now();
            if start >= self.window.until {
                break;
            }
            let result = match open(self.url.clone()).await {
                Ok(mut ws) => {
                    self.counted(start, &mut count, &mut batch);
                    let closed = ws.close(CloseCode::NORMAL, "").await;
                    closed.map_err(|e| format!("close: {e}"))
                }
                Err(e) => Err(format!("connect: {e}")),
            };
            if let Err(e) = result {
                errors.add(e);
                // Out of ports or descriptors: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.latencies.flush(&mut batch);
        (count, errors)
    }

    fn counted(&self, start: Instant, count: &mut u64, batch: &mut LatencyBatch) {
        let now = Instant::now();
        self.progress.fetch_add(1, Ordering::Relaxed);
        if self.window.contains(now) {
            *count += 1;
            self.latencies.record(batch, now.duration_since(start));
        }
    }
}

/// Waits for every task until `deadline`, summing what they counted; tasks still running then
/// are aborted and counted as errors.
async fn join_all<T: Tallied + 'static>(
    tasks: &mut JoinSet<T>,
    deadline: Instant,
    errors: &mut Errors,
) -> u64 {
    let mut total = 0;
    loop {
        match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
            Ok(Some(Ok(tally))) => total += tally.merge_into(errors),
            Ok(Some(Err(e))) => errors.add(format!("connection task: {e}")),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..tasks.len() {
                    errors.add("a connection did not close in time".into());
                }
                tasks.abort_all();
                break;
            }
        }
    }
    total
}

/// What a task hands back: a count and its errors.
trait Tallied: Send {
    fn merge_into(self, errors: &mut Errors) -> u64;
}

impl Tallied for Errors {
    fn merge_into(self, errors: &mut Errors) -> u64 {
        errors.merge(self);
        0
    }
}

impl Tallied for (u64, Errors) {
    fn merge_into(self, errors: &mut Errors) -> u64 {
        errors.merge(self.1);
        self.0
    }
}
