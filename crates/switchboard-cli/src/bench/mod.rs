//! `switchboard bench`: a load generator that measures a WebSocket server.
//!
//! Modes:
//! - `echo`: N connections, each keeping K messages in flight (1: every message waits for its
//!   echo, latency-bound; more: pipelined). Every echo is compared with what was sent (kind,
//!   length, content, order); only echoes that match count.
//! - `broadcast`: one publisher and N subscribers against a server that sends every message
//!   to every other client (`switchboard serve --mode broadcast`): deliveries per second and
//!   publish-to-receive latency.
//! - `idle`: opens N connections, exchanges one message on each, and holds them (for memory
//!   measurements).
//! - `handshakes`: N workers connect, upgrade and close, over and over.
//!
//! Each mode runs a warm-up, then a measured window. With `--server-pid` the server's CPU time
//! over the window (and in `idle` mode its memory) is read from `/proc` and reported per message.
//! With `--raw` the target is a plain TCP echo instead of a WebSocket server: no handshake, and
//! the client checks that its own (masked) frames come back byte for byte. That measures the
//! floor, what the kernel and this load generator allow.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use switchboard::tls::ClientTls;
use switchboard::{ConnectOptions, DeflateConfig, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

mod broadcast;
mod connections;
mod echo;
mod probe;

use probe::CpuUsage;

/// How long connecting plus the opening handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections may take to finish after the measured window before they are
/// abandoned (and counted as errors).
const GRACE: Duration = Duration::from_secs(10);
/// Error messages kept for the report (the count covers all).
const ERROR_SAMPLES: usize = 5;

#[derive(Parser, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ (with --raw: the host and port of a TCP echo).
    url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Connections (echo, idle), subscribers (broadcast) or concurrent workers (handshakes).
    #[arg(long, short, default_value_t = 100)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(long, short, default_value_t = 16)]
    size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection (1: wait for each echo; more: pipelined). In broadcast
    /// mode, messages the publisher may have out that not every subscriber has received.
    #[arg(long, short = 'k', default_value_t = 1)]
    in_flight: usize,
    /// The measured window, e.g. 10s, 500ms, 1m.
    #[arg(long, short, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load applied before the measured window, not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// The target is a raw TCP echo: no handshake; the masked frames sent must come back as
    /// they were sent (the floor of what the kernel allows).
    #[arg(long)]
    raw: bool,
    /// The server's process id: its CPU time over the window (and in idle mode its resident
    /// memory) is read from /proc and reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Threads of the load generator (1: a single-threaded runtime, best when it has one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// For wss://, trust the certificates in this PEM file instead of the public roots
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<std::path::PathBuf>,
    /// For wss://, do not verify the server's certificate (development only)
    #[arg(long)]
    insecure: bool,
    /// Connections being opened at any one time during setup.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Idle mode: open the connections without exchanging a message on each first.
    #[arg(long)]
    no_echo: bool,
    /// Offer permessage-deflate, as browsers do; the report says how many connections the
    /// server agreed it on.
    #[arg(long, conflicts_with = "raw")]
    deflate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Echoes on N connections, K in flight on each.
    Echo,
    /// One publisher, N subscribers, against a server that broadcasts.
    Broadcast,
    /// Open N connections and hold them.
    Idle,
    /// Connect, upgrade and close, with N workers.
    Handshakes,
}

