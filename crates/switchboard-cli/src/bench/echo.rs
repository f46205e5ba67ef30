//! Echo mode: N connections, each keeping K messages in flight; every echo is checked against
//! the message it answers (kind, length, every byte, order) and only checked echoes count.
//!
//! Messages come from a pool of distinct payloads (at most 16 MiB in all), taken in turn, with
//! each connection starting at a different place in the pool: an echo of the wrong message, a
//! stale buffer or another connection's message fails the check. The pool is built once, so
//! sending costs no allocation per message beyond what the client engine does.
//!
//! `--raw` talks to a plain TCP echo: the same masked frames go out, and the client decodes
//! each echoed frame's header, unmasks its payload and compares it, which is the work the
//! WebSocket client does (plus an unmask, minus UTF-8 validation).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::bail;
use bytes::{Buf, Bytes, BytesMut};
use switchboard::proto::frame::{FrameHeader, OpCode};
use switchboard::proto::mask::apply_mask;
use switchboard::{CloseCode, Message, Utf8Bytes, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::open::{Transport, host_port, open, open_all, open_raw};
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
    let window;
    if args.raw {
        let addr = host_port(&args.url)?;
        let connect = || {
            let addr = addr.clone();
            async move { open_raw(&addr).await }
        };
        let streams = open_all(args.connections, conc, connect, &mut errors, &bar).await;
        bar.finish_and_clear();
        window = Window::starting_now(args);
        let plan = Arc::new(Plan::new(args, window)?);
        for (i, stream) in streams.into_iter().enumerate() {
            let flow = Flow::new(plan.clone(), shared.clone(), i);
            tasks.spawn(raw_echo(RawLink::new(stream, i as u64), flow));
        }
    } else {
        let url = args.url.clone();
        let connect = || {
            let url = url.clone();
            open(url)
        };
        let sockets = open_all(args.connections, conc, connect, &mut errors, &bar).await;
        bar.finish_and_clear();
        window = Window::starting_now(args);
        let plan = Arc::new(Plan::new(args, window)?);
        for (i, ws) in sockets.into_iter().enumerate() {
            let flow = Flow::new(plan.clone(), shared.clone(), i);
            tasks.spawn(ws_echo(ws, flow));
        }
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

async fn raw_echo(mut link: RawLink, mut flow: Flow) -> Tally {
    let now = Instant::now();
    for _ in 0..flow.plan.in_flight {
        if let Some(i) = flow.send(now) {
            link.feed(&flow.plan.payloads[i], flow.plan.binary);
        }
    }
    while !flow.in_flight.is_empty() {
        let (binary, data) = match link.recv().await {
            Ok(frame) => frame,
            Err(e) => {
                flow.tally.errors.add(e.to_string());
                return flow.finish();
            }
        };
        let now = Instant::now();
        if let Err(e) = flow.check(binary, &data, now) {
            flow.tally.errors.add(e);
            return flow.finish();
        }
        if let Some(i) = flow.send(now) {
            link.feed(&flow.plan.payloads[i], flow.plan.binary);
        }
    }
    let _ = link.io.shutdown().await;
    flow.finish()
}

/// A TCP connection to a raw echo, speaking client frames (masked) both ways.
pub(crate) struct RawLink {
    pub(crate) io: TcpStream,
    read: BytesMut,
    write: BytesMut,
    /// State of the masking-key generator. The keys need not be unpredictable here (the peer is
    /// not a WebSocket server), only different from frame to frame as a client's are.
    keys: u64,
}

impl RawLink {
    pub(crate) fn new(io: TcpStream, seed: u64) -> Self {
        Self {
            io,
            read: BytesMut::with_capacity(16 * 1024),
            write: BytesMut::with_capacity(16 * 1024),
            keys: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    /// Queues a masked frame; [`recv`](Self::recv) writes it.
    pub(crate) fn feed(&mut self, payload: &[u8], binary: bool) {
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        self.keys ^= self.keys << 13;
        self.keys ^= self.keys >> 7;
        self.keys ^= self.keys << 17;
        let key = (self.keys as u32).to_ne_bytes();
        header.mask = Some(key);
        header.encode(&mut self.write);
        let start = self.write.len();
        self.write.extend_from_slice(payload);
        apply_mask(&mut self.write[start..], key, 0);
    }

    /// Writes what is queued and returns the next echoed frame: whether it is binary, and its
    /// unmasked payload. Reading goes on while the writes wait, so that a peer that echoes as
    /// it reads never blocks on us.
    pub(crate) async fn recv(&mut self) -> io::Result<(bool, BytesMut)> {
        let Self {
            io, read, write, ..
        } = self;
        let (mut reader, mut writer) = io.split();
        loop {
            let decoded = FrameHeader::decode(read)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some((header, header_len)) = decoded {
                let total = header_len + header.len as usize;
                if read.len() >= total {
                    let mut frame = read.split_to(total);
                    frame.advance(header_len);
                    let Some(key) = header.mask else {
                        let e = "an echoed frame came back unmasked";
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    };
                    apply_mask(&mut frame, key, 0);
                    return Ok((header.opcode == OpCode::Binary, frame));
                }
                read.reserve(total - read.len());
            }
            if read.capacity() - read.len() < 4096 {
                read.reserve(16 * 1024);
            }
            // Write without waiting first, as the WebSocket client does: usually it all goes.
            while !write.is_empty() {
                match writer.as_ref().try_write(write) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => write.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let n = if write.is_empty() {
                reader.read_buf(read).await?
            } else {
                tokio::select! {
                    written = writer.write_buf(write) => {
                        if written? == 0 {
                            return Err(io::ErrorKind::WriteZero.into());
                        }
                        continue;
                    }
                    n = reader.read_buf(read) => n?,
                }
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the echo closed the connection",
                ));
            }
        }
    }
}
