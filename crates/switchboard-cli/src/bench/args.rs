//! The command line of `switchboard bench`.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::units::parse_span;

#[derive(Parser, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ (with --raw: the host and port of a TCP echo).
    pub(crate) url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub(crate) mode: Mode,
    /// Connections (echo, idle), subscribers (broadcast, hub) or concurrent workers (handshakes).
    #[arg(long, short, default_value_t = 100)]
    pub(crate) connections: usize,
    /// Message payload size in bytes.
    #[arg(long, short, default_value_t = 16)]
    pub(crate) size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,
    /// Messages in flight per connection (1: wait for each echo; more: pipelined). In broadcast
    /// mode, messages the publisher may have out that not every subscriber has received; in
    /// hub mode, unacknowledged publishes per WebSocket publisher.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub(crate) in_flight: usize,
    /// The measured window, e.g. 10s, 500ms, 1m.
    #[arg(long, short, default_value = "10s", value_parser = parse_span)]
    pub(crate) duration: Duration,
    /// Load applied before the measured window, not counted.
    #[arg(long, default_value = "2s", value_parser = parse_span)]
    pub(crate) warmup: Duration,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// The target is a raw TCP echo: no handshake; the masked frames sent must come back as
    /// they were sent (the floor of what the kernel allows).
    #[arg(long)]
    pub(crate) raw: bool,
    /// The server's process id: its CPU time over the window (and in idle mode its resident
    /// memory) is read from /proc and reported.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Threads of the load generator (1: a single-threaded runtime, best when it has one core).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// For wss://, trust the certificates in this PEM file instead of the public roots
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// For wss://, do not verify the server's certificate (development only)
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Connections being opened at any one time during setup.
    #[arg(long, default_value_t = 64)]
    pub(crate) connect_concurrency: usize,
    /// Idle mode: open the connections without exchanging a message on each first.
    #[arg(long)]
    pub(crate) no_echo: bool,
    /// Offer permessage-deflate, as browsers do; the report says how many connections the
    /// server agreed it on.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) deflate: bool,
    /// For wss://, open the WebSockets over HTTP/2 (RFC 8441), --streams-per-connection on
    /// each connection; over HTTP/1.1 (with a note) when the server does not take them.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) http2: bool,
    #[command(flatten)]
    pub(crate) proxy: crate::client_proxy::ProxyArgs,
    #[command(flatten)]
    pub(crate) hub: super::hub::HubArgs,
    /// With --http2: WebSockets sharing one HTTP/2 connection.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "http2")]
    pub(crate) streams_per_connection: usize,
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
    /// Publishers and N subscribers over the hub protocol, offsets checked.
    Hub,
}