/// Runs the benchmark on a runtime of its own (sized by `--threads`) and prints the result.
pub(crate) fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    let tls = if args.insecure {
        Some(ClientTls::dangerous_insecure())
    } else {
        args.ca
            .as_deref()
            .map(ClientTls::from_ca_file)
            .transpose()?
    };
    // Set once, before any connection opens.
    let _ = CONNECT_OPTIONS.set(ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        tls,
        deflate: args.deflate.then(DeflateConfig::default),
        ..ConnectOptions::default()
    });
    let runtime = match args.threads {
        0 => bail!("--threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    let mut report = runtime.block_on(async {
        match args.mode {
            Mode::Echo => echo::run(&args).await,
            Mode::Broadcast => broadcast::run(&args).await,
            Mode::Idle => connections::idle(&args).await,
            Mode::Handshakes => connections::handshakes(&args).await,
        }
    })?;
    // Connections still closing are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if args.deflate {
        report.deflate_agreed = Some(DEFLATE_AGREED.load(Ordering::Relaxed));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(if report.messages > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How connections open: how wss:// verifies the server (`--ca`, `--insecure`), whether
/// permessage-deflate is offered. Every connection of a run opens through [`open`], deep in
/// the workload modules, so the choice is made once here rather than threaded through each of
/// them.
static CONNECT_OPTIONS: std::sync::OnceLock<ConnectOptions> = std::sync::OnceLock::new();
/// Connections on which the server agreed permessage-deflate.
static DEFLATE_AGREED: AtomicU64 = AtomicU64::new(0);

/// A transport [`switchboard::connect_with`] may hand back (plain TCP; TLS for `wss://`).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Opens a WebSocket connection to `url`, whatever its scheme needs.
///
/// Takes the URL by value so that the transport's type borrows nothing.
pub(crate) async fn open(url: String) -> Result<WebSocket<impl Transport>, switchboard::Error> {
    let options = CONNECT_OPTIONS.get_or_init(|| ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        ..ConnectOptions::default()
    });
    let (ws, _response) = switchboard::connect_with(&url, options).await?;
    if ws.deflate().is_some() {
        DEFLATE_AGREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ws)
}

/// The `host:port` of a URL (`ws://host:port/path`, `tcp://host:port` or `host:port`), for
/// `--raw`.
pub(crate) fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    if !authority.contains(':') {
        bail!("{url}: a raw TCP target needs a port");
    }
    Ok(authority.to_owned())
}

/// Opens a plain TCP connection (for `--raw`), with Nagle off as WebSocket connections have it.
pub(crate) async fn open_raw(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `n` connections with `open`, at most `concurrency` at a time; returns those that
/// opened and counts the failures into `errors`.
pub(crate) async fn open_all<T, F, Fut, E>(
    n: usize,
    concurrency: usize,
    open: F,
    errors: &mut Errors,
    progress: &ProgressBar,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut opened = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while opened.len() + errors.count() < n {
        while started < n && pending.len() < concurrency.max(1) {
            pending.spawn(open());
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(conn))) => opened.push(conn),
            Some(Ok(Err(e))) => errors.add(format!("connect: {e}")),
            Some(Err(e)) => errors.add(format!("connect: {e}")),
            None => break,
        }
        progress.set_position((opened.len() + errors.count()) as u64);
    }
    opened
}

/// Errors seen during a run: all are counted, the first few kept for the report.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    count: usize,
    samples: Vec<String>,
}

impl Errors {
    pub(crate) fn add(&mut self, error: String) {
        self.count += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&error) {
            self.samples.push(error);
        }
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.count += other.count;
        for e in other.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&e) {
                self.samples.push(e);
            }
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

/// Latencies of all connections, in nanoseconds. Connections record into a small local batch
/// and add it here under the lock, so the lock is taken once per batch.
#[derive(Debug)]
pub(crate) struct Latencies {
    histogram: std::sync::Mutex<Histogram<u64>>,
}

/// Latencies one connection gathered since it last added them to [`Latencies`].
#[derive(Debug, Default)]
pub(crate) struct LatencyBatch(Vec<u64>);

const LATENCY_BATCH: usize = 256;

impl Latencies {
    pub(crate) fn new() -> Self {
        // 1 ns to 100 s at 3 significant digits: about 300 KiB, once per run.
        let histogram = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self {
            histogram: std::sync::Mutex::new(histogram),
        }
    }

    /// Records one latency into `batch`, moving the batch here when it is full.
    pub(crate) fn record(&self, batch: &mut LatencyBatch, latency: Duration) {
        batch
            .0
            .push(latency.as_nanos().try_into().unwrap_or(u64::MAX));
        if batch.0.len() >= LATENCY_BATCH {
            self.flush(batch);
        }
    }

    pub(crate) fn flush(&self, batch: &mut LatencyBatch) {
        let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        for &ns in &batch.0 {
            histogram.saturating_record(ns.max(1));
        }
        batch.0.clear();
    }

    pub(crate) fn summary(&self) -> Option<Latency> {
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Latency {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1e3,
        })
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

/// The server's resident memory before and after the connections opened.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// (after − before) / connections held.
    pub(crate) per_connection_kib: f64,
}

