//! The result of a run: [`Report`], printed as text or, with `--json`, as JSON.

use serde::Serialize;

use super::args::{BenchArgs, Mode};
use super::probe::CpuUsage;
use super::stats::{Errors, Latency};

/// The server's resident memory before and after the connections opened.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// (after − before) / connections held.
    pub(crate) per_connection_kib: f64,
}

/// With `--http2`: how the WebSockets opened (warm-up and setup included).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Http2 {
    /// WebSockets opened over HTTP/2; the others fell back to HTTP/1.1.
    pub(crate) websockets: u64,
    /// The HTTP/2 connections they shared.
    pub(crate) connections: u64,
}

/// Hub mode: the deployment measured.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Deployment {
    /// Publishers, WebSocket and API.
    pub(crate) publishers: usize,
    pub(crate) channels: usize,
    /// Publications a subscriber got twice (each also an error).
    pub(crate) duplicates: u64,
    /// Deliveries whose frame a subscriber parsed in full, as it was not in the shape the hub
    /// writes: the load generator's cost per delivery is higher the more there are.
    pub(crate) parsed_in_full: u64,
    /// CPU time of the `--cpu-pid` processes over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_us_per_delivery: Option<f64>,
    /// How many `--cpu-pid` processes.
    pub(crate) processes: usize,
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
    /// Broadcast: messages the publisher sent in the window; hub: acknowledged publishes sent
    /// in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) published: Option<u64>,
    /// Broadcast: deliveries a subscriber never got (the server skipped it), in the window;
    /// hub: offsets a subscriber never got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) missed: Option<u64>,
    pub(crate) cpu: Option<CpuUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<Memory>,
    /// With `--deflate`: connections (warm-up and setup included) on which the server agreed
    /// permessage-deflate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deflate_agreed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) http2: Option<Http2>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hub: Option<Deployment>,
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
            http2: None,
            hub: None,
        }
    }

    /// Sets the counts and the rates derived from them.
    pub(crate) fn counted(&mut self, messages: u64, payload_bytes: u64) {
        self.messages = messages;
        self.msgs_per_sec = messages as f64 / self.duration_s;
        self.mb_per_sec = payload_bytes as f64 / self.duration_s / 1e6;
    }

    pub(crate) fn errors(&mut self, errors: Errors) {
        self.errors = errors.count();
        self.error_samples = errors.into_samples();
    }

    pub(crate) fn print(&self) {
        let kind = if self.binary { "binary" } else { "text" };
        let target = if self.raw { " (raw echo)" } else { "" };
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
            Mode::Hub => {
                let (publishers, channels) =
                    self.hub.map_or((0, 0), |h| (h.publishers, h.channels));
                println!(
                    "  publishers {publishers}, subscribers {}, channels {channels}, {} B of \
                     padding, {} in flight, {:.1} s measured",
                    self.connections, self.size, self.in_flight, self.duration_s
                );
            }
        }
        let (what, one) = match self.mode {
            Mode::Echo => ("echoes", "echo"),
            Mode::Broadcast | Mode::Hub => ("deliveries", "delivery"),
            Mode::Idle => ("connections", "connection"),
            Mode::Handshakes => ("handshakes", "handshake"),
        };
        match self.mode {
            Mode::Echo | Mode::Broadcast | Mode::Hub => println!(
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
            let rate = published as f64 / self.duration_s;
            println!("  published   {published:>14}          {rate:>12.0}/s  missed {missed}");
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
        match self.http2 {
            Some(h) if h.websockets > 0 => println!(
                "  http        HTTP/2: {} WebSockets on {} connections",
                h.websockets, h.connections
            ),
            Some(_) => {
                println!("  http        HTTP/1.1 (the server took no WebSocket over HTTP/2)")
            }
            None => {}
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
        if let Some(Deployment {
            cpu_s: Some(cpu),
            processes,
            cpu_us_per_delivery,
            ..
        }) = self.hub
        {
            let per = cpu_us_per_delivery
                .map(|us| format!(" ({us:.2} µs per delivery)"))
                .unwrap_or_default();
            println!("  deployment  {cpu:.2} s of CPU in {processes} processes{per}");
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