/// The result of a run; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) mode: Mode,
    pub(crate) url: String,
    pub(crate) raw: bool,
    pub(crate) connections: usize,
    pub(crate) size: usize,
    pub(crate) binary: bool,
    pub(crate) in_flight: usize,
    /// The measured window, in seconds.
    pub(crate) duration_s: f64,
    /// What was counted in the window: checked echoes (echo), checked deliveries (broadcast),
    /// connections held (idle), completed handshakes (handshakes).
    pub(crate) messages: u64,
    pub(crate) msgs_per_sec: f64,
    /// Payload bytes of the counted messages per second, in MB (10^6 bytes).
    pub(crate) mb_per_sec: f64,
    /// Echo round trip, publish-to-receive, or connect-to-upgraded latency.
    pub(crate) latency_us: Option<Latency>,
    pub(crate) errors: usize,
    pub(crate) error_samples: Vec<String>,
    /// Broadcast: messages the publisher sent in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) published: Option<u64>,
    /// Broadcast: deliveries a subscriber never got (the server skipped it), in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) missed: Option<u64>,
    pub(crate) cpu: Option<CpuUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<Memory>,
    /// With `--deflate`: connections (warm-up and setup included) on which the server agreed
    /// permessage-deflate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deflate_agreed: Option<u64>,
}

impl Report {
    pub(crate) fn new(args: &BenchArgs) -> Self {
        Self {
            mode: args.mode,
            url: args.url.clone(),
            raw: args.raw,
            connections: args.connections,
            size: args.size,
            binary: args.binary,
            in_flight: args.in_flight,
            duration_s: args.duration.as_secs_f64(),
            messages: 0,
            msgs_per_sec: 0.0,
            mb_per_sec: 0.0,
            latency_us: None,
            errors: 0,
            error_samples: Vec::new(),
            published: None,
            missed: None,
            cpu: None,
            memory: None,
            deflate_agreed: None,
        }
    }

    /// Sets the counts and the rates derived from them.
    pub(crate) fn counted(&mut self, messages: u64, payload_bytes: u64) {
        self.messages = messages;
        self.msgs_per_sec = messages as f64 / self.duration_s;
        self.mb_per_sec = payload_bytes as f64 / self.duration_s / 1e6;
    }

    pub(crate) fn errors(&mut self, errors: Errors) {
        self.errors = errors.count;
        self.error_samples = errors.samples;
    }

    fn print(&self) {
        let kind = if self.binary { "binary" } else { "text" };
        let target = if self.raw { " (raw TCP)" } else { "" };
        println!("{:?} {}{target}", self.mode, self.url);
        match self.mode {
            Mode::Echo => println!(
                "  {} connections, {} B {kind}, {} in flight, {:.1} s measured",
                self.connections, self.size, self.in_flight, self.duration_s
            ),
            Mode::Broadcast => println!(
                "  1 publisher, {} subscribers, {} B {kind}, {} in flight, {:.1} s measured",
                self.connections, self.size, self.in_flight, self.duration_s
            ),
            Mode::Idle => println!("  {} connections held", self.messages),
            Mode::Handshakes => println!(
                "  {} workers, {:.1} s measured",
                self.connections, self.duration_s
            ),
        }
        let (what, one) = match self.mode {
            Mode::Echo => ("echoes", "echo"),
            Mode::Broadcast => ("deliveries", "delivery"),
            Mode::Idle => ("connections", "connection"),
            Mode::Handshakes => ("handshakes", "handshake"),
        };
        match self.mode {
            Mode::Echo | Mode::Broadcast => println!(
                "  {what:<12}{:>14} checked  {:>12.0}/s  {:>9.2} MB/s",
                self.messages, self.msgs_per_sec, self.mb_per_sec
            ),
            Mode::Handshakes => println!(
                "  {what:<12}{:>14}          {:>12.0}/s",
                self.messages, self.msgs_per_sec
            ),
            Mode::Idle => {}
        }
        if let (Some(published), Some(missed)) = (self.published, self.missed) {
            println!("  published   {published:>14}          missed {missed}");
        }
        if let Some(l) = &self.latency_us {
            println!(
                "  latency     p50 {}  p99 {}  p99.9 {}  max {}",
                micros(l.p50),
                micros(l.p99),
                micros(l.p999),
                micros(l.max)
            );
        }
        if let Some(agreed) = self.deflate_agreed {
            println!("  deflate     agreed on {agreed} connections");
        }
        println!("  errors      {}", self.errors);
        for e in &self.error_samples {
            println!("    {e}");
        }
        if let Some(cpu) = &self.cpu {
            if let Some(server) = cpu.server_s {
                let per = cpu
                    .server_us_per_msg
                    .map(|us| format!(" ({us:.2} µs per {one})"))
                    .unwrap_or_default();
                println!("  server CPU  {server:.2} s{per}");
            }
            if let Some(other) = cpu.other_s {
                println!("  other load  {other:.2} s of CPU during the window");
            }
        }
        if let Some(m) = &self.memory {
            println!(
                "  server RSS  {} KiB -> {} KiB: {:.2} KiB per connection",
                m.rss_before_kib, m.rss_after_kib, m.per_connection_kib
            );
        }
    }
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// The measured window: load starts now, counts from `from` (after the warm-up) to `until`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) from: Instant,
    pub(crate) until: Instant,
}

impl Window {
    pub(crate) fn starting_now(args: &BenchArgs) -> Self {
        let from = Instant::now() + args.warmup;
        Self {
            from,
            until: from + args.duration,
        }
    }

    pub(crate) fn contains(&self, t: Instant) -> bool {
        t >= self.from && t < self.until
    }

    /// Waits through the window with the progress bar showing `rate` (what `counter` counts,
    /// per second), and returns the CPU snapshots taken at its start and end.
    pub(crate) async fn watch(
        &self,
        server_pid: Option<u32>,
        counter: &AtomicU64,
        unit: &str,
        progress: &ProgressBar,
    ) -> (probe::Snapshot, probe::Snapshot) {
        let start = Instant::now();
        let total = self.until.saturating_duration_since(start);
        progress.set_length(total.as_millis() as u64);
        progress.set_position(0);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut first = None;
        let mut last = (Instant::now(), counter.load(Ordering::Relaxed));
        loop {
            let now = tokio::select! {
                _ = tick.tick() => Instant::now(),
                () = tokio::time::sleep_until(self.from.into()), if first.is_none() => {
                    first = Some(probe::Snapshot::take(server_pid));
                    continue;
                }
                () = tokio::time::sleep_until(self.until.into()) => break,
            };
            let count = counter.load(Ordering::Relaxed);
            let rate = (count - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, count);
            let phase = if now < self.from {
                "warm-up"
            } else {
                "measuring"
            };
            progress.set_position(now.duration_since(start).as_millis() as u64);
            progress.set_message(format!("{phase}: {rate:.0} {unit}/s"));
        }
        let end = probe::Snapshot::take(server_pid);
        (first.unwrap_or(end), end)
    }
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub(crate) fn progress_bar(template: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The bar for the measured window.
pub(crate) fn window_bar() -> ProgressBar {
    progress_bar("{elapsed:>4} [{bar:30}] {msg}")
}

/// The bar for opening connections.
pub(crate) fn connect_bar(n: usize) -> ProgressBar {
    let bar = progress_bar("connecting {pos}/{len} [{bar:30}] {per_sec}");
    bar.set_length(n as u64);
    bar
}

/// Payload bytes for message `index`: printable ASCII (valid text) from a generator seeded by
/// the index, so that messages differ from each other all along their length.
pub(crate) fn payload(index: u64, size: usize) -> Bytes {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let take = (size - out.len()).min(8);
        out.extend((0..take).map(|i| ALPHABET[((word >> (i * 6)) & 63) as usize]));
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn raw_targets_need_a_port() {
        assert_eq!(host_port("ws://127.0.0.1:9/x").unwrap(), "127.0.0.1:9");
        assert_eq!(host_port("tcp://[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(host_port("localhost:7").unwrap(), "localhost:7");
        assert!(host_port("ws://localhost/").is_err());
    }

    #[test]
    fn payloads_are_text_and_differ_all_along() {
        let a = payload(1, 4096);
        let b = payload(2, 4096);
        assert_eq!(a.len(), 4096);
        assert!(std::str::from_utf8(&a).is_ok());
        assert_eq!(a, payload(1, 4096));
        // Differ in every 64-byte stretch, not only at the start.
        for (x, y) in a.chunks(64).zip(b.chunks(64)) {
            assert_ne!(x, y);
        }
        assert!(payload(3, 0).is_empty());
    }

    #[test]
    fn errors_count_all_and_keep_a_few_distinct() {
        let mut errors = Errors::default();
        for i in 0..20 {
            errors.add(format!("e{}", i % 7));
        }
        assert_eq!(errors.count(), 20);
        assert_eq!(errors.samples.len(), ERROR_SAMPLES);
    }
}
